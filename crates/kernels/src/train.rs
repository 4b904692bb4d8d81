//! Forward and backward passes of the training path's fused operations (RMSNorm, SwiGLU's
//! gate, causal grouped-query attention) on contiguous f32 rows. The forward passes of SwiGLU's
//! gate and of rotary positions, and the backward pass of rotary positions (the rotation by the
//! opposite angles), are the decode path's own [`crate::ops::silu_mul`] and [`crate::ops::rope`].
//!
//! jielong-nn runs them inside burn's autodiff graph (`crates/nn/src/fused.rs`), each in place
//! of the ten to thirty small burn operations (and their allocations) that the same formula
//! takes when composed. Every function works on whole rows (or one whole sequence) of the
//! caller's slices, so the caller splits the work across threads; results do not depend on the
//! split. The formulas are the textbook ones; the backward passes are written out in each doc.

use crate::isa::{Isa, isa_dispatch};
use crate::simd::V16;

/// RMSNorm forward, row by row: `out = x * r * weight` with `r = 1 / sqrt(mean(x²) + eps)`,
/// and `inv_rms[row] = r` (kept for the backward pass).
///
/// # Shapes
/// - `x`, `out`: `[rows][cols]`; `weight`: `[cols]`; `inv_rms`: `[rows]`.
pub fn rms_norm_forward(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32], inv_rms: &mut [f32]) {
    rms_norm_forward_with(Isa::best(), x, weight, eps, out, inv_rms)
}

isa_dispatch! {
    /// [`rms_norm_forward`] on a chosen instruction-set path.
    pub fn rms_norm_forward_with(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32], inv_rms: &mut [f32]) => rms_norm_forward_body
}

/// # Safety
/// The CPU must support `V`'s instructions.
#[inline(always)]
unsafe fn rms_norm_forward_body<V: V16>(
    x: &[f32],
    weight: &[f32],
    eps: f32,
    out: &mut [f32],
    inv_rms: &mut [f32],
) {
    let cols = weight.len();
    assert!(cols > 0 && x.len() == inv_rms.len() * cols && out.len() == x.len());
    for ((xr, or), r) in x
        .chunks_exact(cols)
        .zip(out.chunks_exact_mut(cols))
        .zip(inv_rms.iter_mut())
    {
        // SAFETY: every access is inside a row of `cols` values or the weight.
        unsafe {
            *r = 1.0 / (dot::<V>(xr.as_ptr(), xr.as_ptr(), cols) / cols as f32 + eps).sqrt();
            let rv = V::splat(*r);
            for_lanes(cols, |i, n| {
                let v = load::<V>(xr.as_ptr().add(i), n)
                    .mul(rv)
                    .mul(load::<V>(weight.as_ptr().add(i), n));
                store(v, or.as_mut_ptr().add(i), n);
            });
        }
    }
}

/// RMSNorm backward. With `g = grad * weight` and `r` the row's `inv_rms`:
/// `grad_x = r * g - x * r³ * (g · x) / cols`, and `grad_weight += grad * x * r` summed over the
/// rows (added to what `grad_weight` holds, so a caller can sum chunk by chunk).
///
/// # Shapes
/// - `x`, `grad`, `grad_x`: `[rows][cols]`; `weight`, `grad_weight`: `[cols]`; `inv_rms`: `[rows]`.
pub fn rms_norm_backward(
    x: &[f32],
    weight: &[f32],
    inv_rms: &[f32],
    grad: &[f32],
    grad_x: &mut [f32],
    grad_weight: &mut [f32],
) {
    rms_norm_backward_with(Isa::best(), x, weight, inv_rms, grad, grad_x, grad_weight)
}

isa_dispatch! {
    /// [`rms_norm_backward`] on a chosen instruction-set path.
    pub fn rms_norm_backward_with(x: &[f32], weight: &[f32], inv_rms: &[f32], grad: &[f32], grad_x: &mut [f32], grad_weight: &mut [f32]) => rms_norm_backward_body
}

