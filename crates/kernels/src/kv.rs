//! One sequence's key/value cache, grown in blocks of positions.
//!
//! Each layer holds a list of blocks of [`BLOCK`] positions. Appending a token writes its keys
//! and values in place; when a layer's blocks are full a new block is allocated, so growth
//! never copies earlier positions and memory follows the sequence's length (a cache is not
//! sized for the whole context up front). `truncate` keeps the blocks for reuse.
//!
//! Inside a block, keys are stored transposed, `[kv_heads][head_dim][BLOCK]`, so that
//! attention scores 16 positions per vector instruction whatever the head size (8 or 128): a
//! score is one FMA per dimension. Values are stored as they come, `[kv_heads][BLOCK][head_dim]`:
//! attention adds each position's value row, weighted by its probability, to an output held in
//! registers, 16 dimensions per instruction, and appending a value is one contiguous copy.
//! Positions of a block past the cache's length always hold zeros (fresh blocks are zeroed and
//! `truncate` clears what it forgets), so that attention can score whole chunks of 16 keys.
//!
//! A ragged batch holds one cache per sequence; the weight products of all sequences share one
//! batched `matmul`, and each sequence attends over its own cache.

use crate::aligned::Aligned;
use crate::pool::Pool;

/// Positions per block.
pub const BLOCK: usize = 64;

/// Keys and values of every layer of one sequence, in f32.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Positions stored per layer (they differ only in the middle of a step).
    lens: Vec<usize>,
    /// `[layer][block]`, each block `[K: kv_heads][head_dim][BLOCK] ++ [V: kv_heads][BLOCK][head_dim]`.
    blocks: Vec<Vec<Aligned<f32>>>,
    /// The sequence's first token id, for a model that conditions every position on it.
    first_token: Option<u32>,
}

impl KvCache {
    /// An empty cache; no memory is allocated until positions are appended.
    ///
    /// Panics when `layers`, `kv_heads` or `head_dim` is 0.
    pub fn new(layers: usize, kv_heads: usize, head_dim: usize) -> KvCache {
        assert!(
            layers > 0 && kv_heads > 0 && head_dim > 0,
            "KvCache: zero-sized dimension"
        );
        KvCache {
            layers,
            kv_heads,
            head_dim,
            lens: vec![0; layers],
            blocks: (0..layers).map(|_| Vec::new()).collect(),
            first_token: None,
        }
    }

    pub fn layers(&self) -> usize {
        self.layers
    }
    pub fn kv_heads(&self) -> usize {
        self.kv_heads
    }
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Positions held by every layer (after a complete step, the sequence's length).
    pub fn len(&self) -> usize {
        self.lens.iter().copied().min().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Positions held by one layer.
    pub fn layer_len(&self, layer: usize) -> usize {
        self.lens[layer]
    }

    /// Positions every layer can hold without allocating.
    pub fn capacity(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| b.len() * BLOCK)
            .min()
            .unwrap_or(0)
    }

    /// Bytes of key/value storage allocated.
    pub fn memory_bytes(&self) -> usize {
        self.blocks.iter().map(|b| b.len()).sum::<usize>() * self.block_floats() * 4
    }

    /// Forgets positions from `len` on, in every layer (a rewind, or a shorter prompt reusing the
    /// cache); the blocks stay allocated for reuse.
    pub fn truncate(&mut self, len: usize) {
        for (l, blocks) in self.lens.iter_mut().zip(&mut self.blocks) {
            if len >= *l {
                continue;
            }
            // Zero the forgotten positions of every block that keeps or held some of them, so
            // that positions past the length read as zeros.
            let keys = self.kv_heads * self.head_dim * BLOCK;
            for (b, block) in blocks
                .iter_mut()
                .enumerate()
                .take((*l).div_ceil(BLOCK))
                .skip(len / BLOCK)
            {
                let from = len.saturating_sub(b * BLOCK);
                let (k, v) = block.split_at_mut(keys);
                for row in k.chunks_exact_mut(BLOCK) {
                    row[from..].fill(0.0);
                }
                for head in v.chunks_exact_mut(BLOCK * self.head_dim) {
                    head[from * self.head_dim..].fill(0.0);
                }
            }
            *l = len;
        }
        if len == 0 {
            self.first_token = None;
        }
    }

    /// The id the sequence started with, once fed (`None` for an empty cache).
    pub fn first_token(&self) -> Option<u32> {
        self.first_token
    }

    /// Records the sequence's first id (the model calls this when it feeds an empty cache).
    pub fn set_first_token(&mut self, id: u32) {
        self.first_token = Some(id);
    }

    /// Empties the cache, keeping its blocks.
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Frees blocks beyond those the current length needs.
    pub fn shrink_to_fit(&mut self) {
        for (blocks, &len) in self.blocks.iter_mut().zip(&self.lens) {
            blocks.truncate(len.div_ceil(BLOCK));
        }
    }

    /// Allocates blocks so that every layer can hold `positions` positions.
    pub fn reserve(&mut self, positions: usize) {
        let floats = self.block_floats();
        for blocks in &mut self.blocks {
            while blocks.len() * BLOCK < positions {
                blocks.push(Aligned::zeroed(floats));
            }
        }
    }

    /// Appends the keys and values of `n` new positions to `layer` (after its current ones).
    ///
    /// # Shapes
    /// `k`, `v`: `[n][kv_heads * head_dim]` (the K and V projections of the new tokens).
    pub fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        let (hd, kvh) = (self.head_dim, self.kv_heads);
        let width = kvh * hd;
        assert!(
            layer < self.layers,
            "KvCache::append: layer {layer} of {}",
            self.layers
        );
        assert_eq!(
            k.len() % width,
            0,
            "KvCache::append: k rows must have {width} values"
        );
        assert_eq!(k.len(), v.len(), "KvCache::append: k and v lengths differ");
        let n = k.len() / width;
        let start = self.lens[layer];
        let floats = self.block_floats();
        let blocks = &mut self.blocks[layer];
        while blocks.len() * BLOCK < start + n {
            blocks.push(Aligned::zeroed(floats));
        }
        for (t, (kr, vr)) in k.chunks_exact(width).zip(v.chunks_exact(width)).enumerate() {
            let pos = start + t;
            let (block, j) = (&mut blocks[pos / BLOCK], pos % BLOCK);
            let (kb, vb) = block.split_at_mut(kvh * hd * BLOCK);
            // Column j of each head's [head_dim][BLOCK] keys, row j of its [BLOCK][head_dim]
            // values.
            for (i, val) in kr.iter().enumerate() {
                kb[i * BLOCK + j] = *val;
            }
            for (dst, src) in vb.chunks_exact_mut(BLOCK * hd).zip(vr.chunks_exact(hd)) {
                dst[j * hd..][..hd].copy_from_slice(src);
            }
        }
        self.lens[layer] = start + n;
    }

