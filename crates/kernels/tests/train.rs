//! The training kernels: every instruction-set path gives the portable path's bits, on sizes
//! that are not multiples of 16; attention forward and backward against plain f64 loops.
//! (crates/nn/tests/fused.rs checks all of them against burn's composed formulas.)

mod common;

use common::Rng;
use jielong_kernels::Isa;
use jielong_kernels::ops::{self, RopeStyle};
use jielong_kernels::train::*;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Runs `f` on every available path and checks each output against the portable one.
fn same_on_every_path(what: &str, f: impl Fn(Isa) -> Vec<Vec<f32>>) {
    let want: Vec<Vec<u32>> = f(Isa::Scalar).iter().map(|v| bits(v)).collect();
    for isa in Isa::available() {
        let got: Vec<Vec<u32>> = f(isa).iter().map(|v| bits(v)).collect();
        assert_eq!(got, want, "{what} on {}", isa.name());
    }
}

#[test]
fn row_kernels_agree_on_every_path() {
    let mut rng = Rng::new(1);
    for cols in [1, 15, 17, 40, 131] {
        let rows = 5;
        let (x, w, g) = (
            rng.vec(rows * cols, 2.0),
            rng.vec(cols, 1.0),
            rng.vec(rows * cols, 1.0),
        );
        same_on_every_path(&format!("rms_norm {cols}"), |isa| {
            let (mut out, mut inv) = (vec![0f32; rows * cols], vec![0f32; rows]);
            rms_norm_forward_with(isa, &x, &w, 1e-5, &mut out, &mut inv);
            let (mut gx, mut gw) = (vec![0f32; rows * cols], vec![0.5f32; cols]);
            rms_norm_backward_with(isa, &x, &w, &inv, &g, &mut gx, &mut gw);
            vec![out, inv, gx, gw]
        });
        same_on_every_path(&format!("cross_entropy_row {cols}"), |isa| {
            let mut z = x[..cols].to_vec();
            let loss = cross_entropy_row_with(isa, &mut z, cols / 2, Some(0.25));
            vec![z, vec![loss]]
        });
        // Against f64: the loss, and the gradient 0.25 (softmax - onehot).
        let mut z = x[..cols].to_vec();
        let loss = cross_entropy_row(&mut z, cols - 1, Some(0.25));
        let max = x[..cols]
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let sum: f64 = x[..cols].iter().map(|&v| (v as f64 - max).exp()).sum();
        let want = max + sum.ln() - x[cols - 1] as f64;
        assert!((loss as f64 - want).abs() < 1e-5, "loss {loss} vs {want}");
        for (v, (&g, &xv)) in z.iter().zip(&x[..cols]).enumerate() {
            let p = (xv as f64 - max).exp() / sum;
            let want = 0.25 * (p - if v == cols - 1 { 1.0 } else { 0.0 });
            assert!(
                (g as f64 - want).abs() < 1e-6,
                "gradient {v}: {g} vs {want}"
            );
        }
        let u = rng.vec(rows * cols, 3.0);
        same_on_every_path(&format!("silu_mul {cols}"), |isa| {
            let mut out = x.clone();
            ops::silu_mul_with(isa, &mut out, &u);
            let (mut gg, mut gu) = (vec![0f32; rows * cols], vec![0f32; rows * cols]);
            silu_mul_backward_with(isa, &x, &u, &g, &mut gg, &mut gu);
            vec![out, gg, gu]
        });
    }
}

