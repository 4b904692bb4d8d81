//! Row-wise operations of a Llama block: RMSNorm, rotary positions, SwiGLU, softmax and the
//! residual add.
//!
//! All work on row-major `[rows][cols]` batches (one row per new token), allocate nothing and
//! compute each row independently of the others, so a row's bits do not depend on the batch.
//! They are written with 16-lane vectors: reductions use the crate's fixed lane order and
//! reduction tree, and `exp` is the crate's own polynomial, so the AVX-512, AVX2 and portable
//! builds agree bit for bit.

use crate::isa::{Isa, isa_dispatch};
use crate::simd::V16;

/// RMSNorm: `out = x / sqrt(mean(x²) + eps) * weight`, row by row.
///
/// The mean of squares is accumulated in f32 (16 lanes), then each value is multiplied by
/// `1 / sqrt(mean + eps)` and by its weight (Hugging Face's Llama order); this matches
/// `x / sqrt(mean(x²) + eps) * w` computed by burn to about 1e-6 relative.
///
/// # Shapes
/// - `x`, `out`: `[rows][cols]`.
/// - `weight`: `[cols]`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32], cols: usize) {
    rms_norm_with(Isa::best(), x, weight, eps, out, cols)
}

isa_dispatch! {
    /// [`rms_norm`] on a chosen instruction-set path.
    pub fn rms_norm_with(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32], cols: usize) => rms_norm_body
}

/// # Safety
/// The CPU must support `V`'s instructions.
#[inline(always)]
unsafe fn rms_norm_body<V: V16>(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32], cols: usize) {
    assert!(
        cols > 0 && x.len().is_multiple_of(cols),
        "rms_norm: {} values are not rows of {cols}",
        x.len()
    );
    assert_eq!(weight.len(), cols, "rms_norm: weight length");
    assert_eq!(out.len(), x.len(), "rms_norm: output length");
    let full = cols / 16 * 16;
    for (xr, or) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        // SAFETY: every access is inside a row of `cols` values (checked above).
        unsafe {
            let (xp, wp, op) = (xr.as_ptr(), weight.as_ptr(), or.as_mut_ptr());
            let mut acc = V::zero();
            for i in (0..full).step_by(16) {
                let v = V::load(xp.add(i));
                acc = v.fma(v, acc);
            }
            if full < cols {
                let v = V::load_partial(xp.add(full), cols - full);
                acc = v.fma(v, acc);
            }
            let inv = V::splat(1.0 / (acc.hsum() / cols as f32 + eps).sqrt());
            for i in (0..full).step_by(16) {
                V::load(xp.add(i))
                    .mul(inv)
                    .mul(V::load(wp.add(i)))
                    .store(op.add(i));
            }
            if full < cols {
                let n = cols - full;
                let v = V::load_partial(xp.add(full), n)
                    .mul(inv)
                    .mul(V::load_partial(wp.add(full), n));
                v.store_partial(op.add(full), n);
            }
        }
    }
}

/// Which coordinates a rotary embedding rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Hugging Face "rotate half": pairs `(j, j + head_dim / 2)`.
    Half,
    /// GGUF / llama.cpp (and Meta's original) layout: pairs `(2j, 2j + 1)`.
    Interleaved,
}

/// The rotary frequencies of Llama: `theta^(-2j / head_dim)` for `j < head_dim / 2`.
/// (Scaled variants such as Llama 3's are computed by the caller and passed to
/// [`rope_tables`].)
pub fn rope_inv_freq(head_dim: usize, theta: f64) -> Vec<f64> {
    (0..head_dim / 2)
        .map(|j| theta.powf(-((2 * j) as f64) / head_dim as f64))
        .collect()
}

