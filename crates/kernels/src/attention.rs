//! Causal grouped-query attention of new tokens over a sequence's [`KvCache`].
//!
//! For each new query row and head: scores `q·k / sqrt(head_dim)` over the cached positions
//! up to its own, a numerically stable softmax and the weighted sum of values. The softmax is
//! computed online, block by block (the running maximum and sum are rescaled when a block
//! raises the maximum, as in FlashAttention), so no score buffer proportional to the context
//! is needed. Blocks sit at fixed positions of the cache, so a query's result does not depend
//! on how many other queries are computed with it (prefill and one-token decoding of the same
//! position give the same bits).
//!
//! Heads that share a KV head (grouped-query attention) are processed together, block by
//! block, so that each key vector and value row is read once for the group, and each head's
//! output stays in registers (values are stored row by row, see [`crate::kv`]). Work is split
//! across threads by (sequence, group of heads, query), by single heads when there would be
//! fewer groups than threads; each head's arithmetic is the same either way, so results do
//! not depend on the choice.
//!
//! Keys and values are f32 in the cache; no scratch memory is needed (the per-query state is
//! a few KiB on the stack).

use crate::isa::Isa;
use crate::kv::{BLOCK, KvCache};
use crate::lanes;
use crate::pool::Pool;
use crate::simd::{self, V16};

/// The largest head size supported (the per-query accumulators live on the stack).
pub const MAX_HEAD_DIM: usize = 256;

/// Most heads sharing a KV head that one unit of work processes together.
const GROUP_SPAN: usize = 4;

/// Sequences handled per parallel region by [`attend_many`].
const MAX_SEQS: usize = 64;

/// One sequence of a ragged batch for [`attend_many`].
///
/// # Shapes
/// - `q`, `out`: `[n_new][num_heads * head_dim]`: the queries of the sequence's new tokens
///   (already rotated) and their attention outputs.
/// - The cache's layer must already hold the new tokens' keys and values (its last `n_new`
///   positions are the new tokens).
pub struct AttnSeq<'a> {
    pub cache: &'a KvCache,
    pub q: &'a [f32],
    pub n_new: usize,
    pub out: &'a mut [f32],
}

/// Causal attention of the `n_new` newest positions of `cache`'s `layer` over the cache.
///
/// Query row `t` sits at position `len - n_new + t` and attends positions `0..=` that one.
/// Head `h` uses KV head `h / (num_heads / kv_heads)`; scores are scaled by `1/sqrt(head_dim)`.
///
/// # Shapes
/// - `q`, `out`: `[n_new][num_heads * head_dim]`.
///
/// # Panics
/// When shapes disagree, `num_heads` is not a multiple of the cache's KV heads, the layer holds
/// fewer than `n_new` positions, or `head_dim > MAX_HEAD_DIM`.
pub fn attend(
    pool: &Pool,
    cache: &KvCache,
    layer: usize,
    q: &[f32],
    n_new: usize,
    num_heads: usize,
    out: &mut [f32],
) {
    attend_with(Isa::best(), pool, cache, layer, q, n_new, num_heads, out)
}

/// [`attend`] on a chosen instruction-set path.
#[allow(clippy::too_many_arguments)]
pub fn attend_with(
    isa: Isa,
    pool: &Pool,
    cache: &KvCache,
    layer: usize,
    q: &[f32],
    n_new: usize,
    num_heads: usize,
    out: &mut [f32],
) {
    attend_many_with(
        isa,
        pool,
        layer,
        num_heads,
        &mut [AttnSeq {
            cache,
            q,
            n_new,
            out,
        }],
    )
}

