//! The transformer's building blocks as fused operations on burn's flex backend: RMSNorm,
//! rotary positions, SwiGLU's gate and causal attention, each one kernel forward and one
//! hand-written kernel backward (`jielong_kernels::train`) instead of the ten to thirty small
//! burn operations, allocations and autodiff nodes of the composed formula; and the linear
//! products and the output layer's cross-entropy, which call `gemm` themselves so that no
//! output is allocated twice and the logits are never held whole.
//!
//! Each function takes and returns ordinary tensors. On flex (with or without autodiff, f32)
//! it runs the fused kernels and, when autodiff tracks an input, records one graph node whose
//! backward pass is the kernel's; on any other device (wgpu) it runs the composed formula in
//! [`reference`], which is also what the tests check the kernels against. Work is split across
//! rayon's threads (burn's own pool) in fixed chunks, so the bits do not depend on the number
//! of threads.

use std::cell::Cell;
use std::fmt::Debug;

use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Int, Shape, Tensor, TensorData};
use jielong_kernels::ops::{self, RopeStyle};
use jielong_kernels::train::{self as kernels, AttnShape};
use rayon::prelude::*;

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) * weight`.
///
/// # Shapes
/// - x: `[..., hidden]`, weight: `[hidden]` -> `[..., hidden]`
pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
    fuse(RmsNorm { eps: eps as f32 }, [lift(&x), lift(&weight)])
        .unwrap_or_else(|| reference::rms_norm(x, weight, eps))
}

/// Rotary positions, "rotate half" convention: row `t` of every head turned by the angles in
/// row `t` of `cos`/`sin`.
///
/// # Shapes
/// - x: `[batch, len, heads, head_dim]`, cos/sin: `[len, head_dim / 2]` -> same as x
pub fn rope(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<4> {
    let tables = constant(cos).zip(constant(sin));
    tables
        .and_then(|(cos, sin)| {
            fuse(
                Rope {
                    cos,
                    sin,
                    dims: x.dims(),
                },
                [lift(&x)],
            )
        })
        .unwrap_or_else(|| reference::rope(x, cos, sin))
}

/// SwiGLU's gate: `silu(gate) * up`.
///
/// # Shapes
/// - gate, up: `[batch, len, intermediate]` -> same
pub fn silu_mul(gate: Tensor<3>, up: Tensor<3>) -> Tensor<3> {
    fuse(SiluMul, [lift(&gate), lift(&up)]).unwrap_or_else(|| reference::silu_mul(gate, up))
}

/// Causal grouped-query attention with scores scaled by `1 / sqrt(head_dim)`. The queries are
/// the last `new` of the `len` positions: query `t` sees positions up to `len - new + t`.
///
/// # Shapes
/// - q: `[batch, new, heads, head_dim]`, k/v: `[batch, len, kv_heads, head_dim]`
///   -> `[batch, new, heads, head_dim]`
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let ([_, new, heads, head_dim], [_, len, kv_heads, _]) = (q.dims(), k.dims());
    let shape = AttnShape {
        queries: new,
        keys: len,
        heads,
        kv_heads,
        head_dim,
    };
    fuse(Attention(shape), [lift(&q), lift(&k), lift(&v)])
        .unwrap_or_else(|| reference::attention(q, k, v))
}

/// The product `x W` of a linear layer, without its bias; `W` is stored `[in, out]` (burn's
/// `Linear`), or `[out, in]` when `transposed` (an embedding used as the output layer).
///
/// burn's own matmul gives the same bits (both call `gemm`), but allocates each output zeroed
/// and then copies it into an aligned buffer; here `gemm` writes straight into the output, and
/// the backward pass's two products read the transposes through strides.
///
/// # Shapes
/// - x: `[rows, in]`, weight: `[in, out]` (or `[out, in]`) -> `[rows, out]`
pub fn linear(x: Tensor<2>, weight: Tensor<2>, transposed: bool) -> Tensor<2> {
    let product = Product::new(x.dims(), weight.dims(), transposed);
    fuse(product, [lift(&x), lift(&weight)])
        .unwrap_or_else(|| reference::linear(x, weight, transposed))
}

/// Mean cross-entropy of the logits `hidden W` (`W` stored as in [`linear`]) against
/// `targets`, weighted by `mask`: `Σ_r mask_r (lse_r - z_r[target_r]) / Σ_r mask_r` with
/// `lse_r = ln Σ_v e^z_r[v]`.
///
/// The logits are never held whole: the rows go through in chunks of [`CE_ROWS`], each chunk's
/// logits turned into their gradient in place, and with autodiff the gradients of `hidden` and
/// `W` are computed in the same pass (for a loss gradient of 1, which the backward pass
/// scales). Composed, a 32,000-class output layer over 16 x 256 rows (stories15M) took a dozen
/// 524 MB tensors a step (logits, log-softmax and their gradients), each a fresh allocation
/// that the kernel zeroed page by page (42% of the step).
///
/// # Shapes
/// - hidden: `[rows, in]`, weight: `[in, classes]` (or `[classes, in]`), targets and mask:
///   `[rows]` -> `[1]`
pub fn cross_entropy(
    hidden: Tensor<2>,
    weight: Tensor<2>,
    transposed: bool,
    targets: Tensor<1, Int>,
    mask: Tensor<1>,
) -> Tensor<1> {
    let inputs = [lift(&hidden), lift(&weight)];
    if let (true, Some(mask)) = (inputs.iter().all(Option::is_some), constant(&mask)) {
        let kernel = CrossEntropy {
            product: Product::new(hidden.dims(), weight.dims(), transposed),
            targets: targets
                .clone()
                .into_data()
                .iter::<i64>()
                .map(|t| usize::try_from(t).unwrap_or(usize::MAX))
                .collect(),
            mask: f32s(&dense(mask)).to_vec(),
        };
        if let Some(loss) = fuse(kernel, inputs) {
            return loss;
        }
    }
    reference::cross_entropy(hidden, weight, transposed, targets, mask)
}

thread_local! {
    static DISABLED: Cell<bool> = const { Cell::new(false) };
    static RUNS: Cell<u64> = const { Cell::new(0) };
}

/// How many fused operations this thread has run (tests check that the fused path ran).
pub fn fused_runs() -> u64 {
    RUNS.get()
}

/// Runs `f` with the composed [`reference`] formulas on this thread (tests and measurements
/// compare the two).
pub fn without_fusion<T>(f: impl FnOnce() -> T) -> T {
    let before = DISABLED.replace(true);
    let out = f();
    DISABLED.set(before);
    out
}

/// The composed burn formulas: the fused kernels' reference, and the path on other devices.
pub mod reference {
    use burn::tensor::activation::{log_softmax, silu};
    use burn::tensor::module;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Int, Tensor};

    /// See [`super::rms_norm`].
    pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
        let rms = (x.clone().square().mean_dim(D - 1) + eps).sqrt(); // [..., 1]
        x / rms * weight.unsqueeze()
    }

    /// See [`super::rope`].
    pub fn rope(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<4> {
        let [_, len, _, hd] = x.dims();
        let half = hd / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        let cos = cos.clone().reshape([1, len, 1, half]);
        let sin = sin.clone().reshape([1, len, 1, half]);
        let r1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
        let r2 = x2 * cos + x1 * sin;
        Tensor::cat(vec![r1, r2], 3)
    }

    /// See [`super::linear`]: burn's matmul, on the transposed view of a `[out, in]` weight.
    pub fn linear(x: Tensor<2>, weight: Tensor<2>, transposed: bool) -> Tensor<2> {
        x.matmul(if transposed {
            weight.transpose()
        } else {
            weight
        })
    }

    /// See [`super::cross_entropy`].
    pub fn cross_entropy(
        hidden: Tensor<2>,
        weight: Tensor<2>,
        transposed: bool,
        targets: Tensor<1, Int>,
        mask: Tensor<1>,
    ) -> Tensor<1> {
        let rows = targets.dims()[0];
        let logp = log_softmax(linear(hidden, weight, transposed), 1); // [rows, classes]
        let picked = logp.gather(1, targets.reshape([rows, 1])); // [rows, 1]
        let mask = mask.reshape([rows, 1]);
        (picked * mask.clone()).sum().neg() / mask.sum()
    }

    /// See [`super::silu_mul`].
    pub fn silu_mul(gate: Tensor<3>, up: Tensor<3>) -> Tensor<3> {
        silu(gate) * up
    }

    /// See [`super::attention`]: burn's attention with the causal boundary at the bottom right.
    pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let ([b, _, h, _], [_, len, kvh, hd]) = (q.dims(), k.dims());
        let repeat = |x: Tensor<4>| {
            // [b, len, kvh, hd] -> [b, h, len, hd], each KV head repeated for its query heads
            x.swap_dims(1, 2)
                .unsqueeze_dim::<5>(2)
                .expand([b, kvh, h / kvh, len, hd])
                .reshape([b, h, len, hd])
        };
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: true,
        };
        let out = module::attention(q.swap_dims(1, 2), repeat(k), repeat(v), None, None, options);
        out.swap_dims(1, 2) // [b, new, h, hd]
    }
}

/// One fused operation of `N` tensor inputs, on contiguous f32 buffers.
trait Kernel<const N: usize>: Debug + Send + Sized + 'static {
    /// Whether the backward pass reads the output (else the graph does not keep it alive:
    /// the output layer's logits are the largest tensor of a training step).
    const BACKWARD_READS_OUTPUT: bool = true;

    /// The output, and what the backward pass needs besides the inputs.
    fn forward(&self, inputs: &[&[f32]; N], shapes: &[Shape; N]) -> (Buffer, Vec<Buffer>);

    /// The output alone, when no input is tracked by autodiff.
    fn forward_untracked(&self, inputs: &[&[f32]; N], shapes: &[Shape; N]) -> Buffer {
        self.forward(inputs, shapes).0
    }

    /// The gradient of each input, given the forward pass's output and the output's gradient.
    fn backward(&self, io: Saved<'_, N>, grad: &[f32]) -> [Vec<f32>; N];
}

/// An output buffer and its shape.
type Buffer = (Vec<f32>, Shape);

/// What a backward pass reads: the forward pass's inputs, output and saved buffers.
struct Saved<'a, const N: usize> {
    inputs: [&'a [f32]; N],
    /// Empty when the kernel's backward pass does not read it.
    out: &'a [f32],
    saved: Vec<&'a [f32]>,
}

/// A flex tensor, tracked by autodiff or not.
enum Operand {
    Tracked(FloatTensor<Autodiff<Flex>>),
    Plain(FlexTensor),
}

/// The flex f32 primitive behind `t`, or `None` on another device or type (or with fusion off).
fn lift<const D: usize>(t: &Tensor<D>) -> Option<Operand> {
    if DISABLED.get() || t.dtype() != DType::F32 {
        return None;
    }
    match t.clone().try_into_primitive::<Autodiff<Flex>>() {
        Ok(tracked) => Some(Operand::Tracked(tracked)),
        Err(_) => t
            .clone()
            .try_into_primitive::<Flex>()
            .ok()
            .map(Operand::Plain),
    }
}

/// A constant's flex buffer (never differentiated).
fn constant<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    match lift(t)? {
        Operand::Tracked(t) => Some(t.into_primitive()),
        Operand::Plain(t) => Some(t),
    }
}

/// Runs `kernel` on flex inputs; `None` when an input is not on flex, or some are tracked by
/// autodiff and others not (the caller then composes the formula).
fn fuse<K: Kernel<N>, const N: usize, const D: usize>(
    kernel: K,
    inputs: [Option<Operand>; N],
) -> Option<Tensor<D>> {
    let plain = |o: &Option<Operand>| matches!(o, Some(Operand::Plain(_)));
    let tracked = |o: &Option<Operand>| matches!(o, Some(Operand::Tracked(_)));
    let out = if inputs.iter().all(plain) {
        let inputs = inputs.map(|o| match o {
            Some(Operand::Plain(t)) => dense(t),
            _ => unreachable!("checked above"),
        });
        let slices = inputs.each_ref().map(f32s);
        let shapes = inputs.each_ref().map(|t| t.shape());
        Tensor::from_primitive::<Flex>(tensor(kernel.forward_untracked(&slices, &shapes)))
    } else if inputs.iter().all(tracked) {
        let inputs = inputs.map(|o| match o {
            Some(Operand::Tracked(t)) => t,
            _ => unreachable!("checked above"),
        });
        let nodes = inputs.each_ref().map(|t| t.node());
        let inputs = inputs.map(|t| dense(t.into_primitive()));
        let (out, saved) = forward(&kernel, &inputs);
        let out = match Step(kernel)
            .prepare::<NoCheckpointing>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let kept = K::BACKWARD_READS_OUTPUT.then(|| out.clone());
                prep.finish((inputs.to_vec(), kept, saved), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        Tensor::from_primitive::<Autodiff<Flex>>(out)
    } else {
        return None;
    };
    RUNS.set(RUNS.get() + 1);
    Some(out)
}

fn forward<K: Kernel<N>, const N: usize>(
    kernel: &K,
    inputs: &[FlexTensor; N],
) -> (FlexTensor, Vec<FlexTensor>) {
    let slices = inputs.each_ref().map(f32s);
    let shapes = inputs.each_ref().map(|t| t.shape());
    let (out, saved) = kernel.forward(&slices, &shapes);
    (tensor(out), saved.into_iter().map(tensor).collect())
}

/// The autodiff node of a fused operation; its state is the inputs, the output (shared, not
/// copied; only for a kernel whose backward pass reads it) and the saved buffers.
#[derive(Debug)]
struct Step<K>(K);

impl<K: Kernel<N>, const N: usize> Backward<Flex, N> for Step<K> {
    type State = (Vec<FlexTensor>, Option<FlexTensor>, Vec<FlexTensor>);

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = dense(grads.consume::<Flex>(&ops.node));
        let (inputs, out, saved) = &ops.state;
        let io = Saved {
            inputs: std::array::from_fn(|i| f32s(&inputs[i])),
            out: out.as_ref().map_or(&[], f32s),
            saved: saved.iter().map(f32s).collect(),
        };
        let input_grads = self.0.backward(io, f32s(&grad));
        for ((parent, g), input) in ops.parents.iter().zip(input_grads).zip(inputs) {
            if let Some(parent) = parent {
                grads.register::<Flex>(parent.id, tensor((g, input.shape())));
            }
        }
    }
}

fn dense(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("fused: inputs are made contiguous f32")
}

fn tensor((values, shape): Buffer) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// A matrix of f32 read through strides (a transpose is the same values, strides swapped).
#[derive(Clone, Copy)]
struct Strided<'a> {
    values: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Strided<'a> {
    /// A row-major matrix of `cols` columns.
    fn rows(values: &'a [f32], cols: usize) -> Self {
        Strided {
            values,
            row_stride: cols,
            col_stride: 1,
        }
    }

    fn t(self) -> Self {
        Strided {
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// `a b` for `a`: `[m, k]` and `b`: `[k, n]`, as a new row-major `[m, n]` buffer.
fn gemm_product(m: usize, n: usize, k: usize, a: Strided<'_>, b: Strided<'_>) -> Vec<f32> {
    let mut out = Vec::with_capacity(m * n);
    // SAFETY: `out` has room for `m * n` values, and `gemm_raw` without `accumulate` writes
    // every one of them without reading, so all are initialised when the length is set.
    unsafe {
        gemm_raw(out.as_mut_ptr(), m, n, k, a, b, false);
        out.set_len(m * n);
    }
    out
}

/// `out = a b`, or `out += a b` with `accumulate`, for a row-major `out`: `[m, n]`.
fn gemm_into(
    out: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    a: Strided<'_>,
    b: Strided<'_>,
    accumulate: bool,
) {
    assert_eq!(out.len(), m * n, "gemm: output length");
    // SAFETY: `out` holds the `m * n` values gemm reads and writes.
    unsafe { gemm_raw(out.as_mut_ptr(), m, n, k, a, b, accumulate) }
}

/// `gemm` on rayon's threads when the product is large enough (burn's own threshold: the split
/// is over output blocks, so the bits do not depend on the number of threads).
///
/// # Safety
/// `out` must be valid for writing `m * n` values (and reading them, with `accumulate`).
unsafe fn gemm_raw(
    out: *mut f32,
    m: usize,
    n: usize,
    k: usize,
    a: Strided<'_>,
    b: Strided<'_>,
    accumulate: bool,
) {
    let last = |s: Strided<'_>, rows: usize, cols: usize| {
        (rows > 0 && cols > 0).then(|| (rows - 1) * s.row_stride + (cols - 1) * s.col_stride)
    };
    assert!(
        last(a, m, k).is_none_or(|i| i < a.values.len())
            && last(b, k, n).is_none_or(|i| i < b.values.len()),
        "gemm: operands too short for [{m}, {k}] x [{k}, {n}]"
    );
    if k == 0 {
        if !accumulate {
            // SAFETY: the caller's promise.
            unsafe { std::ptr::write_bytes(out, 0, m * n) };
        }
        return;
    }
    let parallelism = if m * n * k >= 192 * 192 * 192 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the operands hold every element the strides reach (checked above) and `out` is
    // the caller's; gemm computes `out = (accumulate ? out : 0) + a b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out,
            1,
            n as isize,
            accumulate,
            a.values.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.values.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// See [`linear`]: `[rows, inputs] x [inputs, outputs]`.