    /// The key of `kv_head` at `pos` in `layer`, copied into `out` (`[head_dim]`).
    pub fn key(&self, layer: usize, kv_head: usize, pos: usize, out: &mut [f32]) {
        assert!(
            pos < self.lens[layer],
            "KvCache::key: position {pos} of {}",
            self.lens[layer]
        );
        let kh = self.keys(layer, pos / BLOCK, kv_head);
        for (d, o) in out[..self.head_dim].iter_mut().enumerate() {
            *o = kh[d * BLOCK + pos % BLOCK];
        }
    }

    /// The value of `kv_head` at `pos` in `layer`, copied into `out` (`[head_dim]`).
    pub fn value(&self, layer: usize, kv_head: usize, pos: usize, out: &mut [f32]) {
        assert!(
            pos < self.lens[layer],
            "KvCache::value: position {pos} of {}",
            self.lens[layer]
        );
        let vh = self.values(layer, pos / BLOCK, kv_head);
        let hd = self.head_dim;
        out[..hd].copy_from_slice(&vh[pos % BLOCK * hd..][..hd]);
    }

    /// Block `b` of `layer`: the keys of `kv_head`, `[head_dim][BLOCK]`.
    pub(crate) fn keys(&self, layer: usize, b: usize, kv_head: usize) -> &[f32] {
        let size = self.head_dim * BLOCK;
        &self.blocks[layer][b][kv_head * size..][..size]
    }

    /// Block `b` of `layer`: the values of `kv_head`, `[BLOCK][head_dim]`.
    pub(crate) fn values(&self, layer: usize, b: usize, kv_head: usize) -> &[f32] {
        let size = self.head_dim * BLOCK;
        &self.blocks[layer][b][(self.kv_heads + kv_head) * size..][..size]
    }

    fn block_floats(&self) -> usize {
        2 * self.kv_heads * self.head_dim * BLOCK
    }
}

/// One sequence's new keys and values for [`append_many`]: `k`, `v` `[n][kv_heads * head_dim]`.
pub struct KvAppend<'a> {
    pub cache: &'a mut KvCache,
    pub k: &'a [f32],
    pub v: &'a [f32],
}

/// [`KvCache::append`] to `layer` of every sequence of a batch, the sequences split across the
/// pool's threads.
///
/// A position writes one value into each of its `kv_heads * head_dim` key rows, a cache line
/// apiece, and after a step's weights have streamed through the caches those lines come from
/// memory: a batch's appends are bound by the misses one core has in flight, and two cores
/// have twice as many (SmolLM2 batch 16: 82 µs a layer on one thread, 45-50 on two).
pub fn append_many(pool: &Pool, layer: usize, jobs: &mut [KvAppend<'_>]) {
    /// The jobs as a raw pointer, so that each task can take its own sequences.
    struct Jobs(*mut KvAppend<'static>);
    // SAFETY: task `t` touches only the jobs `t, t + tasks, …`, each a different cache.
    unsafe impl Sync for Jobs {}
    // One task per thread, at most one per sequence (`run` does a single task inline).
    let tasks = pool.threads().min(jobs.len());
    let (n, all) = (jobs.len(), Jobs(jobs.as_mut_ptr().cast()));
    let all = &all;
    pool.run(tasks, &|t| {
        for i in (t..n).step_by(tasks) {
            // SAFETY: `i < n`, the slice outlives the region, and no other task takes job `i`.
            let j = unsafe { &mut *all.0.add(i) };
            j.cache.append(layer, j.k, j.v);
        }
    });
}