/// # Safety
/// The CPU must support `V`'s instructions.
#[inline(always)]
unsafe fn rms_norm_backward_body<V: V16>(
    x: &[f32],
    weight: &[f32],
    inv_rms: &[f32],
    grad: &[f32],
    grad_x: &mut [f32],
    grad_weight: &mut [f32],
) {
    let cols = weight.len();
    assert!(cols > 0 && x.len() == inv_rms.len() * cols);
    assert!(grad.len() == x.len() && grad_x.len() == x.len() && grad_weight.len() == cols);
    for (((xr, gr), gxr), &r) in x
        .chunks_exact(cols)
        .zip(grad.chunks_exact(cols))
        .zip(grad_x.chunks_exact_mut(cols))
        .zip(inv_rms)
    {
        // SAFETY: every access is inside a row of `cols` values or the weight.
        unsafe {
            let (xp, gp, wp) = (xr.as_ptr(), gr.as_ptr(), weight.as_ptr());
            let mut acc = V::zero();
            for_lanes(cols, |i, n| {
                let g = load::<V>(gp.add(i), n).mul(load::<V>(wp.add(i), n));
                acc = g.fma(load::<V>(xp.add(i), n), acc);
            });
            let coef = V::splat(r * r * r * acc.hsum() / cols as f32);
            let rv = V::splat(r);
            for_lanes(cols, |i, n| {
                let xv = load::<V>(xp.add(i), n);
                let gv = load::<V>(gp.add(i), n);
                let g = gv.mul(load::<V>(wp.add(i), n));
                store(g.mul(rv).sub(xv.mul(coef)), gxr.as_mut_ptr().add(i), n);
                let gw = grad_weight.as_mut_ptr().add(i);
                store(gv.mul(xv).fma(rv, load::<V>(gw, n)), gw, n);
            });
        }
    }
}

/// SwiGLU's gate backward. With `s = 1 / (1 + e^-gate)`:
/// `grad_up = grad * gate * s`, `grad_gate = grad * up * s * (1 + gate * (1 - s))`.
///
/// # Shapes
/// All five the same length.
pub fn silu_mul_backward(
    gate: &[f32],
    up: &[f32],
    grad: &[f32],
    grad_gate: &mut [f32],
    grad_up: &mut [f32],
) {
    silu_mul_backward_with(Isa::best(), gate, up, grad, grad_gate, grad_up)
}

isa_dispatch! {
    /// [`silu_mul_backward`] on a chosen instruction-set path.
    pub fn silu_mul_backward_with(gate: &[f32], up: &[f32], grad: &[f32], grad_gate: &mut [f32], grad_up: &mut [f32]) => silu_mul_backward_body
}

/// # Safety
/// The CPU must support `V`'s instructions.
#[inline(always)]
unsafe fn silu_mul_backward_body<V: V16>(
    gate: &[f32],
    up: &[f32],
    grad: &[f32],
    grad_gate: &mut [f32],
    grad_up: &mut [f32],
) {
    let len = gate.len();
    assert!(up.len() == len && grad.len() == len && grad_gate.len() == len);
    assert_eq!(grad_up.len(), len);
    // SAFETY: every access is inside the five slices.
    unsafe {
        let (one, minus) = (V::splat(1.0), V::splat(-1.0));
        for_lanes(len, |i, n| {
            let g = load::<V>(gate.as_ptr().add(i), n);
            let u = load::<V>(up.as_ptr().add(i), n);
            let d = load::<V>(grad.as_ptr().add(i), n);
            let s = one.div(one.add(g.mul(minus).exp()));
            store(d.mul(g).mul(s), grad_up.as_mut_ptr().add(i), n);
            let slope = g.mul(one.sub(s)).add(one).mul(s);
            store(d.mul(u).mul(slope), grad_gate.as_mut_ptr().add(i), n);
        });
    }
}

/// Cross-entropy of one row of logits `z` against class `target`: returns `lse - z[target]`,
/// with `lse = ln Σ_v e^z[v]` computed after subtracting the row's maximum. With
/// `grad_scale = Some(s)`, `z` is overwritten by the loss's gradient times `s`:
/// `s (softmax(z) - onehot(target))` (else its values are left exponentiated).
///
/// # Panics
/// When `target` is outside the row.
pub fn cross_entropy_row(z: &mut [f32], target: usize, grad_scale: Option<f32>) -> f32 {
    cross_entropy_row_with(Isa::best(), z, target, grad_scale)
}