/// [`attend`] for every sequence of a ragged batch in one parallel region (each sequence over
/// its own cache).
pub fn attend_many(pool: &Pool, layer: usize, num_heads: usize, seqs: &mut [AttnSeq<'_>]) {
    attend_many_with(Isa::best(), pool, layer, num_heads, seqs)
}

/// [`attend_many`] on a chosen instruction-set path.
pub fn attend_many_with(
    isa: Isa,
    pool: &Pool,
    layer: usize,
    num_heads: usize,
    seqs: &mut [AttnSeq<'_>],
) {
    isa.assert_available();
    for group in seqs.chunks_mut(MAX_SEQS) {
        run_group(isa, pool, layer, num_heads, group);
    }
}

/// A sequence as raw pointers, so that threads can write disjoint output rows.
#[derive(Clone, Copy)]
struct Seq<'a> {
    cache: Option<&'a KvCache>,
    q: *const f32,
    out: *mut f32,
    n_new: usize,
    /// Heads per unit of work (consecutive heads sharing a KV head).
    span: usize,
    /// Index of the sequence's first (unit, query) item.
    first_item: usize,
}

impl Seq<'_> {
    /// Items of this sequence: (unit of `span` heads, query) pairs.
    fn items(&self, heads: usize) -> usize {
        self.cache.map_or(0, |c| {
            self.n_new * c.kv_heads() * (heads / c.kv_heads()).div_ceil(self.span)
        })
    }
}

// SAFETY: the pointers come from slices borrowed for the whole region and each (unit, query)
// item writes only its own outputs.
unsafe impl Send for Seq<'_> {}
unsafe impl Sync for Seq<'_> {}

