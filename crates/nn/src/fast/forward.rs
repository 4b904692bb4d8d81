//! The forward pass of [`FastModel`] over a ragged batch, and its [`Decoder`] impl.
//!
//! Every new row of every sequence is stacked into one `[rows][hidden]` batch, so each weight
//! product reads the weights once for the whole batch; only rotary positions and attention are
//! per sequence (each sequence attends over its own cache, all of them in one parallel region).
//! Batches larger than [`MAX_ROWS`] rows (long prompts) run in consecutive sub-batches, which
//! bounds the buffers; the kernels compute every row with the same operations whatever the
//! batch, so a sequence gets the same bits alone, in any batch and in any split.
//!
//! The buffers live in a `Mutex<Scratch>`: `Decoder::forward` takes `&self`, one call at a time
//! uses them, they only grow (to the largest batch seen), and a warm step allocates nothing but
//! the logits it returns (and a cache block every 64 positions).

use std::sync::PoisonError;

use anyhow::{Context, Result, bail};
use jielong_core::{Decoder, Feed, Logits, Positions, check_feeds};
use jielong_kernels::ops::{RopeStyle, add_in_place, rms_norm, rope, silu_mul};
use jielong_kernels::{
    Aligned, AttnSeq, KvAppend, KvCache, append_many, attend_many, matmul, matmul_many,
};

use super::FastModel;

/// Most rows (new tokens of all sequences) one pass through the layers takes.
pub const MAX_ROWS: usize = 128;

/// Where a decoder's cache type keeps the kernels' cache (`None`: a cache of another backend).
pub(crate) trait KvSlot {
    fn kv(&self) -> Option<&KvCache>;
    fn kv_mut(&mut self) -> Option<&mut KvCache>;
}

impl KvSlot for KvCache {
    fn kv(&self) -> Option<&KvCache> {
        Some(self)
    }
    fn kv_mut(&mut self) -> Option<&mut KvCache> {
        Some(self)
    }
}

/// Consecutive new rows `from..from + len` of sequence `seq`, stacked in a sub-batch.
#[derive(Clone, Copy, Debug)]
struct Piece {
    seq: usize,
    from: usize,
    len: usize,
}

/// Activation buffers, each sized for `rows` rows (`[rows][width]`, row-major), on cache lines
/// (see [`Aligned`]).
#[derive(Default)]
pub(crate) struct Scratch {
    rows: usize,
    /// The residual stream, `[rows][hidden]`.
    x: Aligned<f32>,
    /// Normed input of the next product, `[rows][hidden]`.
    xn: Aligned<f32>,
    q: Aligned<f32>,
    k: Aligned<f32>,
    v: Aligned<f32>,
    /// Attention outputs, `[rows][heads * head_dim]`.
    att: Aligned<f32>,
    /// A block's output before the residual add, `[rows][hidden]`.
    tmp: Aligned<f32>,
    gate: Aligned<f32>,
    up: Aligned<f32>,
    /// Rotary position of each row.
    positions: Vec<usize>,
    pieces: Vec<Piece>,
    /// Logits rows returned per sequence.
    returned: Vec<usize>,
    /// The attention jobs' and the cache appends' allocations, kept empty between layers (see
    /// [`recycle`]).
    attn: Vec<AttnSeq<'static>>,
    appends: Vec<KvAppend<'static>>,
}

impl Scratch {
    fn reserve(&mut self, rows: usize, m: &FastModel) {
        if rows <= self.rows {
            return;
        }
        let c = &m.config;
        let (h, qw, kw, i) = (
            c.hidden_size,
            c.num_heads * c.head_dim,
            c.num_kv_heads * c.head_dim,
            c.intermediate_size,
        );
        for (buf, width) in [
            (&mut self.x, h),
            (&mut self.xn, h),
            (&mut self.q, qw),
            (&mut self.k, kw),
            (&mut self.v, kw),
            (&mut self.att, qw),
            (&mut self.tmp, h),
            (&mut self.gate, i),
            (&mut self.up, i),
        ] {
            buf.resize(rows * width, 0.0);
        }
        self.positions.resize(rows, 0);
        self.rows = rows;
    }
}

/// An empty vector's allocation handed on to an element type of the same layout (the same
/// type with other lifetimes), so that the attention and append jobs (which borrow this call's
/// caches) need no allocation per call.
fn recycle<T, U>(v: Vec<T>) -> Vec<U> {
    const {
        assert!(size_of::<T>() == size_of::<U>() && align_of::<T>() == align_of::<U>());
    }
    let mut v = std::mem::ManuallyDrop::new(v);
    v.clear();
    // SAFETY: `T` and `U` have the same size and alignment, so the allocation's layout is the
    // one a `Vec<U>` of this capacity expects, and the vector is empty: no value (and no
    // borrow) is carried over.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<U>(), 0, v.capacity()) }
}