isa_dispatch! {
    /// [`cross_entropy_row`] on a chosen instruction-set path.
    pub fn cross_entropy_row_with(z: &mut [f32], target: usize, grad_scale: Option<f32>) -> f32 => cross_entropy_row_body
}

/// # Safety
/// The CPU must support `V`'s instructions.
#[inline(always)]
unsafe fn cross_entropy_row_body<V: V16>(
    z: &mut [f32],
    target: usize,
    grad_scale: Option<f32>,
) -> f32 {
    assert!(
        target < z.len(),
        "cross-entropy: class {target} of {}",
        z.len()
    );
    let picked = z[target];
    // SAFETY: the helpers stay inside `z`.
    unsafe {
        let max = row_max::<V>(z);
        let sum = exp_shifted::<V>(z, max); // z[v] = e^(z[v] - max)
        if let Some(s) = grad_scale {
            let per = V::splat(s / sum);
            let ptr = z.as_mut_ptr();
            for_lanes(z.len(), |i, m| {
                store(load::<V>(ptr.add(i), m).mul(per), ptr.add(i), m);
            });
            z[target] -= s;
        }
        max + sum.ln() - picked
    }
}

/// The sizes of one sequence's causal attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    /// Query rows: the sequence's last `queries` positions.
    pub queries: usize,
    /// Key and value rows (positions `0..keys`); query row `t` sits at `keys - queries + t`
    /// and attends positions up to its own.
    pub keys: usize,
    pub heads: usize,
    /// Head `h` uses KV head `h / (heads / kv_heads)`.
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl AttnShape {
    fn check(&self, q: usize, kv: usize) {
        let s = self;
        assert!(s.head_dim > 0 && s.kv_heads > 0 && s.heads.is_multiple_of(s.kv_heads));
        assert!(s.queries <= s.keys, "attention: more queries than keys");
        assert_eq!(
            q,
            s.queries * s.heads * s.head_dim,
            "attention: query length"
        );
        assert_eq!(
            kv,
            s.keys * s.kv_heads * s.head_dim,
            "attention: key length"
        );
    }
}

/// Causal attention forward of one sequence: scores `q·k / sqrt(head_dim)`, softmax over the
/// positions each query may see, weighted sum of the values; `lse` keeps each softmax's
/// log-normaliser (`max + ln Σ e^(score - max)`) for the backward pass. Queries go in blocks
/// of eight, so that each key's and value's row is read once per block rather than per query.
///
/// # Shapes
/// - `q`, `out`: `[queries][heads * head_dim]`; `k`, `v`: `[keys][kv_heads * head_dim]`;
///   `lse`: `[heads][queries]`.
pub fn attention_forward(
    shape: AttnShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    lse: &mut [f32],
) {
    attention_forward_with(Isa::best(), shape, q, k, v, out, lse)
}

isa_dispatch! {
    /// [`attention_forward`] on a chosen instruction-set path.
    pub fn attention_forward_with(shape: AttnShape, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], lse: &mut [f32]) => attention_forward_body
}