fn run_group(isa: Isa, pool: &Pool, layer: usize, heads: usize, group: &mut [AttnSeq<'_>]) {
    let empty = Seq {
        span: 1,
        cache: None,
        q: std::ptr::null(),
        out: std::ptr::null_mut(),
        n_new: 0,
        first_item: 0,
    };
    let mut seqs = [empty; MAX_SEQS];
    let mut macs = 0;
    for (s, job) in seqs.iter_mut().zip(group.iter_mut()) {
        let c = job.cache;
        let (hd, kvh) = (c.head_dim(), c.kv_heads());
        assert!(
            layer < c.layers(),
            "attend: layer {layer} of {}",
            c.layers()
        );
        assert!(
            heads > 0 && heads.is_multiple_of(kvh),
            "attend: {heads} heads is not a multiple of {kvh} KV heads"
        );
        assert!(
            hd <= MAX_HEAD_DIM,
            "attend: head_dim {hd} exceeds {MAX_HEAD_DIM}"
        );
        assert_eq!(
            job.q.len(),
            job.n_new * heads * hd,
            "attend: q must be [n_new][heads * head_dim]"
        );
        assert_eq!(
            job.out.len(),
            job.q.len(),
            "attend: out must be [n_new][heads * head_dim]"
        );
        let len = c.layer_len(layer);
        assert!(
            job.n_new <= len,
            "attend: {} new rows but the layer holds {len} positions",
            job.n_new
        );
        *s = Seq {
            cache: Some(c),
            q: job.q.as_ptr(),
            out: job.out.as_mut_ptr(),
            n_new: job.n_new,
            span: 1,
            first_item: 0,
        };
        macs += job.n_new * heads * len * hd * 2;
    }
    let seqs = &mut seqs[..group.len()];
    // Heads sharing a KV head are processed together, block by block, so that each block of
    // keys and values is read from memory once for all of them (up to 4 at a time: their
    // running states stay small). Per-head units instead when there would be fewer units than
    // threads. Either way each head's arithmetic is the same.
    let parallel = pool.tasks_for(macs, usize::MAX) > 1;
    let units = |span: usize| -> usize {
        seqs.iter()
            .map(|s| {
                s.n_new
                    * s.cache
                        .map_or(0, |c| c.kv_heads() * (heads / c.kv_heads()).div_ceil(span))
            })
            .sum()
    };
    let span = if !parallel || units(GROUP_SPAN) >= pool.threads() {
        GROUP_SPAN
    } else {
        1
    };
    let mut items = 0;
    for s in seqs.iter_mut() {
        let c = s.cache.expect("every sequence of the group was filled in");
        s.span = span.min(heads / c.kv_heads());
        s.first_item = items;
        items += s.items(heads);
    }
    let seqs = &seqs[..];
    if items == 0 {
        return;
    }
    // Items are uneven (later queries see more positions): many tasks balance them.
    let tasks = if parallel {
        items.min(8 * pool.threads())
    } else {
        1
    };
    let task = |t: usize| {
        let (lo, hi) = (items * t / tasks, items * (t + 1) / tasks);
        run_items(isa, seqs, layer, heads, lo, hi);
    };
    if tasks == 1 {
        task(0);
    } else {
        pool.run(tasks, &task);
    }
}

/// Items `lo..hi`: item `i` of a sequence is unit `i / n_new` (a run of `span` heads sharing a
/// KV head), query `i % n_new` (a unit's queries together, so that a thread reuses the same
/// keys and values from cache).
fn run_items(isa: Isa, seqs: &[Seq<'_>], layer: usize, heads: usize, lo: usize, hi: usize) {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    unsafe fn avx512(seqs: &[Seq<'_>], layer: usize, heads: usize, lo: usize, hi: usize) {
        unsafe { run_items_body::<simd::Avx512>(seqs, layer, heads, lo, hi) }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(seqs: &[Seq<'_>], layer: usize, heads: usize, lo: usize, hi: usize) {
        unsafe { run_items_body::<simd::Avx2>(seqs, layer, heads, lo, hi) }
    }
    // SAFETY: `attend_many_with` checked that the CPU supports `isa`.
    unsafe {
        match isa {
            Isa::Scalar => run_items_body::<simd::Scalar>(seqs, layer, heads, lo, hi),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2(seqs, layer, heads, lo, hi),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512(seqs, layer, heads, lo, hi),
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("only the portable path exists on this architecture"),
        }
    }
}

/// # Safety
/// The CPU must support `V`'s instructions.
#[inline(always)]
unsafe fn run_items_body<V: V16>(
    seqs: &[Seq<'_>],
    layer: usize,
    heads: usize,
    lo: usize,
    hi: usize,
) {
    for s in seqs {
        let Some(cache) = s.cache else { continue };
        let (a, b) = (lo.max(s.first_item), hi.min(s.first_item + s.items(heads)));
        // Common head sizes get their own copy of the loops, with the size a constant: the
        // arms differ only in the literal, which `items` and `attend_group` (both inlined)
        // turn into constant loop bounds.
        unsafe {
            match cache.head_dim() {
                8 => items::<V>(8, s, cache, layer, heads, a, b),
                16 => items::<V>(16, s, cache, layer, heads, a, b),
                32 => items::<V>(32, s, cache, layer, heads, a, b),
                48 => items::<V>(48, s, cache, layer, heads, a, b),
                64 => items::<V>(64, s, cache, layer, heads, a, b),
                128 => items::<V>(128, s, cache, layer, heads, a, b),
                hd => items::<V>(hd, s, cache, layer, heads, a, b),
            }
        }
    }
}

/// Items `a..b` (global numbering) of one sequence.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn items<V: V16>(
    hd: usize,
    s: &Seq<'_>,
    cache: &KvCache,
    layer: usize,
    heads: usize,
    a: usize,
    b: usize,
) {
    let width = heads * hd;
    let group = heads / cache.kv_heads();
    let units_per_kv = group.div_ceil(s.span);
    for i in a..b {
        let (unit, t) = ((i - s.first_item) / s.n_new, (i - s.first_item) % s.n_new);
        let g = unit / units_per_kv;
        let h0 = g * group + (unit % units_per_kv) * s.span;
        let h1 = (h0 + s.span).min((g + 1) * group);
        let count = cache.layer_len(layer) - s.n_new + t + 1;
        // SAFETY: row t, heads h0..h1 of q and out lie inside the slices checked in
        // `run_group`, and only this item writes those outputs.
        unsafe {
            let q = std::slice::from_raw_parts(s.q.add(t * width + h0 * hd), (h1 - h0) * hd);
            let out =
                std::slice::from_raw_parts_mut(s.out.add(t * width + h0 * hd), (h1 - h0) * hd);
            // The heads' count a constant, so that their accumulators stay in registers.
            match h1 - h0 {
                1 => attend_group::<V, 1>(hd, cache, layer, g, q, count, out),
                2 => attend_group::<V, 2>(hd, cache, layer, g, q, count, out),
                3 => attend_group::<V, 3>(hd, cache, layer, g, q, count, out),
                _ => attend_group::<V, GROUP_SPAN>(hd, cache, layer, g, q, count, out),
            }
        }
    }
}

/// Vectors of 16 lanes per block of positions.
const CHUNKS: usize = BLOCK / 16;

/// Most 16-lane vectors of one head's output.
const MAX_VECS: usize = MAX_HEAD_DIM / 16;

/// `out = softmax(q·K[0..count] / sqrt(hd)) V[0..count]` for the `NH` heads (at most
/// [`GROUP_SPAN`]) of one query sharing KV head `g` (`q`, `out`: `[NH][hd]`), with an online
/// softmax: block by block, the scores of the block, their maximum, the probabilities under the
/// running maximum, and the weighted values added to the heads' outputs (rescaled when the
/// maximum grows).
///
/// Only the chunks of 16 keys that hold cached positions are scored, and only the cached
/// positions' values are added (a decoding block is on average half full). Which positions
/// count follows from a query's position alone, so prefill and decoding give the same bits.
/// Each key vector and value row is read once for all `NH` heads, and each head's sums are
/// split in two chains (even and odd dimensions of a score, even and odd positions of a small
/// output) so that the FMAs do not wait for each other. A head's arithmetic does not depend on
/// `NH`: the heads share loads, not sums.
///
/// # Safety
/// The CPU must support `V`'s instructions.
#[inline(always)]
// The loops index [head][vector] arrays vector-outer as often as head-outer.
#[allow(clippy::needless_range_loop)]
unsafe fn attend_group<V: V16, const NH: usize>(
    hd: usize,
    cache: &KvCache,
    layer: usize,
    g: usize,
    q: &[f32],
    count: usize,
    out: &mut [f32],
) {
    debug_assert!(q.len() == NH * hd && out.len() == NH * hd);
    // Output vectors per head, and the lanes of the last one.
    let vecs = hd.div_ceil(16);
    let tail = hd - (vecs - 1) * 16;
    // Few output chains per head (up to 48 dimensions): a second set for odd positions. By the
    // head size alone, so that a head gives the same bits in any group.
    let split = vecs <= 3;
    unsafe {
        let scale = V::splat(1.0 / (hd as f32).sqrt());
        let load_row = |p: *const f32, v: usize| {
            if v + 1 < vecs || tail == 16 {
                V::load(p.add(v * 16))
            } else {
                V::load_partial(p.add(v * 16), tail)
            }
        };
        let mut acc = [[V::zero(); MAX_VECS]; NH];
        let mut max = [f32::NEG_INFINITY; NH];
        let mut sum = [0f32; NH];
        // The block's probabilities, by head and position.
        let mut p = [[0f32; BLOCK]; NH];
        for b in 0..count.div_ceil(BLOCK) {
            let n = (count - b * BLOCK).min(BLOCK);
            let live = n.div_ceil(16);
            // [hd][BLOCK] keys and [BLOCK][hd] values of this block.
            let kt = cache.keys(layer, b, g).as_ptr();
            let vr = cache.values(layer, b, g).as_ptr();
            let mut s = [[V::splat(f32::NEG_INFINITY); CHUNKS]; NH];
            let mut c = 0;
            while c < live {
                // Several chunks at a time: more independent chains for few heads.
                c += match live - c {
                    4.. if NH <= 2 => scores::<V, NH, 4>(q, hd, kt, c, &mut s),
                    2.. => scores::<V, NH, 2>(q, hd, kt, c, &mut s),
                    _ => scores::<V, NH, 1>(q, hd, kt, c, &mut s),
                };
            }
            for sh in s.iter_mut() {
                for (c, sc) in sh.iter_mut().enumerate().take(live) {
                    *sc = sc.mul(scale).keep_first(n - c * 16, f32::NEG_INFINITY);
                }
            }
            for h in 0..NH {
                let sh = &s[h];
                let block_max = sh[0].max(sh[1]).max(sh[2].max(sh[3])).hmax();
                let new_max = if block_max > max[h] {
                    block_max
                } else {
                    max[h]
                };
                // Rescales what was accumulated under the old maximum (0 for the first block).
                let correction = lanes::exp(max[h] - new_max);
                let m = V::splat(new_max);
                let mut block_sum = V::zero();
                for (c, sc) in sh.iter().enumerate().take(live) {
                    let pc = sc.sub(m).exp();
                    block_sum = block_sum.add(pc);
                    pc.store(p[h].as_mut_ptr().add(c * 16));
                }
                sum[h] = sum[h].mul_add(correction, block_sum.hsum());
                let correction = V::splat(correction);
                for a in acc[h].iter_mut().take(vecs) {
                    *a = a.mul(correction);
                }
                max[h] = new_max;
            }
            let mut odd = [[V::zero(); MAX_VECS]; NH];
            let mut j = 0;
            while j < n {
                let row = vr.add(j * hd);
                for v in 0..vecs {
                    let x = load_row(row, v);
                    for h in 0..NH {
                        acc[h][v] = V::splat(p[h][j]).fma(x, acc[h][v]);
                    }
                }
                if split && j + 1 < n {
                    let row = vr.add((j + 1) * hd);
                    for v in 0..vecs {
                        let x = load_row(row, v);
                        for h in 0..NH {
                            odd[h][v] = V::splat(p[h][j + 1]).fma(x, odd[h][v]);
                        }
                    }
                    j += 1;
                }
                j += 1;
            }
            if split {
                for (a, o) in acc.iter_mut().zip(&odd) {
                    for v in 0..vecs {
                        a[v] = a[v].add(o[v]);
                    }
                }
            }
        }
        for h in 0..NH {
            let inv = V::splat(1.0 / sum[h]);
            for v in 0..vecs {
                let o = acc[h][v].mul(inv);
                let dst = out.as_mut_ptr().add(h * hd + v * 16);
                if v + 1 < vecs || tail == 16 {
                    o.store(dst);
                } else {
                    o.store_partial(dst, tail);
                }
            }
        }
    }
}

/// The scores (before scaling) of chunks `c..c + W` of a block's keys `kt` (`[hd][BLOCK]`) for
/// the `NH` queries `q` (`[NH][hd]`), written to `s[head][chunk]`; returns `W`. Each key vector
/// is loaded once for all heads, and each sum runs as two chains, over even and odd dimensions.
///
/// # Safety
/// The CPU must support `V`'s instructions; `kt` points at a block's `[hd][BLOCK]` keys.
#[inline(always)]
// The loops index [head][chunk] arrays chunk-outer as often as head-outer.
#[allow(clippy::needless_range_loop)]
unsafe fn scores<V: V16, const NH: usize, const W: usize>(
    q: &[f32],
    hd: usize,
    kt: *const f32,
    c: usize,
    s: &mut [[V; CHUNKS]; NH],
) -> usize {
    unsafe {
        let (mut even, mut odd) = ([[V::zero(); W]; NH], [[V::zero(); W]; NH]);
        let key = |d: usize, w: usize| V::load(kt.add(d * BLOCK + (c + w) * 16));
        for d in (0..hd - 1).step_by(2) {
            for w in 0..W {
                let (k0, k1) = (key(d, w), key(d + 1, w));
                for h in 0..NH {
                    even[h][w] = V::splat(q[h * hd + d]).fma(k0, even[h][w]);
                    odd[h][w] = V::splat(q[h * hd + d + 1]).fma(k1, odd[h][w]);
                }
            }
        }
        if hd % 2 == 1 {
            for w in 0..W {
                let k0 = key(hd - 1, w);
                for h in 0..NH {
                    even[h][w] = V::splat(q[h * hd + hd - 1]).fma(k0, even[h][w]);
                }
            }
        }
        for h in 0..NH {
            for w in 0..W {
                s[h][c + w] = even[h][w].add(odd[h][w]);
            }
        }
        W
    }
}