#[derive(Debug, Clone, Copy)]
struct Product {
    rows: usize,
    inputs: usize,
    outputs: usize,
    transposed: bool,
}

impl Product {
    /// The product of `x`: `[rows, inputs]` and a weight stored as in [`linear`].
    ///
    /// Panics when the weight's input dimension is not `inputs`.
    fn new([rows, inputs]: [usize; 2], [a, b]: [usize; 2], transposed: bool) -> Product {
        let (weight_inputs, outputs) = if transposed { (b, a) } else { (a, b) };
        assert_eq!(
            weight_inputs, inputs,
            "linear: a weight of shape [{a}, {b}] for {inputs} inputs"
        );
        Product {
            rows,
            inputs,
            outputs,
            transposed,
        }
    }

    /// The stored weight as the `[inputs, outputs]` right operand.
    fn weight<'a>(&self, w: &'a [f32]) -> Strided<'a> {
        if self.transposed {
            Strided::rows(w, self.inputs).t()
        } else {
            Strided::rows(w, self.outputs)
        }
    }
}

impl Kernel<2> for Product {
    const BACKWARD_READS_OUTPUT: bool = false;

    fn forward(&self, [x, w]: &[&[f32]; 2], _: &[Shape; 2]) -> (Buffer, Vec<Buffer>) {
        let Product {
            rows,
            inputs,
            outputs,
            ..
        } = *self;
        let x = Strided::rows(x, inputs);
        let out = gemm_product(rows, outputs, inputs, x, self.weight(w));
        ((out, Shape::new([rows, outputs])), vec![])
    }

