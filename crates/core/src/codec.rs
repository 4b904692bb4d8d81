//! Codecs turn content (text, an image, a clip) into token ids and back.

use anyhow::{Result, bail};

use crate::error::InvalidSetting;
use serde::{Deserialize, Serialize};

/// The tokens every codec may reserve beside its content tokens.
///
/// Content tokens come first (`0..content_size`), then the special tokens in this order: BOS,
/// END, PAD, the unconditional token, then one token per class label. A field is `None` (or the
/// class list empty) when the codec does not use that token.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Vocab {
    /// Number of content tokens (bytes, characters, pixel levels, mu-law levels...).
    pub content_size: usize,
    /// Begin-of-sequence token: starts a sequence when there is no class to start it with.
    pub bos: Option<u32>,
    /// End token: the model draws it to finish a sequence of free length.
    pub end: Option<u32>,
    /// Padding token: fills a sequence out to a fixed length; never drawn.
    pub pad: Option<u32>,
    /// Starts a sequence that is conditioned on no class (class-conditional models learn both).
    pub unconditional: Option<u32>,
    /// Class-label names; class `i` is the token `first_class + i`.
    pub classes: Vec<String>,
    /// Id of the first class token; all special tokens before it, so it also counts them.
    pub first_class: u32,
}

/// Which special tokens a vocabulary wants, in the fixed order [`Vocab`] lays them out.
#[derive(Clone, Debug, Default)]
pub struct Specials {
    /// Reserve a begin-of-sequence token ([`Vocab::bos`]).
    pub bos: bool,
    /// Reserve an end token ([`Vocab::end`]).
    pub end: bool,
    /// Reserve a padding token ([`Vocab::pad`]).
    pub pad: bool,
    /// Class labels; when non-empty an unconditional token is added too.
    pub classes: Vec<String>,
}

impl Vocab {
    /// Lays out `content_size` content tokens followed by the requested special tokens.
    pub fn new(content_size: usize, specials: Specials) -> Self {
        let mut next = content_size as u32;
        let mut take = |wanted: bool| {
            wanted.then(|| {
                next += 1;
                next - 1
            })
        };
        let bos = take(specials.bos);
        let end = take(specials.end);
        let pad = take(specials.pad);
        let unconditional = take(!specials.classes.is_empty());
        Self {
            content_size,
            bos,
            end,
            pad,
            unconditional,
            first_class: next,
            classes: specials.classes,
        }
    }

    /// Total number of tokens, the size of the model's output layer.
    pub fn size(&self) -> usize {
        self.first_class as usize + self.classes.len()
    }

    /// Whether `id` is a content token (below `content_size`) rather than a special one.
    pub fn is_content(&self, id: u32) -> bool {
        (id as usize) < self.content_size
    }

    /// The token of class `name` (a label name, or its index written as a number).
    pub fn class_token(&self, name: &str) -> Result<u32, InvalidSetting> {
        if self.classes.is_empty() {
            return Err(InvalidSetting::new(
                "class",
                "cannot be used: this model has no class labels",
            ));
        }
        let index = self.classes.iter().position(|c| c == name).or_else(|| {
            name.parse::<usize>()
                .ok()
                .filter(|&i| i < self.classes.len())
        });
        match index {
            Some(i) => Ok(self.first_class + i as u32),
            None => Err(InvalidSetting::new(
                "class",
                format!(
                    "names an unknown class {name:?}: this model knows {}",
                    self.classes.join(", ")
                ),
            )),
        }
    }

    /// The token that starts a sequence: the class token when a class is given, else the
    /// unconditional token of a class-conditional model, else BOS (if any).
    pub fn start_token(&self, class: Option<&str>) -> Result<Option<u32>, InvalidSetting> {
        match class {
            Some(name) => self.class_token(name).map(Some),
            None => Ok(self.unconditional.or(self.bos)),
        }
    }

