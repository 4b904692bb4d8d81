//! Classifier-free guidance: a class-conditional model (trained with some labels dropped to
//! the unconditional token) is run twice per step, once with the class token and once, as the
//! sequence's twin, with the unconditional one, and the logits are pushed away from the
//! unconditional ones: `u + scale * (c - u)`. Scale 1 is the plain conditional model; larger
//! scales trade variety for samples that look more like their class.
//!
//! Guidance is a setting of one sequence ([`crate::GenerateConfig::guidance`]): the one loop
//! feeds the twin beside it in the same batch, so guided and plain sequences share a batch.

use crate::codec::Vocab;
use crate::error::InvalidSetting;

/// Guidance towards the class token a sequence starts with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Guidance {
    /// Replaces the class token in the twin.
    pub unconditional: u32,
    /// The weight in `u + scale * (c - u)`: 0 is the unconditional model, 1 the plain
    /// conditional one, above 1 pushes harder towards the class.
    pub scale: f32,
}

impl Guidance {
    /// Guidance of `scale` (at least 0; 1 changes nothing) against `unconditional`.
    pub fn new(unconditional: u32, scale: f32) -> Result<Self, InvalidSetting> {
        if !(scale.is_finite() && scale >= 0.0) {
            return Err(InvalidSetting::new(
                "guidance",
                format!("must be a number of at least 0 (got {scale})"),
            ));
        }
        Ok(Self {
            unconditional,
            scale,
        })
    }

    /// The guidance to draw from a model with `vocab`: `scale` when one is given, which needs a
    /// class-conditional vocabulary and sequences that start with a class (`has_class`).
    pub fn for_vocab(
        vocab: &Vocab,
        has_class: bool,
        scale: Option<f32>,
    ) -> Result<Option<Self>, InvalidSetting> {
        let Some(scale) = scale else {
            return Ok(None);
        };
        let Some(unconditional) = vocab.unconditional else {
            return Err(InvalidSetting::new(
                "guidance",
                "needs a class-conditional model, and this one has no classes",
            ));
        };
        if !has_class {
            return Err(InvalidSetting::new(
                "class",
                "is needed: guidance steers towards a class",
            ));
        }
        Self::new(unconditional, scale).map(Some)
    }

    /// The twin's feed: `ids` with the first token made unconditional when the twin starts.
    pub fn twin_ids(&self, ids: &[u32], starting: bool) -> Vec<u32> {
        let mut twin = ids.to_vec();
        if starting && let Some(first) = twin.first_mut() {
            *first = self.unconditional;
        }
        twin
    }

    /// `u + scale * (c - u)`, into `conditional`.
    pub fn combine(&self, conditional: &mut [f32], unconditional: &[f32]) {
        for (c, &u) in conditional.iter_mut().zip(unconditional) {
            *c = u + self.scale * (*c - u);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Specials;

    #[test]
    fn combine_pushes_away_from_the_unconditional_logits() {
        let g = Guidance::new(3, 2.0).unwrap();
        let mut c = [0.0, 10.0, 0.0, 0.0];
        g.combine(&mut c, &[0.0, 0.0, 0.0, 10.0]);
        assert_eq!(c, [0.0, 20.0, 0.0, -10.0]);
        assert_eq!(g.twin_ids(&[7, 1], true), vec![3, 1]);
        assert_eq!(g.twin_ids(&[7, 1], false), vec![7, 1]);
    }

    #[test]
    fn bad_settings_are_named() {
        assert_eq!(Guidance::new(3, -1.0).unwrap_err().field, "guidance");
        assert!(Guidance::new(3, f32::NAN).is_err());
        let plain = Vocab::new(4, Specials::default());
        assert!(Guidance::for_vocab(&plain, true, Some(2.0)).is_err());
        assert_eq!(Guidance::for_vocab(&plain, true, None).unwrap(), None);
        let classes = Vocab::new(
            4,
            Specials {
                classes: vec!["a".into()],
                ..Default::default()
            },
        );
        assert_eq!(
            Guidance::for_vocab(&classes, false, Some(2.0))
                .unwrap_err()
                .field,
            "class"
        );
        assert!(
            Guidance::for_vocab(&classes, true, Some(2.0))
                .unwrap()
                .is_some()
        );
    }
}