    /// `grad_x = grad W^T` and `grad_W = x^T grad` (or its transpose, `grad^T x`, for a weight
    /// stored `[outputs, inputs]`).
    fn backward(&self, io: Saved<'_, 2>, grad: &[f32]) -> [Vec<f32>; 2] {
        let Product {
            rows,
            inputs,
            outputs,
            transposed,
        } = *self;
        let ([x, w], grad) = (io.inputs, Strided::rows(grad, outputs));
        let x = Strided::rows(x, inputs);
        let grad_x = gemm_product(rows, inputs, outputs, grad, self.weight(w).t());
        let grad_w = if transposed {
            gemm_product(outputs, inputs, rows, grad.t(), x)
        } else {
            gemm_product(inputs, outputs, rows, x.t(), grad)
        };
        [grad_x, grad_w]
    }
}

/// Rows per chunk of [`cross_entropy`]: 31 MiB of logits at 32,000 classes.
const CE_ROWS: usize = 256;

/// See [`cross_entropy`]; the product's rows are the loss's rows, its outputs the classes.
#[derive(Debug)]
struct CrossEntropy {
    product: Product,
    targets: Vec<usize>,
    mask: Vec<f32>,
}

impl CrossEntropy {
    /// The loss; with `grads`, its gradients (for a loss gradient of 1) written into the two
    /// buffers: `[rows, inputs]` for the hidden rows, the weight's own shape for the weight.
    fn run(&self, x: &[f32], w: &[f32], mut grads: Option<(&mut [f32], &mut [f32])>) -> f32 {
        let Product {
            rows,
            inputs,
            outputs: classes,
            transposed,
        } = self.product;
        assert!(
            self.targets.len() == rows && self.mask.len() == rows,
            "cross-entropy: {rows} rows, {} targets, {} mask values",
            self.targets.len(),
            self.mask.len()
        );
        let total: f32 = self.mask.iter().sum();
        let weight = self.product.weight(w);
        let mut logits = vec![0f32; CE_ROWS.min(rows) * classes];
        let mut losses = vec![0f32; rows];
        for r0 in (0..rows).step_by(CE_ROWS) {
            let n = (rows - r0).min(CE_ROWS);
            let (z, x_rows) = (
                &mut logits[..n * classes],
                &x[r0 * inputs..(r0 + n) * inputs],
            );
            let x_rows = Strided::rows(x_rows, inputs);
            gemm_into(z, n, classes, inputs, x_rows, weight, false);
            let tracked = grads.is_some();
            z.par_chunks_mut(classes)
                .zip(&mut losses[r0..r0 + n])
                .zip(&self.targets[r0..r0 + n])
                .zip(&self.mask[r0..r0 + n])
                .for_each(|(((z, loss), &target), &m)| {
                    assert!(
                        target < classes,
                        "cross-entropy: class {target} of {classes}"
                    );
                    *loss = kernels::cross_entropy_row(z, target, tracked.then_some(m / total));
                });
            if let Some((grad_x, grad_w)) = &mut grads {
                let g = Strided::rows(z, classes); // [n, classes]: the loss's gradient
                let grad_x = &mut grad_x[r0 * inputs..(r0 + n) * inputs];
                gemm_into(grad_x, n, inputs, classes, g, weight.t(), false);
                if transposed {
                    gemm_into(grad_w, classes, inputs, n, g.t(), x_rows, r0 > 0);
                } else {
                    gemm_into(grad_w, inputs, classes, n, x_rows.t(), g, r0 > 0);
                }
            }
        }
        let sum: f64 = losses
            .iter()
            .zip(&self.mask)
            .map(|(&l, &m)| f64::from(l * m))
            .sum();
        (sum / f64::from(total)) as f32
    }
}