fn cache<'a, C: KvSlot>(feed: &'a Feed<'_, C>) -> &'a KvCache {
    feed.cache.kv().expect("cache kinds are checked first")
}

impl FastModel {
    /// [`Decoder::forward`] for any cache type that holds the kernels' cache.
    pub(crate) fn run<C: KvSlot>(
        &self,
        feeds: &mut [Feed<'_, C>],
        positions: Positions,
    ) -> Result<Logits> {
        let c = &self.config;
        if feeds.is_empty() {
            check_feeds(&[], &[], c.vocab_size, c.context_len)?;
        }
        // One feed at a time: the same checks and errors as the burn path, without collecting.
        for f in feeds.iter() {
            let kv = f
                .cache
                .kv()
                .context("a cache of the burn path was fed to the kernels path")?;
            if (kv.layers(), kv.kv_heads(), kv.head_dim())
                != (c.num_layers, c.num_kv_heads, c.head_dim)
            {
                bail!("a cache made for another model was fed to this one");
            }
            check_feeds(&[f.ids], &[kv.len()], c.vocab_size, c.context_len)?;
        }
        let mut guard = self.scratch.lock().unwrap_or_else(PoisonError::into_inner);
        let sc = &mut *guard;
        sc.returned.clear();
        sc.returned.extend(feeds.iter().map(|f| match positions {
            Positions::Last => 1,
            Positions::All => f.ids.len(),
        }));
        let vocab = c.vocab_size;
        let mut data = vec![0f32; sc.returned.iter().sum::<usize>() * vocab];
        // Sub-batches of up to MAX_ROWS rows, sequences in order (a long feed spans several):
        // the rows each returns are then consecutive rows of the output.
        let (mut seq, mut from, mut written) = (0, 0, 0);
        while seq < feeds.len() {
            sc.pieces.clear();
            let mut rows = 0;
            while seq < feeds.len() && rows < MAX_ROWS {
                let len = (feeds[seq].ids.len() - from).min(MAX_ROWS - rows);
                sc.pieces.push(Piece { seq, from, len });
                rows += len;
                from += len;
                if from == feeds[seq].ids.len() {
                    (seq, from) = (seq + 1, 0);
                }
            }
            written += self.sub_batch(sc, feeds, rows, positions, &mut data[written * vocab..]);
        }
        Ok(Logits::new(vocab, &sc.returned, data))
    }

    /// Runs the rows of `sc.pieces` through the model, appending their keys and values to
    /// their caches, and writes the logits of the rows asked for.
    ///
    /// # Shapes
    /// - `sc.pieces`: `rows` new rows in all, stacked piece after piece.
    /// - `out`: `[asked][vocab]` (and more after): the logits of every row (`All`) or of the
    ///   last row of each sequence ending in this sub-batch (`Last`), in order.
    ///
    /// Returns the number of logits rows written.
    fn sub_batch<C: KvSlot>(
        &self,
        sc: &mut Scratch,
        feeds: &mut [Feed<'_, C>],
        rows: usize,
        positions: Positions,
        out: &mut [f32],
    ) -> usize {
        let c = &self.config;
        let (h, hd, heads, kvh) = (c.hidden_size, c.head_dim, c.num_heads, c.num_kv_heads);
        let (qw, kw, i) = (heads * hd, kvh * hd, c.intermediate_size);
        let pool = &self.pool;
        sc.reserve(rows, self);
        let Scratch {
            x,
            xn,
            q,
            k,
            v,
            att,
            tmp,
            gate,
            up,
            positions: pos,
            pieces,
            attn,
            appends,
            ..
        } = sc;
        let (x, xn, tmp) = (
            &mut x[..rows * h],
            &mut xn[..rows * h],
            &mut tmp[..rows * h],
        );
        let (q, k, v, att) = (
            &mut q[..rows * qw],
            &mut k[..rows * kw],
            &mut v[..rows * kw],
            &mut att[..rows * qw],
        );
        let (gate, up, pos) = (&mut gate[..rows * i], &mut up[..rows * i], &mut pos[..rows]);

        // Embeddings and positions (each piece continues where its cache ends).
        let embed = self.embed.get();
        let mut r = 0;
        for p in pieces.iter() {
            let f = &mut feeds[p.seq];
            let kv = f.cache.kv_mut().expect("checked");
            let start = kv.len();
            if kv.first_token().is_none() {
                kv.set_first_token(f.ids[0]); // an empty cache: this piece starts the sequence
            }
            let first = kv.first_token().expect("just set") as usize;
            // The first token's condition row, added at every position (tmp is free until
            // the first attention output).
            let condition = self.condition.as_ref().map(|m| {
                m.get().dequantize_row(first, &mut tmp[..h]);
                &tmp[..h]
            });
            for (t, &id) in f.ids[p.from..p.from + p.len].iter().enumerate() {
                let row = &mut x[r * h..(r + 1) * h];
                embed.dequantize_row(id as usize, row);
                if let Some(condition) = condition {
                    add_in_place(row, condition);
                }
                pos[r] = start + t;
                r += 1;
            }
        }

        for (l, layer) in self.layers.iter().enumerate() {
            rms_norm(x, &layer.attn_norm, self.eps, xn, h);
            matmul_many(
                pool,
                xn,
                rows,
                &mut [
                    (layer.q.get(), layer.q_bias.as_deref(), &mut *q),
                    (layer.k.get(), layer.k_bias.as_deref(), &mut *k),
                    (layer.v.get(), layer.v_bias.as_deref(), &mut *v),
                ],
            );
            rope(q, heads, hd, pos, &self.cos, &self.sin, RopeStyle::Half);
            rope(k, kvh, hd, pos, &self.cos, &self.sin, RopeStyle::Half);
            // Each piece's keys and values into its cache (pieces are in sequence order, one
            // per sequence), the sequences split across the threads.
            let mut kv_jobs = recycle(std::mem::take(appends));
            let (mut k_rest, mut v_rest) = (&k[..], &v[..]);
            let mut next = pieces.iter().peekable();
            for (s, f) in feeds.iter_mut().enumerate() {
                let Some(p) = next.next_if(|p| p.seq == s) else {
                    continue;
                };
                let ((kp, kr), (vp, vr)) =
                    (k_rest.split_at(p.len * kw), v_rest.split_at(p.len * kw));
                (k_rest, v_rest) = (kr, vr);
                kv_jobs.push(KvAppend {
                    cache: f.cache.kv_mut().expect("checked"),
                    k: kp,
                    v: vp,
                });
            }
            assert!(next.next().is_none(), "pieces are in sequence order");
            append_many(pool, l, &mut kv_jobs);
            *appends = recycle(kv_jobs);
            // Each piece's queries over its own cache, all in one parallel region.
            let mut jobs = recycle(std::mem::take(attn));
            let (mut q_rest, mut out_rest) = (&q[..], &mut att[..]);
            for p in pieces.iter() {
                let (qp, qr) = q_rest.split_at(p.len * qw);
                let (op, or) = std::mem::take(&mut out_rest).split_at_mut(p.len * qw);
                (q_rest, out_rest) = (qr, or);
                jobs.push(AttnSeq {
                    cache: cache(&feeds[p.seq]),
                    q: qp,
                    n_new: p.len,
                    out: op,
                });
            }
            attend_many(pool, l, heads, &mut jobs);
            *attn = recycle(jobs);
            matmul(pool, att, rows, layer.o.get(), layer.o_bias.as_deref(), tmp);
            add_in_place(x, tmp);

            rms_norm(x, &layer.mlp_norm, self.eps, xn, h);
            matmul_many(
                pool,
                xn,
                rows,
                &mut [
                    (layer.gate.get(), None, &mut *gate),
                    (layer.up.get(), None, &mut *up),
                ],
            );
            silu_mul(gate, up);
            matmul(pool, gate, rows, layer.down.get(), None, tmp);
            add_in_place(x, tmp);
        }

        // The final norm and the output layer, for the rows asked for only.
        let head = self.head.as_ref().unwrap_or(&self.embed).get();
        let asked = match positions {
            Positions::All => {
                rms_norm(x, &self.norm, self.eps, xn, h);
                rows
            }
            Positions::Last => {
                let (mut n, mut r) = (0, 0);
                for p in pieces.iter() {
                    r += p.len;
                    if p.from + p.len == feeds[p.seq].ids.len() {
                        let row = &x[(r - 1) * h..r * h];
                        rms_norm(row, &self.norm, self.eps, &mut xn[n * h..(n + 1) * h], h);
                        n += 1;
                    }
                }
                n
            }
        };
        let vocab = c.vocab_size;
        matmul(
            pool,
            &xn[..asked * h],
            asked,
            head,
            None,
            &mut out[..asked * vocab],
        );
        asked
    }
}

impl Decoder for FastModel {
    type Cache = KvCache;

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn context_len(&self) -> usize {
        self.config.context_len
    }

    /// An empty cache: blocks of 64 positions are allocated as it fills.
    fn new_cache(&self) -> KvCache {
        let c = &self.config;
        KvCache::new(c.num_layers, c.num_kv_heads, c.head_dim)
    }

    fn cache_len(&self, cache: &KvCache) -> usize {
        cache.len()
    }

    fn truncate_cache(&self, cache: &mut KvCache, len: usize) {
        cache.truncate(len);
    }

    fn forward(&self, feeds: &mut [Feed<'_, KvCache>], positions: Positions) -> Result<Logits> {
        self.run(feeds, positions)
    }

    /// On the kernels' pool: its threads are idle between forward passes (and spinning, ready),
    /// so sharing the sampling out costs about a microsecond, not a thread start.
    fn run_tasks(&self, n: usize, task: &(dyn Fn(usize) + Sync)) {
        self.pool.run(n, task)
    }
}