    /// Token ids the model may be fed but should never draw as content: BOS, PAD and the
    /// conditioning tokens. END stays allowed; a caller bans it separately when a sequence has a
    /// fixed length.
    pub fn never_drawn(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = [self.bos, self.pad, self.unconditional]
            .into_iter()
            .flatten()
            .collect();
        ids.extend((0..self.classes.len() as u32).map(|i| self.first_class + i));
        ids
    }

    /// A short human label for a special token, `None` for content tokens.
    pub fn special_label(&self, id: u32) -> Option<String> {
        if Some(id) == self.bos {
            Some("[BOS]".into())
        } else if Some(id) == self.end {
            Some("[END]".into())
        } else if Some(id) == self.pad {
            Some("[PAD]".into())
        } else if Some(id) == self.unconditional {
            Some("[UNCOND]".into())
        } else if id >= self.first_class && ((id - self.first_class) as usize) < self.classes.len()
        {
            Some(format!(
                "[CLASS {}]",
                self.classes[(id - self.first_class) as usize]
            ))
        } else {
            None
        }
    }

    /// Checks that every id is inside the vocabulary.
    pub fn check_ids(&self, ids: &[u32]) -> Result<()> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.size()) {
            bail!(
                "token id {bad} is outside the vocabulary (ids 0..{} are valid)",
                self.size()
            );
        }
        Ok(())
    }
}

/// A codec that lives in a model folder: the `codec` section of its `config.json`, plus any side
/// files it needs (a `tokenizer.json`, a `palette.json`, a `codebook.json`).
pub trait FolderCodec: Codec + Sized {
    /// The codec section of `config.json`.
    fn to_json(&self) -> serde_json::Value;

    /// Reads a codec section; `dir` is the folder that holds the side files.
    fn from_json(section: &serde_json::Value, dir: &std::path::Path) -> Result<Self>;

    /// Writes the side files into the model folder `dir`, atomically.
    fn save_files(&self, dir: &std::path::Path) -> Result<()>;
}

/// Content <-> token ids, for one modality.
pub trait Codec {
    /// What the codec encodes: a string, an image, a clip.
    type Content;

    /// The token layout this codec encodes into: content tokens, then its special tokens.
    fn vocab(&self) -> &Vocab;

    /// Content tokens only: no BOS, END or class token (callers add those).
    fn encode(&self, content: &Self::Content) -> Result<Vec<u32>>;

    /// Content tokens back to content. Special tokens are an error.
    fn decode(&self, ids: &[u32]) -> Result<Self::Content>;

    /// How one token reads to a person, e.g. `'e'`, `level 3`, `[END]`.
    fn token_label(&self, id: u32) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specials_follow_content_in_fixed_order() {
        let v = Vocab::new(
            10,
            Specials {
                bos: true,
                end: true,
                pad: false,
                classes: vec!["a".into(), "b".into()],
            },
        );
        assert_eq!(
            (v.bos, v.end, v.pad, v.unconditional),
            (Some(10), Some(11), None, Some(12))
        );
        assert_eq!(v.first_class, 13);
        assert_eq!(v.size(), 15);
        assert_eq!(v.class_token("b").unwrap(), 14);
        assert_eq!(v.class_token("0").unwrap(), 13);
        assert!(
            v.class_token("c")
                .unwrap_err()
                .to_string()
                .contains("unknown class")
        );
        assert_eq!(v.special_label(14).unwrap(), "[CLASS b]");
        assert_eq!(v.special_label(3), None);
        assert!(v.check_ids(&[0, 14]).is_ok());
        assert!(v.check_ids(&[15]).is_err());
    }

    #[test]
    fn no_classes_means_no_unconditional_token() {
        let v = Vocab::new(
            4,
            Specials {
                end: true,
                ..Default::default()
            },
        );
        assert_eq!(v.unconditional, None);
        assert_eq!(v.size(), 5);
        assert!(v.class_token("1").is_err());
        assert_eq!(v.start_token(None).unwrap(), None);
    }
}