impl Kernel<2> for CrossEntropy {
    const BACKWARD_READS_OUTPUT: bool = false;

    /// The loss, and (saved) its gradients for a loss gradient of 1.
    fn forward(&self, [x, w]: &[&[f32]; 2], [xs, ws]: &[Shape; 2]) -> (Buffer, Vec<Buffer>) {
        let (mut grad_x, mut grad_w) = (vec![0f32; x.len()], vec![0f32; w.len()]);
        let loss = self.run(x, w, Some((&mut grad_x, &mut grad_w)));
        let saved = vec![(grad_x, xs.clone()), (grad_w, ws.clone())];
        ((vec![loss], Shape::new([1])), saved)
    }

    fn forward_untracked(&self, [x, w]: &[&[f32]; 2], _: &[Shape; 2]) -> Buffer {
        (vec![self.run(x, w, None)], Shape::new([1]))
    }

    fn backward(&self, io: Saved<'_, 2>, grad: &[f32]) -> [Vec<f32>; 2] {
        let scaled = |g: &[f32]| g.iter().map(|v| v * grad[0]).collect();
        [scaled(io.saved[0]), scaled(io.saved[1])]
    }
}

/// Rows per parallel task of the row-wise kernels (fixed, so sums do not depend on threads).
const ROWS_PER_TASK: usize = 32;

