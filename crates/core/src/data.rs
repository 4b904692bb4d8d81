//! Training data as token sequences, for any modality, and the windows a trainer draws.
//!
//! A text corpus is one long sequence; a digit image is a class token and 784 pixel tokens; a
//! clip is a class token, its samples and END. The trainer sees only [`Sequences`].

use anyhow::{Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The share of a class-conditional model's training sequences whose class token is swapped for
/// the unconditional one, so the model learns both (and classifier-free guidance works).
pub const LABEL_DROPOUT: f64 = 0.1;

/// A training set as token sequences, the one form of data the trainer reads for every modality.
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
    /// Draws sequence `i` afresh each time a batch uses it (e.g. a digit binarised anew from its
    /// intensities), from a seed the batch draws; `seqs[i]` then stands for its length and for
    /// evaluation. `None`: sequences are used as they are.
    pub redraw: Option<Redraw>,
    /// The share of windows that start at their sequence's beginning rather than at a uniform
    /// offset. Generation always starts there, but when sequences are much longer than a window
    /// few uniform windows do: a clip model would rarely see how a clip begins (0: uniform).
    pub start_share: f64,
}

/// A sequence drawn afresh for each use: `(sequence index, seed) -> tokens`, of the same length
/// as `Sequences::seqs[index]`.
#[derive(Clone)]
pub struct Redraw(pub std::sync::Arc<dyn Fn(usize, u64) -> Vec<u32> + Send + Sync>);

impl std::fmt::Debug for Redraw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redraw(..)")
    }
}

/// A batch of windows: `inputs[b * len + t]` predicts `targets[b * len + t]` where `mask` is 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Number of windows in the batch.
    pub batch: usize,
    /// Tokens per window (the context length trained on).
    pub len: usize,
    /// Input token ids, `batch * len` of them, window after window.
    pub inputs: Vec<u32>,
    /// The next token after each input: the same windows shifted left by one.
    pub targets: Vec<u32>,
    /// 1 where the target counts in the loss, 0 for padding, the prefix and cut-off context.
    pub mask: Vec<f32>,
}

impl Sequences {
    /// Number of content tokens over all sequences, conditioning prefixes not counted.
    pub fn content_tokens(&self) -> usize {
        self.seqs
            .iter()
            .map(|s| s.len().saturating_sub(self.prefix))
            .sum()
    }

    /// Fails when the set has no content or holds a token id outside a vocabulary of
    /// `vocab_size`, before a trainer would hit it mid-run.
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
            let index = seq.expect("pick < total");
            let drawn;
            let seq: &[u32] = match &self.redraw {
                Some(redraw) => {
                    drawn = (redraw.0)(index, rng.r#gen());
                    &drawn
                }
                None => &self.seqs[index],
            };
            // Only a run that asks for start windows draws for them, so other runs keep their
            // batches.
            let start = if self.start_share > 0.0 && rng.gen_bool(self.start_share) {
                0
            } else {
                pick
            };
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
            redraw: None,
            start_share: 0.0,
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
    fn a_start_share_draws_that_many_windows_from_the_beginning() {
        let clip = |start_share| Sequences {
            seqs: vec![std::iter::once(7).chain(100..1100).collect()],
            prefix: 1,
            start_share,
            ..Default::default()
        };
        let starts = |data: &Sequences| {
            let b = data.batch(0, 3, 400, 16);
            let at_start: Vec<bool> = (0..400).map(|row| b.inputs[row * 16 + 1] == 100).collect();
            for (row, &s) in at_start.iter().enumerate() {
                // A window from the beginning scores its first sample; a crop does not.
                assert_eq!(b.mask[row * 16] == 1.0, s);
            }
            at_start.iter().filter(|&&s| s).count()
        };
        let half = starts(&clip(0.5));
        assert!(
            (160..=240).contains(&half),
            "{half} of 400 windows start at the beginning"
        );
        // Uniform offsets: one window in 986 starts there.
        assert!(starts(&clip(0.0)) <= 3);
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
            redraw: None,
            start_share: 0.0,
        };
        let firsts: Vec<u32> = (0..200).map(|s| data.batch(0, s, 1, 3).inputs[0]).collect();
        let uncond = firsts.iter().filter(|&&t| t == 60).count();
        assert!(uncond > 60 && uncond < 140, "{uncond}");
        assert!(firsts.iter().all(|&t| t == 50 || t == 60));
    }

    #[test]
    fn redrawn_sequences_are_a_pure_function_of_seed_and_step() {
        let redraw = Redraw(std::sync::Arc::new(|i: usize, seed: u64| {
            let mut s = vec![100 + i as u32];
            s.extend((0..9).map(|k| ((seed >> k) & 1) as u32));
            s
        }));
        let data = Sequences {
            seqs: vec![vec![100; 10], vec![101; 10]],
            prefix: 1,
            redraw: Some(redraw),
            ..Default::default()
        };
        let a = data.batch(3, 11, 8, 9);
        assert_eq!(a, data.batch(3, 11, 8, 9));
        assert_ne!(a.inputs, data.batch(3, 12, 8, 9).inputs);
        // Every window is the whole redrawn sequence: a class token, then 0/1 content.
        for w in a.inputs.chunks(9) {
            assert!(w[0] == 100 || w[0] == 101);
            assert!(w[1..].iter().all(|&t| t <= 1));
        }
    }
}