/// Cosine and sine tables `[positions][inv_freq.len()]`: angle = `position * inv_freq[j]`,
/// computed in f64 and rounded once.
pub fn rope_tables(inv_freq: &[f64], positions: usize) -> (Vec<f32>, Vec<f32>) {
    let mut cos = Vec::with_capacity(positions * inv_freq.len());
    let mut sin = Vec::with_capacity(positions * inv_freq.len());
    for p in 0..positions {
        for f in inv_freq {
            let a = p as f64 * f;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}

/// Rotary position embedding in place: each pair `(a, b)` of each head of row `r` becomes
/// `(a cos - b sin, b cos + a sin)` at angle index `j` of position `positions[r]`.
///
/// # Shapes
/// - `x`: `[rows][heads * head_dim]` (queries or keys of the new tokens).
/// - `positions`: `[rows]`, each below the tables' number of positions.
/// - `cos`, `sin`: `[positions][head_dim / 2]` ([`rope_tables`]).
pub fn rope(
    x: &mut [f32],
    heads: usize,
    head_dim: usize,
    positions: &[usize],
    cos: &[f32],
    sin: &[f32],
    style: RopeStyle,
) {
    let half = head_dim / 2;
    let width = heads * head_dim;
    assert!(
        head_dim.is_multiple_of(2),
        "rope: head_dim {head_dim} is odd"
    );
    assert_eq!(
        x.len(),
        positions.len() * width,
        "rope: x holds {} values, not {} rows",
        x.len(),
        positions.len()
    );
    assert_eq!(
        cos.len(),
        sin.len(),
        "rope: cos and sin tables differ in length"
    );
    for (row, &pos) in x.chunks_exact_mut(width).zip(positions) {
        assert!(
            (pos + 1) * half <= cos.len(),
            "rope: position {pos} is beyond the tables"
        );
        let (c, s) = (&cos[pos * half..][..half], &sin[pos * half..][..half]);
        for head in row.chunks_exact_mut(head_dim) {
            match style {
                RopeStyle::Half => {
                    let (lo, hi) = head.split_at_mut(half);
                    for j in 0..half {
                        let (a, b) = (lo[j], hi[j]);
                        lo[j] = a * c[j] - b * s[j];
                        hi[j] = b * c[j] + a * s[j];
                    }
                }
                RopeStyle::Interleaved => {
                    for (j, pair) in head.chunks_exact_mut(2).enumerate() {
                        let (a, b) = (pair[0], pair[1]);
                        pair[0] = a * c[j] - b * s[j];
                        pair[1] = b * c[j] + a * s[j];
                    }
                }
            }
        }
    }
}

/// SwiGLU's gate in place: `gate = silu(gate) * up = gate / (1 + e^-gate) * up`.
///
/// # Shapes
/// `gate` and `up`: the same length (`[rows][hidden]`, any row structure).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    silu_mul_with(Isa::best(), gate, up)
}

isa_dispatch! {
    /// [`silu_mul`] on a chosen instruction-set path.
    pub fn silu_mul_with(gate: &mut [f32], up: &[f32]) => silu_mul_body
}

/// # Safety
/// The CPU must support `V`'s instructions.
#[inline(always)]
unsafe fn silu_mul_body<V: V16>(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "silu_mul: gate and up lengths differ");
    let n = gate.len();
    let full = n / 16 * 16;
    // SAFETY: every access is inside the two slices of `n` values.
    unsafe {
        let (gp, up) = (gate.as_mut_ptr(), up.as_ptr());
        let (one, minus) = (V::splat(1.0), V::splat(-1.0));
        let f = |g: V, u: V| g.div(one.add(g.mul(minus).exp())).mul(u);
        for i in (0..full).step_by(16) {
            f(V::load(gp.add(i)), V::load(up.add(i))).store(gp.add(i));
        }
        if full < n {
            let m = n - full;
            f(
                V::load_partial(gp.add(full), m),
                V::load_partial(up.add(full), m),
            )
            .store_partial(gp.add(full), m);
        }
    }
}

/// Softmax of each row in place: `x = e^(x - max) / Σ e^(x - max)`. Rows of only `-inf` become
/// NaN (there is no distribution to return).
///
/// # Shapes
/// `x`: `[rows][cols]`.
pub fn softmax(x: &mut [f32], cols: usize) {
    softmax_with(Isa::best(), x, cols)
}

isa_dispatch! {
    /// [`softmax`] on a chosen instruction-set path.
    pub fn softmax_with(x: &mut [f32], cols: usize) => softmax_body
}

/// # Safety
/// The CPU must support `V`'s instructions.
#[inline(always)]
unsafe fn softmax_body<V: V16>(x: &mut [f32], cols: usize) {
    assert!(
        cols > 0 && x.len().is_multiple_of(cols),
        "softmax: {} values are not rows of {cols}",
        x.len()
    );
    let full = cols / 16 * 16;
    let rest = cols - full;
    for row in x.chunks_exact_mut(cols) {
        // SAFETY: every access is inside the row.
        unsafe {
            let p = row.as_mut_ptr();
            let mut m = V::splat(f32::NEG_INFINITY);
            for i in (0..full).step_by(16) {
                m = V::load(p.add(i)).max(m);
            }
            if rest > 0 {
                m = V::load_partial(p.add(full), rest)
                    .keep_first(rest, f32::NEG_INFINITY)
                    .max(m);
            }
            let max = V::splat(m.hmax());
            let mut sum = V::zero();
            for i in (0..full).step_by(16) {
                let e = V::load(p.add(i)).sub(max).exp();
                e.store(p.add(i));
                sum = sum.add(e);
            }
            if rest > 0 {
                let e = V::load_partial(p.add(full), rest)
                    .sub(max)
                    .exp()
                    .keep_first(rest, 0.0);
                e.store_partial(p.add(full), rest);
                sum = sum.add(e);
            }
            let inv = V::splat(1.0 / sum.hsum());
            for i in (0..full).step_by(16) {
                V::load(p.add(i)).mul(inv).store(p.add(i));
            }
            if rest > 0 {
                V::load_partial(p.add(full), rest)
                    .mul(inv)
                    .store_partial(p.add(full), rest);
            }
        }
    }
}

/// The residual add: `acc += x`.
///
/// # Shapes
/// `acc` and `x`: the same length.
pub fn add_in_place(acc: &mut [f32], x: &[f32]) {
    assert_eq!(acc.len(), x.len(), "add_in_place: lengths differ");
    for (a, b) in acc.iter_mut().zip(x) {
        *a += b;
    }
}