#[derive(Debug)]
struct RmsNorm {
    eps: f32,
}

impl Kernel<2> for RmsNorm {
    fn forward(&self, [x, w]: &[&[f32]; 2], [shape, _]: &[Shape; 2]) -> (Buffer, Vec<Buffer>) {
        let cols = w.len();
        let mut out = vec![0f32; x.len()];
        let mut inv = vec![0f32; x.len() / cols];
        x.par_chunks(ROWS_PER_TASK * cols)
            .zip(out.par_chunks_mut(ROWS_PER_TASK * cols))
            .zip(inv.par_chunks_mut(ROWS_PER_TASK))
            .for_each(|((x, out), inv)| kernels::rms_norm_forward(x, w, self.eps, out, inv));
        let rows = Shape::new([inv.len()]);
        ((out, shape.clone()), vec![(inv, rows)])
    }

    fn backward(&self, io: Saved<'_, 2>, grad: &[f32]) -> [Vec<f32>; 2] {
        let ([x, w], inv_rms) = (io.inputs, io.saved[0]);
        let cols = w.len();
        let mut grad_x = vec![0f32; x.len()];
        let partial: Vec<Vec<f32>> = x
            .par_chunks(ROWS_PER_TASK * cols)
            .zip(inv_rms.par_chunks(ROWS_PER_TASK))
            .zip(grad.par_chunks(ROWS_PER_TASK * cols))
            .zip(grad_x.par_chunks_mut(ROWS_PER_TASK * cols))
            .map(|(((x, inv), g), gx)| {
                let mut gw = vec![0f32; cols];
                kernels::rms_norm_backward(x, w, inv, g, gx, &mut gw);
                gw
            })
            .collect();
        let mut grad_w = vec![0f32; cols];
        for p in partial {
            grad_w.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        [grad_x, grad_w]
    }
}

/// Elements per parallel task of the element-wise kernels.
const ELEMENTS_PER_TASK: usize = 1 << 14;

#[derive(Debug)]
struct SiluMul;

impl Kernel<2> for SiluMul {
    fn forward(&self, [g, u]: &[&[f32]; 2], [shape, _]: &[Shape; 2]) -> (Buffer, Vec<Buffer>) {
        let mut out = g.to_vec();
        out.par_chunks_mut(ELEMENTS_PER_TASK)
            .zip(u.par_chunks(ELEMENTS_PER_TASK))
            .for_each(|(out, u)| ops::silu_mul(out, u)); // out = silu(out) * u, in place
        ((out, shape.clone()), vec![])
    }

