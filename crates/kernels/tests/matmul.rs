//! Matrix products on every instruction-set path against plain loops, and their determinism.
#![allow(clippy::needless_range_loop)]

mod common;

use common::{Rng, matmul_f64};
use jielong_kernels::quant::{MatRef, WeightType, dequantize, quantize};
use jielong_kernels::{Isa, Pool, matmul_many_with, matmul_with};

/// Relative tolerance of an f32 product against f64, per unit of `Σ |x_i w_i| + |bias|`.
/// A 16-lane FMA dot product of n terms rounds about n/16 + 5 times, each by at most 2^-24
/// of a partial sum bounded by Σ|x w|; 1e-5 covers n up to ~2,500 with room to spare.
const F32_TOL: f64 = 1e-5;

/// Column counts for the plain float types: not multiples of 16 on purpose; at 1,190 a
/// batch's blocked products run their reduction in parts.
const FLOAT_COLS: [usize; 8] = [1, 7, 8, 16, 33, 172, 288, 1190];
/// Column counts for the block types (multiples of 32).
const BLOCK_COLS: [usize; 4] = [32, 64, 96, 288];

fn cols_for(ty: WeightType) -> &'static [usize] {
    if ty.is_quantized() {
        &BLOCK_COLS
    } else {
        &FLOAT_COLS
    }
}

/// A random matrix stored as `ty`, plus its de-quantized values (what the product must use).
fn weights(rng: &mut Rng, ty: WeightType, rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
    let values = rng.vec(rows * cols, 1.0);
    let bytes = quantize(ty, &values, cols).unwrap();
    let deq = dequantize(ty, &bytes, cols).unwrap();
    (bytes, deq)
}

/// The canonical arithmetic written independently of the crate: 16 lanes of FMAs (element i in
/// lane i % 16), the tree (l, l+8), (l, l+4), (l, l+2), (0, 1), then + bias.
fn canonical(x: &[f32], w: &[f32], bias: Option<f32>) -> f32 {
    let mut acc = [0f32; 16];
    for (i, (a, b)) in x.iter().zip(w).enumerate() {
        acc[i % 16] = a.mul_add(*b, acc[i % 16]);
    }
    let mut n = 16;
    while n > 1 {
        n /= 2;
        for l in 0..n {
            acc[l] += acc[l + n];
        }
    }
    match bias {
        Some(b) => acc[0] + b,
        None => acc[0],
    }
}

