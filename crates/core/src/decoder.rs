//! The autoregressive decoder: feed new tokens after what a sequence's cache holds, get the
//! next-token logits.
//!
//! A batch is ragged: each sequence brings its own cache and any number of new tokens, so
//! sequences of different lengths (a fresh prompt beside one deep into its reply) are decoded
//! together, and a sequence joins or leaves a batch between two calls simply by bringing or no
//! longer bringing its cache.

use crate::error::FeedError;

/// Which positions' logits a forward pass returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Positions {
    /// Only the last position fed (generation).
    Last,
    /// Every position fed (evaluation, `jielong logits`).
    All,
}

/// Next-token logits of a ragged batch: for each sequence, one row of `vocab` values per
/// position returned, the sequences' rows one after another.
#[derive(Clone, Debug, PartialEq)]
pub struct Logits {
    /// Values per row: the decoder's vocabulary size.
    pub vocab: usize,
    /// All rows back to back, row-major; read one with [`Logits::row`] or [`Logits::last`].
    pub data: Vec<f32>,
    /// Row index where each sequence's rows start, plus the total at the end.
    starts: Vec<usize>,
}

impl Logits {
    /// Logits of sequences with `rows[s]` rows each.
    ///
    /// # Panics
    /// When `data` does not hold `sum(rows) * vocab` values: decoders build it, so a mismatch
    /// is a bug in the decoder, not bad input.
    pub fn new(vocab: usize, rows: &[usize], data: Vec<f32>) -> Self {
        let mut starts = Vec::with_capacity(rows.len() + 1);
        let mut total = 0;
        for &r in rows {
            starts.push(total);
            total += r;
        }
        starts.push(total);
        assert_eq!(
            data.len(),
            total * vocab,
            "logits of {total} rows of {vocab} values"
        );
        Self {
            vocab,
            data,
            starts,
        }
    }

    /// Number of sequences.
    pub fn batch(&self) -> usize {
        self.starts.len() - 1
    }

    /// Number of rows of sequence `seq`.
    pub fn rows(&self, seq: usize) -> usize {
        self.starts[seq + 1] - self.starts[seq]
    }

    /// The logits after the `position`-th returned position of sequence `seq`.
    pub fn row(&self, seq: usize, position: usize) -> &[f32] {
        assert!(
            position < self.rows(seq),
            "row {position} of sequence {seq}"
        );
        let start = (self.starts[seq] + position) * self.vocab;
        &self.data[start..start + self.vocab]
    }

    /// The last rows of sequences `a` and `b` (a != b), both mutable.
    pub fn two_rows_mut(&mut self, a: usize, b: usize) -> (&mut [f32], &mut [f32]) {
        assert_ne!(a, b);
        let v = self.vocab;
        let (ra, rb) = (self.starts[a + 1] - 1, self.starts[b + 1] - 1);
        if ra < rb {
            let (lo, hi) = self.data.split_at_mut(rb * v);
            (&mut lo[ra * v..(ra + 1) * v], &mut hi[..v])
        } else {
            let (lo, hi) = self.data.split_at_mut(ra * v);
            (&mut hi[..v], &mut lo[rb * v..(rb + 1) * v])
        }
    }

    /// The logits after the last position fed to sequence `seq`.
    pub fn last(&self, seq: usize) -> &[f32] {
        self.row(seq, self.rows(seq) - 1)
    }
}

/// One sequence of a batch: the tokens to feed after what its cache holds.
pub struct Feed<'a, C> {
    /// New token ids to append; never empty (see [`check_feeds`]).
    pub ids: &'a [u32],
    /// The sequence's cache, which the forward pass extends by `ids`.
    pub cache: &'a mut C,
}

impl<'a, C> Feed<'a, C> {
    /// Pairs the new ids of one sequence with its cache.
    pub fn new(ids: &'a [u32], cache: &'a mut C) -> Self {
        Self { ids, cache }
    }
}

/// A model that plays 接龍: given tokens, the distribution of the next one.
pub trait Decoder {
    /// What one sequence has been fed so far (keys and values, for a transformer).
    type Cache;

    /// Size of the output layer.
    fn vocab_size(&self) -> usize;

    /// The longest sequence the model attends over.
    fn context_len(&self) -> usize;

    /// An empty cache for one sequence.
    fn new_cache(&self) -> Self::Cache;

    /// How many positions `cache` holds.
    fn cache_len(&self, cache: &Self::Cache) -> usize;

    /// Forgets every position from `len` on (a chat rewinds to where a re-rendered
    /// conversation stops matching what was fed).
    fn truncate_cache(&self, cache: &mut Self::Cache, len: usize);

    /// Feeds every sequence its new ids after what its cache holds and returns, per sequence,
    /// the next-token logits of the positions asked for. Sequences may bring different numbers
    /// of new ids; each sequence's logits depend only on its own cache and ids.
    fn forward(
        &self,
        feeds: &mut [Feed<'_, Self::Cache>],
        positions: Positions,
    ) -> anyhow::Result<Logits>;

    /// Runs `task(0)`, …, `task(n - 1)`, each exactly once, possibly at the same time: the
    /// sampler's work for each sequence between two forward passes, while the decoder's own
    /// threads are idle. By default half of the tasks run on a second thread when there are
    /// several cores; a decoder with a thread pool lends it instead.
    fn run_tasks(&self, n: usize, task: &(dyn Fn(usize) + Sync)) {
        in_two_halves(n, task)
    }
}

/// `task(0..n)`, the second half on a new thread when there are several cores.
pub fn in_two_halves(n: usize, task: &(dyn Fn(usize) + Sync)) {
    let half = n / 2;
    if half == 0 || crate::cores() < 2 {
        return (0..n).for_each(task);
    }
    std::thread::scope(|s| {
        s.spawn(|| (half..n).for_each(task));
        (0..half).for_each(task);
    });
}

/// Checks the rules every decoder shares: a non-empty batch of non-empty feeds of in-vocabulary
/// ids that fit in the context after what each cache holds (`cached[s]`).
pub fn check_feeds(
    ids: &[&[u32]],
    cached: &[usize],
    vocab_size: usize,
    context: usize,
) -> Result<(), FeedError> {
    if ids.is_empty() {
        return Err(FeedError::EmptyBatch);
    }
    for (row, &cached) in ids.iter().zip(cached) {
        if row.is_empty() {
            return Err(FeedError::EmptyFeed);
        }
        if let Some(&id) = row.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(FeedError::UnknownToken {
                id,
                vocab: vocab_size,
            });
        }
        if cached + row.len() > context {
            return Err(FeedError::TooLong {
                tokens: cached + row.len(),
                context,
            });
        }
    }
    Ok(())
}

/// The number of rows each sequence gets for `positions`.
pub fn rows_returned(ids: &[&[u32]], positions: Positions) -> Vec<usize> {
    ids.iter()
        .map(|row| match positions {
            Positions::Last => 1,
            Positions::All => row.len(),
        })
        .collect()
}