    fn backward(&self, io: Saved<'_, 2>, grad: &[f32]) -> [Vec<f32>; 2] {
        let [g, u] = io.inputs;
        let (mut grad_g, mut grad_u) = (vec![0f32; g.len()], vec![0f32; g.len()]);
        g.par_chunks(ELEMENTS_PER_TASK)
            .zip(u.par_chunks(ELEMENTS_PER_TASK))
            .zip(grad.par_chunks(ELEMENTS_PER_TASK))
            .zip(grad_g.par_chunks_mut(ELEMENTS_PER_TASK))
            .zip(grad_u.par_chunks_mut(ELEMENTS_PER_TASK))
            .for_each(|((((g, u), d), gg), gu)| kernels::silu_mul_backward(g, u, d, gg, gu));
        [grad_g, grad_u]
    }
}

/// Rotary positions of `[batch, len, heads, head_dim]` tensors with their cos/sin tables
/// (constants: no gradient).
#[derive(Debug)]
struct Rope {
    cos: FlexTensor,
    sin: FlexTensor,
    dims: [usize; 4],
}

impl Rope {
    /// Rotates each sequence of `x` forwards, or back (by the opposite angles: the transpose
    /// of a rotation is its inverse, so that is the backward pass).
    fn rotate(&self, x: &[f32], inverse: bool) -> Vec<f32> {
        let [_, len, heads, hd] = self.dims;
        let (cos, sin) = (dense(self.cos.clone()), dense(self.sin.clone()));
        let negated: Vec<f32>;
        let sin = if inverse {
            negated = f32s(&sin).iter().map(|s| -s).collect();
            &negated[..]
        } else {
            f32s(&sin)
        };
        let positions: Vec<usize> = (0..len).collect();
        let mut out = x.to_vec();
        out.par_chunks_mut(len * heads * hd).for_each(|seq| {
            ops::rope(seq, heads, hd, &positions, f32s(&cos), sin, RopeStyle::Half)
        });
        out
    }
}

impl Kernel<1> for Rope {
    fn forward(&self, [x]: &[&[f32]; 1], [shape]: &[Shape; 1]) -> (Buffer, Vec<Buffer>) {
        ((self.rotate(x, false), shape.clone()), vec![])
    }

