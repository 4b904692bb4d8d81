//! The autoregressive decoder: feed new tokens after a cache, get next-token logits.

use anyhow::{Result, bail};

/// Which positions' logits a forward pass returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Positions {
    /// Only the last position fed (generation).
    Last,
    /// Every position fed (evaluation, `jielong logits`).
    All,
}

/// Next-token logits for a batch: `[batch, positions, vocab]`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Logits {
    pub batch: usize,
    pub positions: usize,
    pub vocab: usize,
    pub data: Vec<f32>,
}

impl Logits {
    pub fn new(batch: usize, positions: usize, vocab: usize, data: Vec<f32>) -> Result<Self> {
        if data.len() != batch * positions * vocab {
            bail!(
                "logits have {} values, expected {batch} x {positions} x {vocab}",
                data.len()
            );
        }
        Ok(Self {
            batch,
            positions,
            vocab,
            data,
        })
    }

    /// The logits after position `position` of sequence `seq`.
    pub fn row(&self, seq: usize, position: usize) -> &[f32] {
        let start = (seq * self.positions + position) * self.vocab;
        &self.data[start..start + self.vocab]
    }

    /// The logits after the last position of sequence `seq`.
    pub fn last(&self, seq: usize) -> &[f32] {
        self.row(seq, self.positions - 1)
    }
}

/// A model that plays 接龍: given tokens, the distribution of the next one.
///
/// Every sequence of a batch is fed the same number of new tokens per call; the cache holds the
/// keys and values of everything fed before, so a call costs only its new tokens.
pub trait Decoder {
    type Cache;

    /// Size of the output layer.
    fn vocab_size(&self) -> usize;

    /// The longest sequence the model attends over.
    fn context_len(&self) -> usize;

    /// An empty cache for `batch` sequences.
    fn new_cache(&self, batch: usize) -> Self::Cache;

    /// How many positions the cache holds.
    fn cache_len(&self, cache: &Self::Cache) -> usize;

    /// Feeds `ids` (`[batch][new]`, the same `new` for every sequence) after what `cache` holds
    /// and returns the next-token logits for the requested positions.
    fn forward(
        &self,
        ids: &[Vec<u32>],
        cache: &mut Self::Cache,
        positions: Positions,
    ) -> Result<Logits>;
}

/// Checks the shape rules every decoder shares: a non-empty batch of equal-length, non-empty
/// rows of in-vocabulary ids that fit in the context after the cache. Returns the row length.
pub fn check_feed(
    ids: &[Vec<u32>],
    vocab_size: usize,
    cached: usize,
    context: usize,
) -> Result<usize> {
    let Some(first) = ids.first() else {
        bail!("no sequences to feed")
    };
    let len = first.len();
    if len == 0 {
        bail!("nothing to feed: every sequence needs at least one token");
    }
    if ids.iter().any(|row| row.len() != len) {
        bail!("the sequences of a batch must be fed the same number of tokens");
    }
    if let Some(&bad) = ids.iter().flatten().find(|&&id| id as usize >= vocab_size) {
        bail!("token id {bad} is outside the model's vocabulary of {vocab_size}");
    }
    if cached + len > context {
        bail!(
            "{} tokens do not fit in the model's context of {context} tokens",
            cached + len
        );
    }
    Ok(len)
}
