//! The kernels allocate nothing per call once warm (one test in its own binary, so that no
//! other test allocates while it counts).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use jielong_kernels::attention::{AttnSeq, attend_many};
use jielong_kernels::ops::{
    RopeStyle, rms_norm, rope, rope_inv_freq, rope_tables, silu_mul, softmax,
};
use jielong_kernels::quant::{MatRef, WeightType, quantize};
use jielong_kernels::{Isa, KvCache, Pool, attend, matmul_many, matmul_with};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn warm_kernels_do_not_allocate() {
    let pool = Pool::new(2).with_min_parallel_macs(0);
    // Quantized batches over 4 widen weights into a per-thread panel allocated on a thread's
    // first such task; on one thread that happens during the warm-up for sure.
    let pool1 = Pool::new(1);
    let (dim, kv, hidden, batch) = (96, 32, 160, 5);
    let values: Vec<f32> = (0..hidden * dim)
        .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
        .collect();
    let mats: Vec<(WeightType, Vec<u8>)> = WeightType::ALL
        .iter()
        .map(|&ty| (ty, quantize(ty, &values, dim).unwrap()))
        .collect();
    let x: Vec<f32> = (0..batch * dim).map(|i| (i % 13) as f32 / 13.0).collect();
    let mut out = vec![0f32; batch * hidden];
    let mut q = vec![0f32; batch * dim];
    let mut k = vec![0f32; batch * kv];
    let (cos, sin) = rope_tables(&rope_inv_freq(16, 10000.0), 64);
    let positions = [0usize, 1, 2, 3, 4];
    let mut caches: Vec<KvCache> = (0..2).map(|_| KvCache::new(1, 2, 16)).collect();
    for c in &mut caches {
        c.append(0, &vec![0.1; 40 * kv], &vec![0.2; 40 * kv]);
    }
    let mut att = vec![0f32; 2 * dim];

    let mut calls = || {
        for isa in Isa::available() {
            for (ty, bytes) in &mats {
                let w = MatRef::new(*ty, hidden, dim, bytes).unwrap();
                matmul_with(isa, &pool1, &x, batch, w, None, &mut out);
                matmul_with(
                    isa,
                    &pool,
                    &x[..3 * dim],
                    3,
                    w,
                    None,
                    &mut out[..3 * hidden],
                );
            }
        }
        let wq = MatRef::new(mats[0].0, dim, dim, &mats[0].1[..dim * dim * 4]).unwrap();
        let wk = MatRef::new(WeightType::Q8_0, kv, dim, &mats[2].1[..kv * dim / 32 * 34]).unwrap();
        matmul_many(
            &pool,
            &x[..4 * dim],
            4,
            &mut [(wq, None, &mut q[..4 * dim]), (wk, None, &mut k[..4 * kv])],
        );
        let mut xn = x.clone();
        rms_norm(&x, &vec![1.0; dim], 1e-5, &mut xn, dim);
        drop(xn);
        rope(
            &mut q,
            6,
            16,
            &positions,
            &cos,
            &sin,
            RopeStyle::Interleaved,
        );
        silu_mul(&mut out[..dim], &x[..dim]);
        softmax(&mut out, hidden);
        attend(&pool, &caches[0], 0, &q[..dim], 1, 6, &mut att[..dim]);
        let (a0, a1) = att.split_at_mut(dim);
        let mut seqs = [
            AttnSeq {
                cache: &caches[0],
                q: &q[..dim],
                n_new: 1,
                out: a0,
            },
            AttnSeq {
                cache: &caches[1],
                q: &q[dim..2 * dim],
                n_new: 1,
                out: a1,
            },
        ];
        attend_many(&pool, 0, 6, &mut seqs);
    };
    // Warm-up: the f16 table, the panel and the pool's threads are set up once.
    for _ in 0..10 {
        calls();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..5 {
        calls();
    }
    // The only allocations inside `calls` are the test's own: the clone for rms_norm's output
    // and the `vec![1.0; dim]` weight, two per round.
    let kernels = ALLOCATIONS.load(Ordering::Relaxed) - before - 5 * 2;
    assert_eq!(
        kernels, 0,
        "the kernels allocated {kernels} times in 5 rounds"
    );
}
