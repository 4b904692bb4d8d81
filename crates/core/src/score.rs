//! Held-out scoring: how many nats the model pays for each token it predicts.

use anyhow::{Result, bail};
use serde::Serialize;

use crate::decoder::{Decoder, Feed, Positions};

/// One forward pass of an evaluation: the logits after `inputs[i]` predict `targets[i]`, and
/// only positions `i >= scored_from` whose target `counts` are scored.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Token ids fed in one pass: the prefix, then the context and the tokens predicted.
    pub inputs: Vec<u32>,
    /// The token each input position should predict (placeholders before `scored_from`).
    pub targets: Vec<u32>,
    /// First position whose prediction is scored; earlier ones only give context.
    pub scored_from: usize,
}

impl Window {
    /// Positions whose prediction is scored (`score`'s filter may still leave some out).
    pub fn predicted(&self) -> usize {
        self.inputs.len() - self.scored_from
    }
}

/// Cuts `sequence` (a conditioning prefix of `prefix` tokens, then content) into windows of at
/// most `context` inputs so that every content token is predicted exactly once. Each window
/// after the first starts again with the prefix and the one token before its first target.
/// Without a prefix the very first token has nothing to be predicted from and is skipped.
pub fn windows(sequence: &[u32], prefix: usize, context: usize) -> Result<Vec<Window>> {
    if prefix + 2 > context {
        bail!(
            "a context of {context} tokens cannot hold a prefix of {prefix} and a token to predict"
        );
    }
    let first_target = prefix.max(1);
    let per_window = context - prefix.max(1) + if prefix == 0 { 1 } else { 0 };
    let mut out = Vec::new();
    let mut a = first_target;
    while a < sequence.len() {
        let b = (a + per_window.max(1)).min(sequence.len());
        // Inputs: the prefix, then everything from the token before `a` up to `b - 1`.
        let mut inputs: Vec<u32> = sequence[..prefix].to_vec();
        let start = (a - 1).max(prefix);
        inputs.extend_from_slice(&sequence[start..b - 1]);
        let mut targets: Vec<u32> = vec![0; inputs.len() - (b - a)];
        targets.extend_from_slice(&sequence[a..b]);
        let scored_from = inputs.len() - (b - a);
        debug_assert!(inputs.len() <= context);
        out.push(Window {
            inputs,
            targets,
            scored_from,
        });
        a = b;
    }
    Ok(out)
}

/// Total negative log-likelihood of a set of windows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Score {
    /// Targets scored (those that count).
    pub tokens: usize,
    /// Sum of `-ln p(target)` over the scored targets.
    pub nats: f64,
}

impl std::ops::AddAssign for Score {
    fn add_assign(&mut self, other: Score) {
        self.tokens += other.tokens;
        self.nats += other.nats;
    }
}

impl Score {
    /// Mean negative log-likelihood per scored token, in nats; 0 when nothing was scored.
    pub fn nats_per_token(&self) -> f64 {
        self.nats / self.tokens.max(1) as f64
    }
    /// [`Score::nats_per_token`] in bits (bits per dimension, for pixels and samples).
    pub fn bits_per_token(&self) -> f64 {
        self.nats_per_token() / std::f64::consts::LN_2
    }
}

/// Scores windows with a decoder, several windows per forward pass. `counts(target)` says
/// whether a target is a content token that counts (END or label tokens may not).
pub fn score<D: Decoder>(
    decoder: &D,
    windows: &[Window],
    counts: &dyn Fn(u32) -> bool,
) -> Result<Score> {
    let mut total = Score::default();
    for s in score_each(decoder, windows, counts)? {
        total += s;
    }
    Ok(total)
}

/// [`score`] for each window on its own, in order (e.g. to combine one image's scores under
/// several class tokens).
pub fn score_each<D: Decoder>(
    decoder: &D,
    windows: &[Window],
    counts: &dyn Fn(u32) -> bool,
) -> Result<Vec<Score>> {
    // Keep each batch's logits under ~64 MB.
    let budget = (16_000_000 / decoder.vocab_size().max(1)).max(1);
    let mut out = Vec::with_capacity(windows.len());
    let mut rest = windows;
    while !rest.is_empty() {
        let mut n = 0;
        let mut rows = 0;
        while n < rest.len() && (n == 0 || rows + rest[n].inputs.len() <= budget) {
            rows += rest[n].inputs.len();
            n += 1;
        }
        let (batch, later) = rest.split_at(n);
        let mut caches: Vec<D::Cache> = batch.iter().map(|_| decoder.new_cache()).collect();
        let mut feeds: Vec<Feed<D::Cache>> = batch
            .iter()
            .zip(caches.iter_mut())
            .map(|(w, c)| Feed::new(&w.inputs, c))
            .collect();
        let logits = decoder.forward(&mut feeds, Positions::All)?;
        for (b, w) in batch.iter().enumerate() {
            let mut s = Score::default();
            for pos in w.scored_from..w.inputs.len() {
                let target = w.targets[pos];
                if counts(target) {
                    s.nats += nll(logits.row(b, pos), target);
                    s.tokens += 1;
                }
            }
            out.push(s);
        }
        rest = later;
    }
    Ok(out)
}

/// `-log softmax(logits)[target]`, computed stably in f64.
pub fn nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_sum = logits
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    log_sum - logits[target as usize] as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn predicted(ws: &[Window]) -> Vec<u32> {
        ws.iter()
            .flat_map(|w| w.targets[w.scored_from..].to_vec())
            .collect()
    }

    #[test]
    fn every_token_is_predicted_once_without_prefix() {
        let seq: Vec<u32> = (0..23).collect();
        let ws = windows(&seq, 0, 8).unwrap();
        assert_eq!(predicted(&ws), (1..23).collect::<Vec<_>>());
        for w in &ws {
            assert!(w.inputs.len() <= 8);
            // Input i predicts the token right after it.
            for i in w.scored_from..w.inputs.len() {
                assert_eq!(w.targets[i], w.inputs[i] + 1);
            }
        }
        assert_eq!(ws[0].inputs.len(), 8);
    }

    #[test]
    fn a_prefix_is_repeated_and_never_predicted() {
        // Prefix [100], content 0..19.
        let mut seq = vec![100];
        seq.extend(0..20);
        let ws = windows(&seq, 1, 8).unwrap();
        assert_eq!(predicted(&ws), (0..20).collect::<Vec<_>>());
        for w in &ws {
            assert_eq!(w.inputs[0], 100);
            assert!(w.inputs.len() <= 8);
        }
        // The second window carries the token before its first target as context.
        assert_eq!(ws[1].inputs[1] + 1, ws[1].targets[ws[1].scored_from]);
    }

    #[test]
    fn nll_matches_a_hand_computation() {
        let l = [0.0f32, (2.0f32).ln()];
        assert!((nll(&l, 1) - (3.0f64 / 2.0).ln()).abs() < 1e-6);
    }
}