/// # Safety
/// The CPU must support `V`'s instructions.
#[inline(always)]
unsafe fn attention_forward_body<V: V16>(
    shape: AttnShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    lse: &mut [f32],
) {
    shape.check(q.len(), k.len());
    let AttnShape {
        queries,
        keys,
        heads,
        kv_heads,
        head_dim: hd,
    } = shape;
    assert!(v.len() == k.len() && out.len() == q.len() && lse.len() == heads * queries);
    let scale = 1.0 / (hd as f32).sqrt();
    let (mut p, mut kt) = (vec![0f32; QB * keys], vec![0f32; hd * keys]);
    // SAFETY: row t, head h starts at (t * heads + h) * hd (queries, outputs) or
    // (j * kv_heads + g) * hd (keys, values), all inside the slices checked above.
    unsafe {
        for g in 0..kv_heads {
            transpose_head(k, shape, g, &mut kt);
            let vg = v.as_ptr().add(g * hd);
            for h in g * (heads / kv_heads)..(g + 1) * (heads / kv_heads) {
                // Blocks of up to QB queries, each key's row read once for the whole block.
                for t0 in (0..queries).step_by(QB) {
                    let n = (queries - t0).min(QB);
                    let seen_all = keys - queries + t0 + n; // keys seen by the last query
                    let mut qs = [q.as_ptr().add((t0 * heads + h) * hd); QB];
                    for (i, qi) in qs.iter_mut().enumerate().take(n) {
                        *qi = q.as_ptr().add(((t0 + i) * heads + h) * hd);
                    }
                    block_rows_dots::<V>(&qs, &kt, keys, hd, seen_all, &mut p);
                    for i in 0..n {
                        let t = t0 + i;
                        let seen = keys - queries + t + 1;
                        let pi = &mut p[i * keys..][..seen_all];
                        pi[..seen].iter_mut().for_each(|x| *x *= scale);
                        let max = row_max::<V>(&pi[..seen]);
                        let sum = exp_shifted::<V>(&mut pi[..seen], max);
                        let inv = 1.0 / sum;
                        pi[..seen].iter_mut().for_each(|x| *x *= inv);
                        pi[seen..].fill(0.0);
                        lse[h * queries + t] = max + sum.ln();
                    }
                    let ot = out.as_mut_ptr().add((t0 * heads + h) * hd);
                    block_weighted_sums::<V>(
                        &p,
                        keys,
                        n,
                        seen_all,
                        vg,
                        kv_heads * hd,
                        hd,
                        ot,
                        heads * hd,
                    );
                }
            }
        }
    }
}

/// Causal attention backward of one sequence, from the forward's inputs, output and `lse`.
/// With `p = e^(score - lse)` recomputed, `D_t = grad_out_t · out_t` and
/// `ds = p * (grad_out_t · v_j - D_t)`: `grad_q_t = Σ_j ds k_j / sqrt(d)`,
/// `grad_k_j = Σ_t ds q_t / sqrt(d)`, `grad_v_j = Σ_t p grad_out_t` (heads sharing a KV head
/// add into the same rows). The three gradients are overwritten.
///
/// One pass per head, in blocks of eight queries: the block's `p` and `ds` over the keys it
/// sees (`8 x keys` values each), from which `grad_q` (each key's row read once per block) and
/// the block's share of every key's `grad_k` and `grad_v` (the block's eight query and
/// gradient rows held in registers while each key's row is updated). (One query at a time, a
/// 4,096-position head re-read its 1 MiB of keys and values from L3 for every query, and
/// keeping `p` and `ds` for every query and key took two `keys x queries` buffers, 64 MiB each,
/// written one strided value at a time: 2.2x slower at 4,096 positions. A second pass over
/// blocks of 16 keys that recomputed `p` and `ds` for `grad_k` and `grad_v` was 1.6-2.1x
/// slower than this one: `cargo run --release -p jielong-kernels --example bench --
/// train-attention`.)
///
/// # Shapes
/// As [`attention_forward`]; `grad_out`, `grad_q` like `q`; `grad_k`, `grad_v` like `k`.
pub fn attention_backward(
    shape: AttnShape,
    qkv: Qkv<'_>,
    out: &[f32],
    lse: &[f32],
    grad_out: &[f32],
    grads: QkvMut<'_>,
) {
    attention_backward_with(Isa::best(), shape, qkv, out, lse, grad_out, grads)
}

/// Queries, keys and values (or their gradients) of one sequence.
pub type Qkv<'a> = (&'a [f32], &'a [f32], &'a [f32]);
pub type QkvMut<'a> = (&'a mut [f32], &'a mut [f32], &'a mut [f32]);

isa_dispatch! {
    /// [`attention_backward`] on a chosen instruction-set path.
    pub fn attention_backward_with(shape: AttnShape, qkv: Qkv<'_>, out: &[f32], lse: &[f32], grad_out: &[f32], grads: QkvMut<'_>) => attention_backward_body
}

