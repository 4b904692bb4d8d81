//! Classifier-free guidance as a decoder: a class-conditional model (trained with some labels
//! dropped to the unconditional token) is run twice per step, once with the class token and
//! once with the unconditional one, and the logits are pushed away from the unconditional ones:
//! `u + scale * (c - u)`. Scale 1 is the plain conditional model; larger scales trade variety
//! for samples that look more like their class. Being a [`Decoder`], it runs in the one loop.

use anyhow::{Result, bail};

use crate::codec::Vocab;
use crate::decoder::{Decoder, Logits, Positions};

pub struct Guided<'a, D> {
    decoder: &'a D,
    /// The unconditional token and the scale; `None` passes everything straight through.
    guidance: Option<(u32, f32)>,
}

impl<'a, D: Decoder> Guided<'a, D> {
    /// No guidance: the decoder as it is.
    pub fn none(decoder: &'a D) -> Self {
        Self {
            decoder,
            guidance: None,
        }
    }

    /// Guidance of `scale` (at least 0; 1 changes nothing) towards the class token each
    /// sequence starts with, against `unconditional`.
    pub fn new(decoder: &'a D, unconditional: u32, scale: f32) -> Result<Self> {
        if !(scale.is_finite() && scale >= 0.0) {
            bail!("the guidance scale must be a number of at least 0 (got {scale})");
        }
        Ok(Self {
            decoder,
            guidance: Some((unconditional, scale)),
        })
    }

    /// The decoder to draw from a model with `vocab`: guided by `scale` when one is given, which
    /// needs a class-conditional vocabulary and sequences that start with a class (`has_class`).
    pub fn for_vocab(
        decoder: &'a D,
        vocab: &Vocab,
        has_class: bool,
        scale: Option<f32>,
    ) -> Result<Self> {
        let Some(scale) = scale else {
            return Ok(Self::none(decoder));
        };
        let Some(unconditional) = vocab.unconditional else {
            bail!("guidance needs a class-conditional model, and this one has no classes");
        };
        if !has_class {
            bail!("guidance steers towards a class: give one with --class");
        }
        Self::new(decoder, unconditional, scale)
    }
}

impl<D: Decoder> Decoder for Guided<'_, D> {
    type Cache = D::Cache;

    fn vocab_size(&self) -> usize {
        self.decoder.vocab_size()
    }

    fn context_len(&self) -> usize {
        self.decoder.context_len()
    }

    fn new_cache(&self, batch: usize) -> D::Cache {
        self.decoder.new_cache(if self.guidance.is_some() {
            2 * batch
        } else {
            batch
        })
    }

    fn cache_len(&self, cache: &D::Cache) -> usize {
        self.decoder.cache_len(cache)
    }

    /// # Shapes
    /// - `ids`: batch x new tokens, each sequence starting with its class token when the cache
    ///   is empty; the cache holds twice the batch (the unconditional twins after the rows).
    fn forward(
        &self,
        ids: &[Vec<u32>],
        cache: &mut D::Cache,
        positions: Positions,
    ) -> Result<Logits> {
        let Some((unconditional, scale)) = self.guidance else {
            return self.decoder.forward(ids, cache, positions);
        };
        let fresh = self.decoder.cache_len(cache) == 0;
        let twins = ids.iter().map(|row| {
            let mut twin = row.clone();
            if fresh && let Some(first) = twin.first_mut() {
                *first = unconditional;
            }
            twin
        });
        let both: Vec<Vec<u32>> = ids.iter().cloned().chain(twins).collect();
        let out = self.decoder.forward(&both, cache, positions)?; // 2 batch x positions x vocab
        let half = ids.len() * out.positions * out.vocab;
        let (conditional, plain) = out.data.split_at(half);
        let data = conditional
            .iter()
            .zip(plain)
            .map(|(&c, &u)| u + scale * (c - u))
            .collect();
        Logits::new(ids.len(), out.positions, out.vocab, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits that say which token each sequence started with: the first token's id, as a
    /// one-hot of height 10, at every position.
    struct FirstToken;

    impl Decoder for FirstToken {
        type Cache = Vec<Vec<u32>>;
        fn vocab_size(&self) -> usize {
            4
        }
        fn context_len(&self) -> usize {
            16
        }
        fn new_cache(&self, batch: usize) -> Self::Cache {
            vec![Vec::new(); batch]
        }
        fn cache_len(&self, cache: &Self::Cache) -> usize {
            cache.first().map_or(0, |c| c.len())
        }
        fn forward(
            &self,
            ids: &[Vec<u32>],
            cache: &mut Self::Cache,
            _: Positions,
        ) -> Result<Logits> {
            assert_eq!(
                ids.len(),
                cache.len(),
                "the cache holds the whole (doubled) batch"
            );
            let mut data = Vec::new();
            for (row, c) in ids.iter().zip(cache.iter_mut()) {
                c.extend(row);
                let mut one_hot = vec![0.0; 4];
                one_hot[c[0] as usize] = 10.0;
                data.extend(one_hot);
            }
            Logits::new(ids.len(), 1, 4, data)
        }
    }

    #[test]
    fn guidance_pushes_away_from_the_unconditional_logits() {
        let d = FirstToken;
        let g = Guided::new(&d, 3, 2.0).unwrap();
        let mut cache = g.new_cache(2);
        let out = g
            .forward(&[vec![1, 0], vec![2, 0]], &mut cache, Positions::Last)
            .unwrap();
        // u + 2 (c - u): the class token's logit doubles, the unconditional one's turns negative.
        assert_eq!(out.last(0), [0.0, 20.0, 0.0, -10.0]);
        assert_eq!(out.last(1), [0.0, 0.0, 20.0, -10.0]);
        // Later feeds keep the twins' unconditional start.
        let out = g
            .forward(&[vec![0], vec![0]], &mut cache, Positions::Last)
            .unwrap();
        assert_eq!(out.last(0), [0.0, 20.0, 0.0, -10.0]);
        assert_eq!(cache[2][0], 3);
        assert_eq!(cache[2].len(), 3);
    }

    #[test]
    fn scale_one_and_none_are_the_plain_decoder() {
        let d = FirstToken;
        for g in [Guided::new(&d, 3, 1.0).unwrap(), Guided::none(&d)] {
            let mut cache = g.new_cache(1);
            let out = g.forward(&[vec![2]], &mut cache, Positions::Last).unwrap();
            assert_eq!(out.last(0), [0.0, 0.0, 10.0, 0.0]);
        }
        assert!(Guided::new(&d, 3, -1.0).is_err());
        assert!(Guided::new(&d, 3, f32::NAN).is_err());
    }
}
