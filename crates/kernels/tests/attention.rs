//! The KV cache and attention over it against a naive softmax(QKᵀ/√d)V.
#![allow(clippy::needless_range_loop)]

mod common;

use common::Rng;
use jielong_kernels::attention::{AttnSeq, attend_many_with, attend_with};
use jielong_kernels::kv::BLOCK;
use jielong_kernels::{Isa, KvAppend, KvCache, Pool, append_many};

/// Keys and values as appended, kept by the test: `[layer][pos][kv_heads * hd]`.
struct Mirror {
    k: Vec<Vec<Vec<f32>>>,
    v: Vec<Vec<Vec<f32>>>,
}

fn append(cache: &mut KvCache, mirror: &mut Mirror, rng: &mut Rng, layer: usize, n: usize) {
    let width = cache.kv_heads() * cache.head_dim();
    let k = rng.vec(n * width, 1.0);
    let v = rng.vec(n * width, 1.0);
    cache.append(layer, &k, &v);
    for t in 0..n {
        mirror.k[layer].push(k[t * width..][..width].to_vec());
        mirror.v[layer].push(v[t * width..][..width].to_vec());
    }
}

/// Naive attention in f64 of the last `n_new` positions of `layer`.
fn naive(
    m: &Mirror,
    layer: usize,
    kv_heads: usize,
    hd: usize,
    heads: usize,
    q: &[f32],
    n_new: usize,
) -> Vec<f64> {
    let len = m.k[layer].len();
    let group = heads / kv_heads;
    let mut out = vec![0f64; n_new * heads * hd];
    for t in 0..n_new {
        let pos = len - n_new + t;
        for h in 0..heads {
            let g = h / group;
            let qh = &q[(t * heads + h) * hd..][..hd];
            let scores: Vec<f64> = (0..=pos)
                .map(|j| {
                    let k = &m.k[layer][j][g * hd..][..hd];
                    qh.iter()
                        .zip(k)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = scores.iter().map(|s| (s - max).exp()).sum();
            for (j, s) in scores.iter().enumerate() {
                let p = (s - max).exp() / z;
                for d in 0..hd {
                    out[(t * heads + h) * hd + d] += p * m.v[layer][j][g * hd + d] as f64;
                }
            }
        }
    }
    out
}

fn new_cache(layers: usize, kv_heads: usize, hd: usize) -> (KvCache, Mirror) {
    let mirror = Mirror {
        k: vec![Vec::new(); layers],
        v: vec![Vec::new(); layers],
    };
    (KvCache::new(layers, kv_heads, hd), mirror)
}

#[test]
fn cache_grows_in_blocks_and_keeps_earlier_positions() {
    let mut rng = Rng::new(31);
    let (mut cache, mut m) = new_cache(3, 2, 12);
    assert_eq!(
        (cache.len(), cache.capacity(), cache.memory_bytes()),
        (0, 0, 0)
    );
    let block_bytes = 2 * 2 * 12 * BLOCK * 4;
    // Appends of awkward sizes crossing block boundaries.
    for n in [1usize, 5, 58, 1, 64, 20, 3] {
        for layer in 0..3 {
            append(&mut cache, &mut m, &mut rng, layer, n);
        }
        // Memory follows the length in whole blocks (nothing sized for a whole context).
        assert_eq!(cache.capacity(), cache.len().div_ceil(BLOCK) * BLOCK);
        assert_eq!(
            cache.memory_bytes(),
            3 * cache.len().div_ceil(BLOCK) * block_bytes
        );
    }
    assert_eq!(cache.len(), 152);
    let mut buf = vec![0f32; 12];
    for layer in 0..3 {
        for pos in 0..152 {
            for g in 0..2 {
                cache.key(layer, g, pos, &mut buf);
                assert_eq!(
                    buf,
                    m.k[layer][pos][g * 12..][..12],
                    "key layer {layer} pos {pos} head {g}"
                );
                cache.value(layer, g, pos, &mut buf);
                assert_eq!(
                    buf,
                    m.v[layer][pos][g * 12..][..12],
                    "value layer {layer} pos {pos} head {g}"
                );
            }
        }
    }
}

#[test]
fn append_many_gives_each_cache_its_own_positions_on_any_thread_count() {
    let (layers, kvh, hd) = (2, 3, 8);
    let width = kvh * hd;
    for threads in 1..=3 {
        let mut rng = Rng::new(40 + threads as u64);
        let pool = Pool::new(threads);
        // Five sequences of different lengths, appended to together in rounds of ragged sizes
        // (some crossing a block boundary, one sequence sitting a round out).
        let mut caches: Vec<(KvCache, Mirror)> =
            (0..5).map(|_| new_cache(layers, kvh, hd)).collect();
        for round in [[1usize, 0, 7, 63, 2], [1, 3, 60, 1, 64], [65, 1, 1, 0, 1]] {
            for layer in 0..layers {
                let kv: Vec<(Vec<f32>, Vec<f32>)> = round
                    .iter()
                    .map(|&n| (rng.vec(n * width, 1.0), rng.vec(n * width, 1.0)))
                    .collect();
                let mut jobs: Vec<KvAppend<'_>> = caches
                    .iter_mut()
                    .zip(&kv)
                    .filter(|(_, (k, _))| !k.is_empty())
                    .map(|((cache, _), (k, v))| KvAppend { cache, k, v })
                    .collect();
                append_many(&pool, layer, &mut jobs);
                for ((_, m), (k, v)) in caches.iter_mut().zip(&kv) {
                    for t in 0..k.len() / width {
                        m.k[layer].push(k[t * width..][..width].to_vec());
                        m.v[layer].push(v[t * width..][..width].to_vec());
                    }
                }
            }
        }
        let mut buf = vec![0f32; hd];
        for (s, (cache, m)) in caches.iter().enumerate() {
            assert_eq!(cache.len(), m.k[0].len(), "sequence {s}, {threads} threads");
            for layer in 0..layers {
                for pos in 0..cache.len() {
                    for g in 0..kvh {
                        cache.key(layer, g, pos, &mut buf);
                        assert_eq!(
                            buf,
                            m.k[layer][pos][g * hd..][..hd],
                            "key {s}/{layer}/{pos}"
                        );
                        cache.value(layer, g, pos, &mut buf);
                        assert_eq!(
                            buf,
                            m.v[layer][pos][g * hd..][..hd],
                            "value {s}/{layer}/{pos}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn truncate_rewinds_and_keeps_blocks() {
    let mut rng = Rng::new(32);
    let (mut cache, mut m) = new_cache(2, 1, 8);
    for layer in 0..2 {
        append(&mut cache, &mut m, &mut rng, layer, 150);
    }
    let bytes = cache.memory_bytes();
    cache.truncate(70);
    assert_eq!(cache.len(), 70);
    assert_eq!(cache.memory_bytes(), bytes, "truncate keeps the blocks");
    for layer in 0..2 {
        m.k[layer].truncate(70);
        m.v[layer].truncate(70);
        append(&mut cache, &mut m, &mut rng, layer, 10);
    }
    let mut buf = vec![0f32; 8];
    for pos in 0..80 {
        cache.key(1, 0, pos, &mut buf);
        assert_eq!(buf, m.k[1][pos]);
        cache.value(1, 0, pos, &mut buf);
        assert_eq!(buf, m.v[1][pos]);
    }
    cache.shrink_to_fit();
    assert_eq!(cache.capacity(), 128);
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn forgotten_positions_do_not_leak_into_attention() {
    // Attention reads whole chunks of 16 positions, weighting those past the length by 0: after a
    // rewind over non-finite values, 0 * NaN must not reach the output.
    let (heads, kvh, hd) = (2, 1, 8);
    let mut cache = KvCache::new(1, kvh, hd);
    cache.append(0, &[0.5; 8 * 3], &[0.25; 8 * 3]);
    cache.append(0, &[f32::NAN; 8 * 5], &[f32::INFINITY; 8 * 5]);
    cache.truncate(3);
    cache.append(0, &[0.5; 8], &[0.25; 8]);
    let q = vec![1.0f32; heads * hd];
    for isa in Isa::available() {
        let mut out = vec![0f32; heads * hd];
        attend_with(isa, &Pool::new(1), &cache, 0, &q, 1, heads, &mut out);
        assert!(
            out.iter().all(|v| (v - 0.25).abs() < 1e-6),
            "{isa:?}: {out:?}"
        );
    }
}

#[test]
fn attention_matches_naive_softmax() {
    let mut rng = Rng::new(33);
    let pools = [
        Pool::new(1),
        Pool::new(2).with_min_parallel_macs(0),
        Pool::new(3),
    ];
    // (heads, kv heads, head_dim): MHA, GQA of the 260K and SmolLM2 shapes, sizes with a tail
    // of fewer than 16 lanes, one odd.
    for (heads, kvh, hd) in [
        (2, 2, 8),
        (8, 4, 8),
        (9, 3, 64),
        (4, 1, 12),
        (2, 1, 130),
        (3, 1, 13),
    ] {
        for isa in Isa::available() {
            let (mut cache, mut m) = new_cache(2, kvh, hd);
            // A prompt crossing a block boundary, then single tokens, then a chunk.
            for (step, n_new) in [70usize, 1, 1, 60, 1].into_iter().enumerate() {
                for layer in 0..2 {
                    append(&mut cache, &mut m, &mut rng, layer, n_new);
                }
                let q = rng.vec(n_new * heads * hd, 2.0);
                let want = naive(&m, 1, kvh, hd, heads, &q, n_new);
                let vmax = 1.0; // values are uniform in [-1, 1)
                let pool = &pools[step % 3];
                let mut out = vec![f32::NAN; q.len()];
                attend_with(isa, pool, &cache, 1, &q, n_new, heads, &mut out);
                for (i, (g, w)) in out.iter().zip(&want).enumerate() {
                    // Outputs are convex combinations of values: an absolute tolerance of 1e-5
                    // of the largest value covers the f32 scores, exp and sums.
                    assert!(
                        (*g as f64 - w).abs() < 1e-5 * vmax,
                        "{isa:?} heads {heads}/{kvh} hd {hd} step {step} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }
}

#[test]
fn prefill_and_decode_give_the_same_bits_on_every_path_and_thread_count() {
    let mut rng = Rng::new(34);
    // With one KV head, several threads split the four heads one by one, one thread takes them
    // together.
    for (heads, kvh, hd) in [(8, 4, 8), (4, 1, 64)] {
        same_bits_for_every_split(&mut rng, heads, kvh, hd);
    }
}

fn same_bits_for_every_split(rng: &mut Rng, heads: usize, kvh: usize, hd: usize) {
    let width = kvh * hd;
    let n = 150;
    let k = rng.vec(n * width, 1.0);
    let v = rng.vec(n * width, 1.0);
    let q = rng.vec(n * heads * hd, 2.0);
    let mut reference: Option<Vec<f32>> = None;
    for isa in Isa::available() {
        for threads in 1..=3 {
            let pool = Pool::new(threads).with_min_parallel_macs(0);
            // All 150 rows at once.
            let mut cache = KvCache::new(1, kvh, hd);
            cache.append(0, &k, &v);
            let mut prefill = vec![0f32; q.len()];
            attend_with(isa, &pool, &cache, 0, &q, n, heads, &mut prefill);
            // One row at a time.
            let mut cache = KvCache::new(1, kvh, hd);
            let mut decode = vec![0f32; q.len()];
            for t in 0..n {
                cache.append(0, &k[t * width..][..width], &v[t * width..][..width]);
                let w = heads * hd;
                attend_with(
                    isa,
                    &pool,
                    &cache,
                    0,
                    &q[t * w..][..w],
                    1,
                    heads,
                    &mut decode[t * w..][..w],
                );
            }
            let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&prefill),
                bits(&decode),
                "{isa:?} {heads}/{kvh}x{hd} threads {threads}"
            );
            match &reference {
                None => reference = Some(prefill),
                Some(r) => assert_eq!(
                    bits(r),
                    bits(&prefill),
                    "{isa:?} {heads}/{kvh}x{hd} threads {threads} vs the first path"
                ),
            }
        }
    }
}

#[test]
fn ragged_batch_matches_each_sequence_alone() {
    let mut rng = Rng::new(35);
    let (heads, kvh, hd) = (9, 3, 64);
    let pool = Pool::new(2).with_min_parallel_macs(0);
    let mut caches = Vec::new();
    let mut qs = Vec::new();
    // Sequences of different lengths with different numbers of new rows.
    for (len, n_new) in [(5usize, 5usize), (200, 1), (64, 3), (1, 1)] {
        let mut c = KvCache::new(2, kvh, hd);
        for layer in 0..2 {
            c.append(
                layer,
                &rng.vec(len * kvh * hd, 1.0),
                &rng.vec(len * kvh * hd, 1.0),
            );
        }
        caches.push((c, n_new));
        qs.push(rng.vec(n_new * heads * hd, 1.0));
    }
    for isa in Isa::available() {
        let mut outs: Vec<Vec<f32>> = qs.iter().map(|q| vec![0f32; q.len()]).collect();
        {
            let mut seqs: Vec<AttnSeq> = caches
                .iter()
                .zip(&qs)
                .zip(outs.iter_mut())
                .map(|(((c, n_new), q), out)| AttnSeq {
                    cache: c,
                    q,
                    n_new: *n_new,
                    out,
                })
                .collect();
            attend_many_with(isa, &pool, 1, heads, &mut seqs);
        }
        for (((c, n_new), q), out) in caches.iter().zip(&qs).zip(&outs) {
            let mut alone = vec![0f32; q.len()];
            attend_with(isa, &Pool::new(1), c, 1, q, *n_new, heads, &mut alone);
            assert_eq!(&alone, out, "{isa:?}");
        }
    }
}

#[test]
fn a_single_position_returns_its_value() {
    let (heads, kvh, hd) = (4, 2, 8);
    let mut cache = KvCache::new(1, kvh, hd);
    let k: Vec<f32> = (0..kvh * hd).map(|i| i as f32).collect();
    let v: Vec<f32> = (0..kvh * hd).map(|i| -(i as f32)).collect();
    cache.append(0, &k, &v);
    let q = vec![1.0f32; heads * hd];
    let mut out = vec![0f32; heads * hd];
    attend_with(
        Isa::best(),
        &Pool::new(1),
        &cache,
        0,
        &q,
        1,
        heads,
        &mut out,
    );
    for h in 0..heads {
        assert_eq!(
            out[h * hd..][..hd],
            v[(h / 2) * hd..][..hd],
            "head {h} reads KV head {}",
            h / 2
        );
    }
}

#[test]
#[should_panic(expected = "not a multiple")]
fn heads_must_be_a_multiple_of_kv_heads() {
    let mut cache = KvCache::new(1, 3, 8);
    cache.append(0, &[0.0; 24], &[0.0; 24]);
    attend_with(
        Isa::best(),
        &Pool::new(1),
        &cache,
        0,
        &[0.0; 32],
        1,
        4,
        &mut [0.0; 32],
    );
}

#[test]
#[should_panic(expected = "new rows")]
fn more_new_rows_than_cached_positions_panics() {
    let mut cache = KvCache::new(1, 1, 8);
    cache.append(0, &[0.0; 8], &[0.0; 8]);
    attend_with(
        Isa::best(),
        &Pool::new(1),
        &cache,
        0,
        &[0.0; 16],
        2,
        1,
        &mut [0.0; 16],
    );
}