/// Plain f64 attention of one sequence: outputs, and the gradients of `Σ out * grad_out`.
fn attention_f64(s: AttnShape, q: &[f32], k: &[f32], v: &[f32], grad_out: &[f32]) -> [Vec<f64>; 4] {
    let (hd, h, kvh) = (s.head_dim, s.heads, s.kv_heads);
    let scale = 1.0 / (hd as f64).sqrt();
    let qi = |t: usize, head: usize, c: usize| q[(t * h + head) * hd + c] as f64;
    let ki = |j: usize, g: usize, c: usize| k[(j * kvh + g) * hd + c] as f64;
    let vi = |j: usize, g: usize, c: usize| v[(j * kvh + g) * hd + c] as f64;
    let mut out = vec![0f64; q.len()];
    let (mut gq, mut gk, mut gv) = (
        vec![0f64; q.len()],
        vec![0f64; k.len()],
        vec![0f64; k.len()],
    );
    for head in 0..h {
        let g = head / (h / kvh);
        for t in 0..s.queries {
            let seen = s.keys - s.queries + t + 1;
            let score: Vec<f64> = (0..seen)
                .map(|j| (0..hd).map(|c| qi(t, head, c) * ki(j, g, c)).sum::<f64>() * scale)
                .collect();
            let max = score.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = score.iter().map(|x| (x - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            let p: Vec<f64> = e.iter().map(|x| x / sum).collect();
            let row = (t * h + head) * hd;
            for c in 0..hd {
                out[row + c] = (0..seen).map(|j| p[j] * vi(j, g, c)).sum();
            }
            let go = |c: usize| grad_out[row + c] as f64;
            let dp: Vec<f64> = (0..seen)
                .map(|j| (0..hd).map(|c| go(c) * vi(j, g, c)).sum())
                .collect();
            let d: f64 = (0..seen).map(|j| p[j] * dp[j]).sum();
            for j in 0..seen {
                let ds = p[j] * (dp[j] - d) * scale;
                for c in 0..hd {
                    gq[row + c] += ds * ki(j, g, c);
                    gk[(j * kvh + g) * hd + c] += ds * qi(t, head, c);
                    gv[(j * kvh + g) * hd + c] += p[j] * go(c);
                }
            }
        }
    }
    [out, gq, gk, gv]
}

#[test]
fn attention_matches_plain_loops_on_every_path() {
    let mut rng = Rng::new(2);
    for (queries, keys, heads, kv_heads, head_dim) in [
        (1, 1, 1, 1, 2),
        (7, 7, 4, 2, 6),
        (5, 19, 3, 1, 17),
        (33, 33, 2, 2, 40),
    ] {
        let s = AttnShape {
            queries,
            keys,
            heads,
            kv_heads,
            head_dim,
        };
        let q = rng.vec(queries * heads * head_dim, 2.0);
        let (k, v) = (
            rng.vec(keys * kv_heads * head_dim, 2.0),
            rng.vec(keys * kv_heads * head_dim, 1.0),
        );
        let grad_out = rng.vec(q.len(), 1.0);
        let run = |isa: Isa| {
            let (mut out, mut lse) = (vec![0f32; q.len()], vec![0f32; heads * queries]);
            attention_forward_with(isa, s, &q, &k, &v, &mut out, &mut lse);
            let (mut gq, mut gk, mut gv) = (
                vec![0f32; q.len()],
                vec![1f32; k.len()],
                vec![0f32; k.len()],
            );
            attention_backward_with(
                isa,
                s,
                (&q, &k, &v),
                &out,
                &lse,
                &grad_out,
                (&mut gq, &mut gk, &mut gv),
            );
            vec![out, gq, gk, gv]
        };
        same_on_every_path(&format!("attention {s:?}"), run);
        let got = run(Isa::best());
        for (name, (g, w)) in ["out", "grad_q", "grad_k", "grad_v"]
            .iter()
            .zip(got.iter().zip(attention_f64(s, &q, &k, &v, &grad_out)))
        {
            let worst = g
                .iter()
                .zip(&w)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-4, "{name} of {s:?}: worst difference {worst}");
        }
    }
}

#[test]
fn rope_backward_undoes_forward() {
    let mut rng = Rng::new(3);
    let (rows, heads, hd) = (6, 3, 10);
    let x = rng.vec(rows * heads * hd, 1.0);
    let angles: Vec<f32> = rng.vec(rows * hd / 2, 3.0);
    let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
    let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
    // Row t sits at position t; the backward pass is the same rotation by the opposite angles.
    let positions: Vec<usize> = (0..rows).collect();
    let negated: Vec<f32> = sin.iter().map(|s| -s).collect();
    let mut y = x.clone();
    ops::rope(&mut y, heads, hd, &positions, &cos, &sin, RopeStyle::Half);
    let mut back = y.clone();
    ops::rope(
        &mut back,
        heads,
        hd,
        &positions,
        &cos,
        &negated,
        RopeStyle::Half,
    );
    let worst = x
        .iter()
        .zip(&back)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-6, "worst {worst}");
    assert!(
        x.iter().zip(&y).any(|(a, b)| (a - b).abs() > 0.1),
        "rotation did nothing"
    );
    // Row t, head 0, pair 0 by hand.
    let t = 4;
    let (c, s) = (cos[t * hd / 2], sin[t * hd / 2]);
    let (a, b) = (x[t * heads * hd], x[t * heads * hd + hd / 2]);
    assert!((y[t * heads * hd] - (a * c - b * s)).abs() < 1e-6);
    assert!((y[t * heads * hd + hd / 2] - (b * c + a * s)).abs() < 1e-6);
}