#[test]
fn every_path_matches_f64_and_the_canonical_bits() {
    let mut rng = Rng::new(1);
    // Three threads that split even the smallest product: rows fewer than threads, rows = 1;
    // 101 rows give each task a whole 32-row block and part of the next (the block order of
    // batches of more than one batch tile).
    let pool = Pool::new(3).with_min_parallel_macs(0);
    for isa in Isa::available() {
        for ty in WeightType::ALL {
            for &cols in cols_for(ty) {
                for &rows in &[1usize, 2, 3, 5, 17, 101] {
                    for batch in 1..=17 {
                        let with_bias = rng.below(2) == 0;
                        let (bytes, deq) = weights(&mut rng, ty, rows, cols);
                        let x = rng.vec(batch * cols, 2.0);
                        let bias = rng.vec(rows, 0.5);
                        let bias = with_bias.then_some(&bias[..]);
                        let w = MatRef::new(ty, rows, cols, &bytes).unwrap();
                        let mut out = vec![f32::NAN; batch * rows];
                        matmul_with(isa, &pool, &x, batch, w, bias, &mut out);
                        let (want, mag) = matmul_f64(&x, batch, &deq, rows, bias);
                        for i in 0..batch * rows {
                            let err = (out[i] as f64 - want[i]).abs();
                            assert!(
                                err <= F32_TOL * mag[i] + 1e-30,
                                "{isa:?} {ty} {rows}x{cols} batch {batch}: {} vs {} (|x w| {})",
                                out[i],
                                want[i],
                                mag[i]
                            );
                            let (b, o) = (i / rows, i % rows);
                            let c = canonical(
                                &x[b * cols..][..cols],
                                &deq[o * cols..][..cols],
                                bias.map(|v| v[o]),
                            );
                            assert_eq!(
                                out[i].to_bits(),
                                c.to_bits(),
                                "{isa:?} {ty} {rows}x{cols} batch {batch} [{b},{o}]"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn quantized_product_is_the_f32_product_of_the_dequantized_weights() {
    let mut rng = Rng::new(2);
    let pool = Pool::new(1);
    for isa in Isa::available() {
        for ty in WeightType::ALL {
            let (rows, cols, batch) = (9, 96, 5);
            let (bytes, deq) = weights(&mut rng, ty, rows, cols);
            let x = rng.vec(batch * cols, 1.0);
            let mut q = vec![0f32; batch * rows];
            let mut f = vec![0f32; batch * rows];
            matmul_with(
                isa,
                &pool,
                &x,
                batch,
                MatRef::new(ty, rows, cols, &bytes).unwrap(),
                None,
                &mut q,
            );
            matmul_with(
                isa,
                &pool,
                &x,
                batch,
                MatRef::from_f32(&deq, rows, cols).unwrap(),
                None,
                &mut f,
            );
            assert_eq!(q, f, "{isa:?} {ty}");
        }
    }
}

/// A batch of one reads a matrix of 4 MiB or more row after row and smaller ones side by side
/// (the kernels' "reading order"): both give the canonical bits, as batches of two do.
#[test]
fn large_matrices_read_row_after_row_give_the_canonical_bits() {
    let mut rng = Rng::new(5);
    let pool = Pool::new(2).with_min_parallel_macs(0);
    // 4,099 rows (a tail of 3 below the 4-row tile) of 613 values (a tail below 16): 10 MB of
    // f32 and 5 MB of bf16, both over the 4 MiB line.
    let (rows, cols) = (4099, 613);
    for isa in Isa::available() {
        for ty in [WeightType::F32, WeightType::Bf16] {
            let (bytes, deq) = weights(&mut rng, ty, rows, cols);
            assert!(bytes.len() > 4 << 20);
            let w = MatRef::new(ty, rows, cols, &bytes).unwrap();
            let x = rng.vec(2 * cols, 1.0);
            let bias = rng.vec(rows, 1.0);
            let mut one = vec![0f32; rows];
            matmul_with(isa, &pool, &x[..cols], 1, w, Some(&bias), &mut one);
            let mut two = vec![0f32; 2 * rows];
            matmul_with(isa, &pool, &x, 2, w, Some(&bias), &mut two);
            for o in 0..rows {
                let c = canonical(&x[..cols], &deq[o * cols..][..cols], Some(bias[o]));
                assert_eq!(one[o].to_bits(), c.to_bits(), "{isa:?} {ty} row {o}");
                assert_eq!(
                    two[o].to_bits(),
                    c.to_bits(),
                    "{isa:?} {ty} batch 2 row {o}"
                );
            }
        }
    }
}

#[test]
fn batch_rows_are_bitwise_independent_of_the_batch_and_threads() {
    let mut rng = Rng::new(3);
    // 1, 2 and 3 threads splitting every call, and the default 2-thread pool.
    let mut pools: Vec<Pool> = (1..=3)
        .map(|t| Pool::new(t).with_min_parallel_macs(0))
        .collect();
    pools.push(Pool::new(2));
    for isa in Isa::available() {
        // Rows not a multiple of the tiles; widths with a tail for the float types, one long
        // enough for a batch's blocked products to run their reduction in parts.
        let shapes = WeightType::ALL.into_iter().flat_map(|ty| {
            let widths: &[usize] = if ty.is_quantized() {
                &[544]
            } else {
                &[530, 1190]
            };
            widths.iter().map(move |&cols| (ty, cols))
        });
        for (ty, cols) in shapes {
            let rows = 259;
            let (bytes, _) = weights(&mut rng, ty, rows, cols);
            let w = MatRef::new(ty, rows, cols, &bytes).unwrap();
            let bias = rng.vec(rows, 1.0);
            let x = rng.vec(17 * cols, 1.0);
            // Each row alone, single-threaded.
            let alone: Vec<Vec<f32>> = (0..17)
                .map(|b| {
                    let mut out = vec![0f32; rows];
                    matmul_with(
                        isa,
                        &pools[0],
                        &x[b * cols..][..cols],
                        1,
                        w,
                        Some(&bias),
                        &mut out,
                    );
                    out
                })
                .collect();
            for pool in &pools {
                for batch in 1..=17 {
                    // Rows start at a varying offset, so a row sits in different tile positions.
                    let start = rng.below(18 - batch);
                    let xs = &x[start * cols..(start + batch) * cols];
                    let mut out = vec![0f32; batch * rows];
                    matmul_with(isa, pool, xs, batch, w, Some(&bias), &mut out);
                    for b in 0..batch {
                        assert!(
                            out[b * rows..][..rows]
                                .iter()
                                .zip(&alone[start + b])
                                .all(|(a, c)| a.to_bits() == c.to_bits()),
                            "{isa:?} {ty} {rows}x{cols} threads {} batch {batch} row {b}",
                            pool.threads()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn all_paths_give_the_same_bits() {
    let mut rng = Rng::new(4);
    let pool = Pool::new(2);
    for ty in WeightType::ALL {
        let (rows, cols, batch) = (37, if ty.is_quantized() { 320 } else { 301 }, 6);
        let (bytes, _) = weights(&mut rng, ty, rows, cols);
        let w = MatRef::new(ty, rows, cols, &bytes).unwrap();
        let x = rng.vec(batch * cols, 1.0);
        let mut first: Option<Vec<f32>> = None;
        for isa in Isa::available() {
            let mut out = vec![0f32; batch * rows];
            matmul_with(isa, &pool, &x, batch, w, None, &mut out);
            match &first {
                None => first = Some(out),
                Some(f) => assert!(
                    f.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{isa:?} {ty}"
                ),
            }
        }
    }
}

#[test]
fn many_products_share_one_region_and_match_single_products() {
    let mut rng = Rng::new(5);
    for threads in 1..=3 {
        let pool = Pool::new(threads).with_min_parallel_macs(0);
        for isa in Isa::available() {
            let (cols, batch) = (288, 3);
            let x = rng.vec(batch * cols, 1.0);
            let shapes = [
                (WeightType::Q8_0, 288),
                (WeightType::F32, 96),
                (WeightType::Q4_1, 5),
                (WeightType::Bf16, 1),
            ];
            let mats: Vec<(Vec<u8>, usize, WeightType)> = shapes
                .iter()
                .map(|&(ty, rows)| (weights(&mut rng, ty, rows, cols).0, rows, ty))
                .collect();
            let biases: Vec<Vec<f32>> = mats.iter().map(|m| rng.vec(m.1, 1.0)).collect();
            let mut outs: Vec<Vec<f32>> = mats.iter().map(|m| vec![0f32; batch * m.1]).collect();
            {
                let mut jobs: Vec<_> = mats
                    .iter()
                    .zip(&biases)
                    .zip(outs.iter_mut())
                    .enumerate()
                    .map(|(j, ((m, b), o))| {
                        let bias = (j % 2 == 0).then_some(&b[..]);
                        (MatRef::new(m.2, m.1, cols, &m.0).unwrap(), bias, &mut o[..])
                    })
                    .collect();
                matmul_many_with(isa, &pool, &x, batch, &mut jobs);
            }
            for (j, m) in mats.iter().enumerate() {
                let mut single = vec![0f32; batch * m.1];
                let bias = (j % 2 == 0).then_some(&biases[j][..]);
                matmul_with(
                    isa,
                    &Pool::new(1),
                    &x,
                    batch,
                    MatRef::new(m.2, m.1, cols, &m.0).unwrap(),
                    bias,
                    &mut single,
                );
                assert_eq!(single, outs[j], "{isa:?} job {j} threads {threads}");
            }
        }
    }
}

#[test]
fn unaligned_weight_bytes_work() {
    let mut rng = Rng::new(6);
    let pool = Pool::new(2);
    for ty in WeightType::ALL {
        let (rows, cols, batch) = (21, 64, 2);
        let (bytes, deq) = weights(&mut rng, ty, rows, cols);
        for shift in 1..4 {
            let mut buf = vec![0u8; bytes.len() + shift];
            buf[shift..].copy_from_slice(&bytes);
            let w = MatRef::new(ty, rows, cols, &buf[shift..]).unwrap();
            let x = rng.vec(batch * cols, 1.0);
            for isa in Isa::available() {
                let mut out = vec![0f32; batch * rows];
                matmul_with(isa, &pool, &x, batch, w, None, &mut out);
                let (want, mag) = matmul_f64(&x, batch, &deq, rows, None);
                for i in 0..out.len() {
                    assert!(
                        (out[i] as f64 - want[i]).abs() <= F32_TOL * mag[i],
                        "{isa:?} {ty} shift {shift}"
                    );
                }
            }
        }
    }
}

#[test]
fn empty_shapes() {
    let pool = Pool::new(2);
    // Zero rows: nothing to write. Zero batch: nothing to do.
    let w = MatRef::new(WeightType::F32, 0, 8, &[]).unwrap();
    matmul_with(Isa::best(), &pool, &[1.0; 16], 2, w, None, &mut []);
    let data = vec![0u8; 4 * 8 * 3];
    let w = MatRef::new(WeightType::F32, 3, 8, &data).unwrap();
    matmul_with(Isa::best(), &pool, &[], 0, w, None, &mut []);
}

#[test]
#[should_panic(expected = "output length")]
fn wrong_output_length_panics() {
    let data = vec![0u8; 4 * 8 * 3];
    let w = MatRef::new(WeightType::F32, 3, 8, &data).unwrap();
    let mut out = vec![0f32; 5];
    matmul_with(Isa::best(), &Pool::new(1), &[0.0; 8], 1, w, None, &mut out);
}

#[test]
#[should_panic(expected = "columns")]
fn wrong_input_width_panics() {
    let data = vec![0u8; 4 * 8 * 3];
    let w = MatRef::new(WeightType::F32, 3, 8, &data).unwrap();
    let mut out = vec![0f32; 3];
    matmul_with(Isa::best(), &Pool::new(1), &[0.0; 9], 1, w, None, &mut out);
}
