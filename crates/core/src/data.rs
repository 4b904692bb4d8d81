//! Training data as token sequences, for any modality, and the windows a trainer draws.
//!
//! A text corpus is one long sequence; a digit image is a class token and 784 pixel tokens; a
//! clip is a class token, its samples and END. The trainer sees only [`Sequences`].

use anyhow::{Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Debug, Default)]
pub struct Sequences {
    /// Each sequence: `prefix` conditioning tokens, then content (and END, if the codec has one).
    pub seqs: Vec<Vec<u32>>,
    /// Conditioning tokens at the start of every sequence (0 or 1: the class token).
    pub prefix: usize,
    /// During training, replace the prefix by this token with this probability, so that one
    /// model learns both conditional and unconditional generation.
    pub label_dropout: Option<(u32, f64)>,
    /// Fills windows longer than a sequence (never scored).
    pub pad: u32,
}

/// A batch of windows: `inputs[b * len + t]` predicts `targets[b * len + t]` where `mask` is 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub batch: usize,
    pub len: usize,
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub mask: Vec<f32>,
}

impl Sequences {
    pub fn content_tokens(&self) -> usize {
        self.seqs
            .iter()
            .map(|s| s.len().saturating_sub(self.prefix))
            .sum()
    }

    pub fn check(&self, vocab_size: usize) -> Result<()> {
        if self.seqs.is_empty() || self.content_tokens() == 0 {
            bail!("the dataset is empty");
        }
        if let Some(&bad) = self
            .seqs
            .iter()
            .flatten()
            .find(|&&id| id as usize >= vocab_size)
        {
            bail!("the dataset has token {bad}, outside the vocabulary of {vocab_size}");
        }
        Ok(())
    }

    /// The windows of training step `step`: a pure function of `(seed, step)`, so a resumed run
    /// draws exactly what an uninterrupted one would.
    ///
    /// A sequence is picked with probability proportional to the number of windows it holds,
    /// then a window start uniformly. A window is the prefix followed by `len + 1 - prefix`
    /// content tokens; a window that starts mid-sequence does not score its first content
    /// token (its left context was cut off).
    pub fn batch(&self, seed: u64, step: u64, batch: usize, len: usize) -> Batch {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let span = len + 1 - self.prefix; // content tokens per window
        let starts: Vec<usize> = self
            .seqs
            .iter()
            .map(|s| s.len().saturating_sub(self.prefix).saturating_sub(span) + 1)
            .collect();
        let total: usize = starts.iter().sum();
        let mut out = Batch {
            batch,
            len,
            inputs: Vec::with_capacity(batch * len),
            targets: Vec::with_capacity(batch * len),
            mask: Vec::with_capacity(batch * len),
        };
        for _ in 0..batch {
            let mut pick = rng.gen_range(0..total);
            let seq = starts.iter().position(|&n| {
                if pick < n {
                    true
                } else {
                    pick -= n;
                    false
                }
            });
            let seq = &self.seqs[seq.expect("pick < total")];
            let start = pick;
            let mut window: Vec<u32> = seq[..self.prefix].to_vec();
            if let Some((token, p)) = self.label_dropout {
                if self.prefix > 0 && rng.gen_bool(p) {
                    window.iter_mut().for_each(|t| *t = token);
                }
            }
            let content = &seq[self.prefix..];
            window.extend_from_slice(&content[start..(start + span).min(content.len())]);
            let real = window.len();
            window.resize(len + 1, self.pad);
            for t in 0..len {
                out.inputs.push(window[t]);
                out.targets.push(window[t + 1]);
                let target_pos = t + 1;
                let scored = target_pos >= self.prefix.max(1)
                    && target_pos < real
                    && !(start > 0 && target_pos == self.prefix && self.prefix > 0);
                out.mask.push(if scored { 1.0 } else { 0.0 });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_windows_are_contiguous_slices_and_reproducible() {
        let text = Sequences {
            seqs: vec![(0..100).collect()],
            ..Default::default()
        };
        let b = text.batch(1, 5, 4, 10);
        assert_eq!(b, text.batch(1, 5, 4, 10));
        assert_ne!(b.inputs, text.batch(1, 6, 4, 10).inputs);
        for row in 0..4 {
            let i = &b.inputs[row * 10..row * 10 + 10];
            let t = &b.targets[row * 10..row * 10 + 10];
            for k in 0..10 {
                assert_eq!(t[k], i[k] + 1);
            }
        }
        assert!(b.mask.iter().all(|&m| m == 1.0));
    }

    #[test]
    fn prefixed_sequences_keep_their_class_and_pad_the_rest() {
        // Two "images": class token 50 or 51, then 6 pixels.
        let data = Sequences {
            seqs: vec![vec![50, 1, 2, 3, 4, 5, 6], vec![51, 7, 8, 9, 10, 11, 12]],
            prefix: 1,
            label_dropout: None,
            pad: 99,
        };
        let b = data.batch(3, 0, 8, 8);
        for row in 0..8 {
            let i = &b.inputs[row * 8..row * 8 + 8];
            let m = &b.mask[row * 8..row * 8 + 8];
            assert!(i[0] == 50 || i[0] == 51);
            // All 6 pixels are scored (targets 1..=6), the padding is not.
            assert_eq!(m, &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
            assert_eq!(b.targets[row * 8 + 6], 99);
        }
    }

    #[test]
    fn crops_do_not_score_the_token_cut_from_its_context() {
        let clip = Sequences {
            seqs: vec![std::iter::once(7).chain(100..200).collect()],
            prefix: 1,
            ..Default::default()
        };
        let mut saw_crop = false;
        for step in 0..20 {
            let b = clip.batch(0, step, 1, 16);
            assert_eq!(b.inputs[0], 7);
            if b.inputs[1] != 100 {
                saw_crop = true;
                assert_eq!(b.mask[0], 0.0);
                assert!(b.mask[1..].iter().all(|&m| m == 1.0));
            }
        }
        assert!(saw_crop);
    }

    #[test]
    fn label_dropout_swaps_the_prefix() {
        let data = Sequences {
            seqs: vec![vec![50, 1, 2, 3]],
            prefix: 1,
            label_dropout: Some((60, 0.5)),
            pad: 0,
        };
        let firsts: Vec<u32> = (0..200).map(|s| data.batch(0, s, 1, 3).inputs[0]).collect();
        let uncond = firsts.iter().filter(|&&t| t == 60).count();
        assert!(uncond > 60 && uncond < 140, "{uncond}");
        assert!(firsts.iter().all(|&t| t == 50 || t == 60));
    }
}