/// # Safety
/// The CPU must support `V`'s instructions.
#[inline(always)]
unsafe fn attention_backward_body<V: V16>(
    shape: AttnShape,
    (q, k, v): Qkv<'_>,
    out: &[f32],
    lse: &[f32],
    grad_out: &[f32],
    (grad_q, grad_k, grad_v): QkvMut<'_>,
) {
    shape.check(q.len(), k.len());
    let AttnShape {
        queries,
        keys,
        heads,
        kv_heads,
        head_dim: hd,
    } = shape;
    assert!(v.len() == k.len() && out.len() == q.len() && grad_out.len() == q.len());
    assert!(lse.len() == heads * queries && grad_q.len() == q.len());
    assert!(grad_k.len() == k.len() && grad_v.len() == k.len());
    grad_q.fill(0.0);
    grad_k.fill(0.0);
    grad_v.fill(0.0);
    let scale = 1.0 / (hd as f32).sqrt();
    let (mut p, mut dp) = (vec![0f32; QB * keys], vec![0f32; QB * keys]);
    let mut d = vec![0f32; queries];
    let (mut kt, mut vt) = (vec![0f32; hd * keys], vec![0f32; hd * keys]);
    let first_key_of = keys - queries; // query t sees keys 0..=first_key_of + t
    // SAFETY: as in the forward pass, every row offset is inside its slice.
    unsafe {
        for g in 0..kv_heads {
            transpose_head(k, shape, g, &mut kt);
            transpose_head(v, shape, g, &mut vt);
            let (kg, gkg, gvg) = (
                k.as_ptr().add(g * hd),
                grad_k.as_mut_ptr().add(g * hd),
                grad_v.as_mut_ptr().add(g * hd),
            );
            for h in g * (heads / kv_heads)..(g + 1) * (heads / kv_heads) {
                // Per block of up to QB queries: probabilities p and score gradients ds over
                // the keys the block sees, then all three gradients from them, each key's row
                // read once for the whole block.
                for t0 in (0..queries).step_by(QB) {
                    let n = (queries - t0).min(QB);
                    let seen_all = first_key_of + t0 + n; // keys seen by the block's last query
                    let first = (t0 * heads + h) * hd;
                    let (mut qs, mut gs) = (
                        [q.as_ptr().add(first); QB],
                        [grad_out.as_ptr().add(first); QB],
                    );
                    for i in 0..n {
                        let row = ((t0 + i) * heads + h) * hd;
                        (qs[i], gs[i]) = (q.as_ptr().add(row), grad_out.as_ptr().add(row));
                        d[t0 + i] = dot::<V>(gs[i], out.as_ptr().add(row), hd);
                    }
                    block_rows_dots::<V>(&qs, &kt, keys, hd, seen_all, &mut p);
                    block_rows_dots::<V>(&gs, &vt, keys, hd, seen_all, &mut dp);
                    for i in 0..n {
                        let t = t0 + i;
                        let seen = first_key_of + t + 1;
                        let (pi, dpi) = (
                            &mut p[i * keys..][..seen_all],
                            &mut dp[i * keys..][..seen_all],
                        );
                        for x in pi[..seen].iter_mut() {
                            *x *= scale;
                        }
                        exp_shifted::<V>(&mut pi[..seen], lse[h * queries + t]);
                        for j in 0..seen {
                            dpi[j] = pi[j] * (dpi[j] - d[t]) * scale;
                        }
                        pi[seen..].fill(0.0);
                        dpi[seen..].fill(0.0);
                    }
                    // A short block's repeated rows add nothing to grad_k and grad_v.
                    for i in n..QB {
                        p[i * keys..][..seen_all].fill(0.0);
                        dp[i * keys..][..seen_all].fill(0.0);
                    }
                    // grad_q_t = Σ_j ds_tj k_j; grad_k_j += Σ_t ds_tj q_t; grad_v_j += Σ_t p_tj
                    // grad_out_t (heads of the group add into the same rows).
                    let dq = grad_q.as_mut_ptr().add((t0 * heads + h) * hd);
                    let kv_stride = kv_heads * hd;
                    block_weighted_sums::<V>(
                        &dp,
                        keys,
                        n,
                        seen_all,
                        kg,
                        kv_stride,
                        hd,
                        dq,
                        heads * hd,
                    );
                    block_outer_sums::<V>(&dp, keys, &qs, seen_all, gkg, kv_stride, hd);
                    block_outer_sums::<V>(&p, keys, &gs, seen_all, gvg, kv_stride, hd);
                }
            }
        }
    }
}

