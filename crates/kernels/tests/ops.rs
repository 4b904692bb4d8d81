//! Row operations on every instruction-set path against plain f64 loops.
#![allow(clippy::needless_range_loop)]

mod common;

use common::Rng;
use jielong_kernels::Isa;
use jielong_kernels::ops::{
    RopeStyle, add_in_place, rms_norm_with, rope, rope_inv_freq, rope_tables, silu_mul_with,
    softmax_with,
};

const WIDTHS: [usize; 8] = [1, 7, 8, 16, 33, 64, 172, 288];

fn rel_err(got: f32, want: f64) -> f64 {
    (got as f64 - want).abs() / want.abs().max(1e-30)
}

#[test]
fn rms_norm_matches_the_formula() {
    let mut rng = Rng::new(21);
    for isa in Isa::available() {
        for cols in WIDTHS {
            for rows in [1, 3] {
                let x = rng.vec(rows * cols, 3.0);
                let w: Vec<f32> = rng.vec(cols, 0.5).iter().map(|v| v + 1.0).collect();
                let eps = 1e-5f32;
                let mut out = vec![0f32; rows * cols];
                rms_norm_with(isa, &x, &w, eps, &mut out, cols);
                for r in 0..rows {
                    let row = &x[r * cols..][..cols];
                    let ms: f64 =
                        row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / cols as f64;
                    // burn's formula: x / sqrt(mean(x²) + eps) * w.
                    let denom = (ms + eps as f64).sqrt();
                    for i in 0..cols {
                        let want = row[i] as f64 / denom * w[i] as f64;
                        // f32 accumulation of squares plus three roundings: 1e-6 relative.
                        assert!(
                            rel_err(out[r * cols + i], want) < 1e-6,
                            "{isa:?} cols {cols}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn silu_mul_matches_the_formula() {
    let mut rng = Rng::new(22);
    for isa in Isa::available() {
        for n in WIDTHS {
            let g = rng.vec(n, 12.0);
            let u = rng.vec(n, 2.0);
            let mut out = g.clone();
            silu_mul_with(isa, &mut out, &u);
            for i in 0..n {
                let x = g[i] as f64;
                let want = x / (1.0 + (-x).exp()) * u[i] as f64;
                // exp to ~2 ulp, a division and a product: 1e-6 relative.
                assert!(
                    rel_err(out[i], want) < 1e-6,
                    "{isa:?} silu({x}) * {}: {} vs {want}",
                    u[i],
                    out[i]
                );
            }
        }
    }
    // Saturation: large negative gates give (nearly) zero, not NaN.
    let mut g = [-200.0f32, 200.0];
    silu_mul_with(Isa::Scalar, &mut g, &[1.0, 1.0]);
    assert!(g[0].abs() < 1e-30 && g[1] == 200.0);
}

#[test]
fn softmax_matches_the_formula() {
    let mut rng = Rng::new(23);
    for isa in Isa::available() {
        for cols in WIDTHS {
            let x = rng.vec(2 * cols, 20.0);
            let mut out = x.clone();
            softmax_with(isa, &mut out, cols);
            for r in 0..2 {
                let row = &x[r * cols..][..cols];
                let max = row.iter().fold(f64::MIN, |m, v| m.max(*v as f64));
                let z: f64 = row.iter().map(|v| (*v as f64 - max).exp()).sum();
                for i in 0..cols {
                    let want = (row[i] as f64 - max).exp() / z;
                    assert!(
                        (out[r * cols + i] as f64 - want).abs() < 1e-6 * want.max(1e-6),
                        "{isa:?} cols {cols}"
                    );
                }
            }
        }
    }
    // A masked entry (-inf) gets probability 0.
    let mut x = [0.0f32, f32::NEG_INFINITY, 0.0];
    softmax_with(Isa::best(), &mut x, 3);
    assert_eq!(x, [0.5, 0.0, 0.5]);
}

#[test]
fn all_paths_give_the_same_bits() {
    let mut rng = Rng::new(24);
    let x = rng.vec(3 * 172, 4.0);
    let w = rng.vec(172, 1.0);
    let u = rng.vec(3 * 172, 1.0);
    let results: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = Isa::available()
        .map(|isa| {
            let mut n = vec![0f32; x.len()];
            rms_norm_with(isa, &x, &w, 1e-6, &mut n, 172);
            let mut s = x.clone();
            silu_mul_with(isa, &mut s, &u);
            let mut m = x.clone();
            softmax_with(isa, &mut m, 172);
            (n, s, m)
        })
        .collect();
    let bits = |v: &Vec<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    for r in &results[1..] {
        assert_eq!(bits(&r.0), bits(&results[0].0));
        assert_eq!(bits(&r.1), bits(&results[0].1));
        assert_eq!(bits(&r.2), bits(&results[0].2));
    }
}

/// Rotary embedding by the definition: rotate each pair by angle pos * theta^(-2j/hd).
fn rope_ref(
    x: &[f32],
    heads: usize,
    hd: usize,
    positions: &[usize],
    theta: f64,
    style: RopeStyle,
) -> Vec<f64> {
    let mut out: Vec<f64> = x.iter().map(|v| *v as f64).collect();
    for (r, &pos) in positions.iter().enumerate() {
        for h in 0..heads {
            let base = r * heads * hd + h * hd;
            for j in 0..hd / 2 {
                let angle = pos as f64 * theta.powf(-2.0 * j as f64 / hd as f64);
                let (i0, i1) = match style {
                    RopeStyle::Half => (base + j, base + j + hd / 2),
                    RopeStyle::Interleaved => (base + 2 * j, base + 2 * j + 1),
                };
                let (a, b) = (x[i0] as f64, x[i1] as f64);
                out[i0] = a * angle.cos() - b * angle.sin();
                out[i1] = b * angle.cos() + a * angle.sin();
            }
        }
    }
    out
}

#[test]
fn rope_rotates_the_right_pairs() {
    let mut rng = Rng::new(25);
    for style in [RopeStyle::Half, RopeStyle::Interleaved] {
        for (heads, hd) in [(1, 2), (8, 8), (3, 64)] {
            let theta = 10000.0;
            let (cos, sin) = rope_tables(&rope_inv_freq(hd, theta), 600);
            let positions = [0usize, 1, 17, 599];
            let x = rng.vec(positions.len() * heads * hd, 1.0);
            let mut y = x.clone();
            rope(&mut y, heads, hd, &positions, &cos, &sin, style);
            let want = rope_ref(&x, heads, hd, &positions, theta, style);
            for (g, w) in y.iter().zip(&want) {
                assert!(
                    (*g as f64 - w).abs() < 1e-6,
                    "{style:?} {heads}x{hd}: {g} vs {w}"
                );
            }
            // Position 0 is the identity.
            assert_eq!(y[..heads * hd], x[..heads * hd]);
        }
    }
    // The two styles differ (so a test using the wrong one would fail).
    let (cos, sin) = rope_tables(&rope_inv_freq(4, 10000.0), 4);
    let mut a = vec![1.0, 2.0, 3.0, 4.0];
    let mut b = a.clone();
    rope(&mut a, 1, 4, &[3], &cos, &sin, RopeStyle::Half);
    rope(&mut b, 1, 4, &[3], &cos, &sin, RopeStyle::Interleaved);
    assert_ne!(a, b);
}

#[test]
#[should_panic(expected = "beyond the tables")]
fn rope_position_past_the_tables_panics() {
    let (cos, sin) = rope_tables(&rope_inv_freq(4, 10000.0), 4);
    rope(&mut [0.0; 4], 1, 4, &[4], &cos, &sin, RopeStyle::Half);
}

#[test]
fn add_in_place_adds() {
    let mut a = vec![1.0, 2.0, 3.0];
    add_in_place(&mut a, &[0.5, -2.0, 1.0]);
    assert_eq!(a, vec![1.5, 0.0, 4.0]);
}