    fn backward(&self, _: Saved<'_, 1>, grad: &[f32]) -> [Vec<f32>; 1] {
        [self.rotate(grad, true)]
    }
}

#[derive(Debug)]
struct Attention(AttnShape);

impl Kernel<3> for Attention {
    fn forward(&self, [q, k, v]: &[&[f32]; 3], [shape, ..]: &[Shape; 3]) -> (Buffer, Vec<Buffer>) {
        let s = self.0;
        let (q_len, kv_len) = (
            s.queries * s.heads * s.head_dim,
            s.keys * s.kv_heads * s.head_dim,
        );
        let mut out = vec![0f32; q.len()];
        let mut lse = vec![0f32; q.len() / q_len * s.heads * s.queries];
        q.par_chunks(q_len)
            .zip(k.par_chunks(kv_len))
            .zip(v.par_chunks(kv_len))
            .zip(out.par_chunks_mut(q_len))
            .zip(lse.par_chunks_mut(s.heads * s.queries))
            .for_each(|((((q, k), v), out), lse)| kernels::attention_forward(s, q, k, v, out, lse));
        let lse_shape = Shape::new([lse.len()]);
        ((out, shape.clone()), vec![(lse, lse_shape)])
    }

    fn backward(&self, io: Saved<'_, 3>, grad: &[f32]) -> [Vec<f32>; 3] {
        let ([q, k, v], out, lse) = (io.inputs, io.out, io.saved[0]);
        let s = self.0;
        let (q_len, kv_len) = (
            s.queries * s.heads * s.head_dim,
            s.keys * s.kv_heads * s.head_dim,
        );
        let mut grad_q = vec![0f32; q.len()];
        let (mut grad_k, mut grad_v) = (vec![0f32; k.len()], vec![0f32; v.len()]);
        let per_seq = |(((q, k), v), (out, lse)), grad, ((gq, gk), gv)| {
            kernels::attention_backward(s, (q, k, v), out, lse, grad, (gq, gk, gv))
        };
        q.par_chunks(q_len)
            .zip(k.par_chunks(kv_len))
            .zip(v.par_chunks(kv_len))
            .zip(
                out.par_chunks(q_len)
                    .zip(lse.par_chunks(s.heads * s.queries)),
            )
            .zip(grad.par_chunks(q_len))
            .zip(
                grad_q
                    .par_chunks_mut(q_len)
                    .zip(grad_k.par_chunks_mut(kv_len))
                    .zip(grad_v.par_chunks_mut(kv_len)),
            )
            .for_each(|((inputs, grad), grads)| per_seq(inputs, grad, grads));
        [grad_q, grad_k, grad_v]
    }
}