/// Queries per block of attention's forward and backward passes.
///
/// The helpers below always take a whole block of rows (a short last block repeats its first
/// row, whose results are not used), so that their loops over the rows have a constant count
/// and their accumulators stay in registers: with the block's length as the count they were
/// kept in memory, every multiply-add a load and a store (training attention at nanoGPT's
/// shape: 1.4x slower).
const QB: usize = 8;

/// `s[i][j] = Σ_c x_i[c] t[c][j]` for each of the block's rows `x_i` and the keys `j < seen`
/// (rows of `s` hold `keys` values, `QB` rows written; `t` is `dim` rows of `keys`), each 16
/// keys of `t` loaded once for all the rows.
///
/// # Safety
/// Every row pointer readable for `dim` values, `t` holding `dim` rows of `keys`; the CPU must
/// support `V`.
#[inline(always)]
unsafe fn block_rows_dots<V: V16>(
    rows: &[*const f32; QB],
    t: &[f32],
    keys: usize,
    dim: usize,
    seen: usize,
    s: &mut [f32],
) {
    // Plain loops rather than `for_lanes` in this and the helpers below: these are the
    // innermost loops of attention, and a closure here is not always inlined into the
    // instruction-set build.
    let mut j = 0;
    while j < seen {
        let m = (seen - j).min(16);
        unsafe {
            let mut acc = [V::zero(); QB];
            for c in 0..dim {
                let tc = load::<V>(t.as_ptr().add(c * keys + j), m);
                for (a, &x) in acc.iter_mut().zip(rows) {
                    *a = V::splat(*x.add(c)).fma(tc, *a);
                }
            }
            for (i, a) in acc.iter().enumerate() {
                store(*a, s.as_mut_ptr().add(i * keys + j), m);
            }
        }
        j += 16;
    }
}

/// `out_i[c] = Σ_j w[i][j] rows[j * stride + c]` for `c < dim` and the first `n` of the `QB`
/// weight rows `w[i]` (rows of `w_stride`, `seen` weights used), written at
/// `out + i * out_stride`; each row of `rows` loaded once for all the outputs.
///
/// # Safety
/// `rows` readable for `seen` rows of `stride`, `out` writable for `n` rows of `out_stride`
/// with `dim` values each; the CPU must support `V`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn block_weighted_sums<V: V16>(
    w: &[f32],
    w_stride: usize,
    n: usize,
    seen: usize,
    rows: *const f32,
    stride: usize,
    dim: usize,
    out: *mut f32,
    out_stride: usize,
) {
    let mut c = 0;
    while c < dim {
        let m = (dim - c).min(16);
        unsafe {
            let mut acc = [V::zero(); QB];
            for j in 0..seen {
                let r = load::<V>(rows.add(j * stride + c), m);
                for (i, a) in acc.iter_mut().enumerate() {
                    *a = V::splat(w[i * w_stride + j]).fma(r, *a);
                }
            }
            for (i, a) in acc.iter().enumerate().take(n) {
                store(*a, out.add(i * out_stride + c), m);
            }
        }
        c += 16;
    }
}

/// `out_j[c] += Σ_i w[i][j] rows_i[c]` for the keys `j < seen` and `c < dim`, over the
/// block's `QB` rows `rows_i` (rows of `w` hold `w_stride` values; `out_j` starts at
/// `out + j * out_stride`): the transpose of [`block_weighted_sums`], each 16 values of the
/// block's rows kept in registers while every key's row is updated.
///
/// # Safety
/// Every row pointer readable for `dim` values, `out` writable for `seen` rows of `out_stride`
/// with `dim` values each; the CPU must support `V`.
#[inline(always)]
unsafe fn block_outer_sums<V: V16>(
    w: &[f32],
    w_stride: usize,
    rows: &[*const f32; QB],
    seen: usize,
    out: *mut f32,
    out_stride: usize,
    dim: usize,
) {
    let mut c = 0;
    while c < dim {
        let m = (dim - c).min(16);
        unsafe {
            let mut xs = [V::zero(); QB];
            for (x, &r) in xs.iter_mut().zip(rows) {
                *x = load::<V>(r.add(c), m);
            }
            for j in 0..seen {
                let o = out.add(j * out_stride + c);
                let mut acc = load::<V>(o, m);
                for (i, x) in xs.iter().enumerate() {
                    acc = V::splat(w[i * w_stride + j]).fma(*x, acc);
                }
                store(acc, o, m);
            }
        }
        c += 16;
    }
}

/// KV head `g`'s keys (or values) transposed, `out[c][j] = x[j][g][c]`, so that one query's
/// scores over 16 keys are 16 lanes of one multiply-add per dimension (no horizontal sums).
fn transpose_head(x: &[f32], shape: AttnShape, g: usize, out: &mut [f32]) {
    let (keys, hd) = (shape.keys, shape.head_dim);
    for (j, row) in x
        .chunks_exact(hd)
        .skip(g)
        .step_by(shape.kv_heads)
        .enumerate()
    {
        for (c, &value) in row.iter().enumerate() {
            out[c * keys + j] = value;
        }
    }
}

/// The largest of `s`.
///
/// # Safety
/// The CPU must support `V`.
#[inline(always)]
unsafe fn row_max<V: V16>(s: &[f32]) -> f32 {
    let mut max = unsafe { V::splat(f32::NEG_INFINITY) };
    for_lanes(s.len(), |j, m| unsafe {
        max = load::<V>(s.as_ptr().add(j), m)
            .keep_first(m, f32::NEG_INFINITY)
            .max(max);
    });
    unsafe { max.hmax() }
}

/// Calls `f(i, n)` for each run of `n` (16, or fewer at the end) of `len` values starting at `i`.
#[inline(always)]
fn for_lanes(len: usize, mut f: impl FnMut(usize, usize)) {
    let mut i = 0;
    while i < len {
        f(i, (len - i).min(16));
        i += 16;
    }
}

/// Loads `n ≤ 16` values (a full vector when `n` is 16, the others +0).
///
/// # Safety
/// `p..p + n` must be readable and the CPU must support `V`.
#[inline(always)]
unsafe fn load<V: V16>(p: *const f32, n: usize) -> V {
    unsafe {
        if n == 16 {
            V::load(p)
        } else {
            V::load_partial(p, n)
        }
    }
}

/// Stores the first `n ≤ 16` lanes.
///
/// # Safety
/// `p..p + n` must be writable and the CPU must support `V`.
#[inline(always)]
unsafe fn store<V: V16>(v: V, p: *mut f32, n: usize) {
    unsafe {
        if n == 16 {
            v.store(p)
        } else {
            v.store_partial(p, n)
        }
    }
}

/// `Σ a[i] b[i]` over `n` values.
///
/// # Safety
/// Both ranges readable; the CPU must support `V`.
#[inline(always)]
unsafe fn dot<V: V16>(a: *const f32, b: *const f32, n: usize) -> f32 {
    let mut acc = unsafe { V::zero() };
    for_lanes(n, |i, m| unsafe {
        acc = load::<V>(a.add(i), m).fma(load::<V>(b.add(i), m), acc);
    });
    unsafe { acc.hsum() }
}

/// `p = e^(p - shift)` in place; returns the sum.
///
/// # Safety
/// The CPU must support `V`.
#[inline(always)]
unsafe fn exp_shifted<V: V16>(p: &mut [f32], shift: f32) -> f32 {
    let mut sum = unsafe { V::zero() };
    let sv = unsafe { V::splat(shift) };
    let ptr = p.as_mut_ptr();
    for_lanes(p.len(), |i, m| unsafe {
        let e = load::<V>(ptr.add(i), m).sub(sv).exp().keep_first(m, 0.0);
        store(e, ptr.add(i), m);
        sum = sum.add(e);
    });
    unsafe { sum.hsum() }
}
