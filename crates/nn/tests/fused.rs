//! The fused training ops against burn's composed formulas: outputs and every gradient, on
//! awkward sizes (widths that are not a multiple of 16, grouped-query attention, fewer queries
//! than keys), for each op alone and for a whole model's loss; the fused path must actually run,
//! and its bits must not depend on the number of threads.

use burn::module::{ModuleVisitor, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};
use jielong_nn::fused::{self, reference};
use jielong_nn::{Transformer, TransformerConfig, burn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn device() -> Device {
    Device::flex().autodiff()
}

/// Normal(0, 1) values from their own seeded generator: burn's device seed is one generator
/// for the whole process, which tests running in parallel would reseed and draw from between
/// a `check`'s two runs (each drawing its own `w`), making their gradients differ.
fn random<const D: usize>(dims: [usize; D], seed: u64) -> Tensor<D> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..dims.iter().product::<usize>())
        .map(|_| {
            // Box-Muller: two uniforms, u1 in (0, 1], to one standard normal.
            let (u1, u2) = (1.0 - rng.r#gen::<f64>(), rng.r#gen::<f64>());
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect();
    Tensor::from_data(TensorData::new(values, dims), &device())
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs())).max(1.0);
    let worst = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= tol * scale,
        "{what}: worst difference {worst} (largest value {scale})"
    );
}

/// Runs `op` on fresh copies of `inputs` (requiring gradients), fused and composed; compares
/// the outputs and each input's gradient of `sum(out * w)` for a fixed random `w`.
fn check<const D: usize, const N: usize>(
    what: &str,
    inputs: [Tensor<D>; N],
    op: impl Fn(&[Tensor<D>; N]) -> Tensor<D>,
    reference: impl Fn(&[Tensor<D>; N]) -> Tensor<D>,
) {
    let run = |f: &dyn Fn(&[Tensor<D>; N]) -> Tensor<D>| {
        let xs = inputs.clone().map(|t| t.require_grad());
        let out = f(&xs);
        let w = random(out.dims(), 99);
        let grads = (out.clone() * w).sum().backward();
        let grad_values: Vec<Vec<f32>> = xs
            .iter()
            .map(|x| values(x.grad(&grads).expect("an input got no gradient")))
            .collect();
        (values(out), grad_values)
    };
    let (out, grads) = run(&op);
    let (want_out, want_grads) = run(&|xs| fused::without_fusion(|| reference(xs)));
    assert_close(&format!("{what} output"), &out, &want_out, 1e-5);
    for (i, (g, w)) in grads.iter().zip(&want_grads).enumerate() {
        assert_close(&format!("{what} gradient of input {i}"), g, w, 1e-5);
    }
}

/// A model's loss runs every block's operations fused (a silent fallback to the composed
/// formulas would give the same numbers, so count), with and without autodiff.
#[test]
fn a_model_runs_fused_on_flex() {
    let config = TransformerConfig::new(41, 24, 40, 3, 6, 2, 6, 48);
    // Per layer: two norms, rotary positions of queries and keys, attention, SwiGLU's gate
    // and seven products (Q, K, V, output, gate, up, down); then the final norm and the
    // output layer.
    let per_forward = 3 * (6 + 7) + 2;
    for device in [Device::flex(), device()] {
        let model = Transformer::init(&config, &device, 1).unwrap();
        let before = fused::fused_runs();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64; 10], [2, 5]), &device);
        model.forward(tokens.clone());
        assert_eq!(fused::fused_runs() - before, per_forward, "on {device:?}");
        fused::without_fusion(|| model.forward(tokens));
        assert_eq!(fused::fused_runs() - before, per_forward, "fusion off");
    }
}

#[test]
fn rms_norm_matches_burn() {
    for (rows, cols) in [(1, 1), (7, 13), (33, 40), (65, 128)] {
        let x = random([1, rows, cols], rows as u64);
        let w = random([cols], 7);
        check(
            &format!("rms_norm {rows}x{cols}"),
            [x],
            |[x]| fused::rms_norm(x.clone(), w.clone(), 1e-5),
            |[x]| reference::rms_norm(x.clone(), w.clone(), 1e-5),
        );
        // The weight's gradient too (a rank-1 input).
        let x = random([2, rows, cols], 3);
        check(
            &format!("rms_norm weight {rows}x{cols}"),
            [random([cols], 8)],
            |[w]| {
                fused::rms_norm(x.clone(), w.clone(), 1e-6)
                    .sum_dim(0)
                    .sum_dim(1)
                    .reshape([cols])
            },
            |[w]| {
                reference::rms_norm(x.clone(), w.clone(), 1e-6)
                    .sum_dim(0)
                    .sum_dim(1)
                    .reshape([cols])
            },
        );
    }
}

#[test]
fn linear_matches_burn() {
    // Sizes below and above the threshold for running on several threads (192^3).
    for (rows, inputs, outputs) in [(1, 1, 1), (7, 13, 5), (33, 40, 17), (200, 211, 190)] {
        let (x, w) = (random([rows, inputs], 1), random([inputs, outputs], 2));
        check(
            &format!("linear {rows}x{inputs}x{outputs}"),
            [x.clone(), w],
            |[x, w]| fused::linear(x.clone(), w.clone(), false),
            |[x, w]| x.clone().matmul(w.clone()),
        );
        // A weight stored [outputs, inputs] (a tied output layer).
        check(
            &format!("linear transposed {rows}x{inputs}x{outputs}"),
            [x, random([outputs, inputs], 3)],
            |[x, w]| fused::linear(x.clone(), w.clone(), true),
            |[x, w]| x.clone().matmul(w.clone().transpose()),
        );
    }
}

#[test]
fn cross_entropy_matches_burn() {
    // Rows past one chunk (256) and a mask with zeros: the weight's gradient adds up chunks.
    for (rows, width, classes) in [(1, 3, 2), (9, 13, 37), (300, 24, 41)] {
        let targets: Vec<i64> = (0..rows).map(|r| (r * 7 % classes) as i64).collect();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [rows]), &device());
        let mask: Vec<f32> = (0..rows)
            .map(|r| if r % 5 == 3 { 0.0 } else { 1.0 })
            .collect();
        let mask = Tensor::<1>::from_data(TensorData::new(mask, [rows]), &device());
        for transposed in [false, true] {
            let weight = if transposed {
                random([classes, width], 2)
            } else {
                random([width, classes], 2)
            };
            let loss =
                |f: fn(Tensor<2>, Tensor<2>, bool, Tensor<1, Int>, Tensor<1>) -> Tensor<1>| {
                    let (targets, mask) = (targets.clone(), mask.clone());
                    move |[x, w]: &[Tensor<2>; 2]| {
                        f(
                            x.clone(),
                            w.clone(),
                            transposed,
                            targets.clone(),
                            mask.clone(),
                        )
                        .reshape([1, 1])
                    }
                };
            let before = fused::fused_runs();
            check(
                &format!("cross_entropy {rows}x{width}x{classes} transposed {transposed}"),
                [random([rows, width], 1), weight],
                loss(fused::cross_entropy),
                loss(reference::cross_entropy),
            );
            assert_eq!(fused::fused_runs(), before + 1, "the fused loss ran");
        }
    }
}

#[test]
fn silu_mul_matches_burn() {
    for dims in [[1, 1, 3], [2, 9, 37], [3, 64, 344]] {
        check(
            &format!("silu_mul {dims:?}"),
            [random(dims, 1), random(dims, 2)],
            |[g, u]| fused::silu_mul(g.clone(), u.clone()),
            |[g, u]| reference::silu_mul(g.clone(), u.clone()),
        );
    }
}

#[test]
fn rope_matches_burn() {
    for (len, heads, hd) in [(1, 1, 2), (5, 3, 6), (64, 4, 32), (9, 2, 34)] {
        let cos = random([len, hd / 2], 4);
        let sin = random([len, hd / 2], 5);
        check(
            &format!("rope {len}x{heads}x{hd}"),
            [random([3, len, heads, hd], 6)],
            |[x]| fused::rope(x.clone(), &cos, &sin),
            |[x]| reference::rope(x.clone(), &cos, &sin),
        );
    }
}

#[test]
fn attention_matches_burn() {
    // (batch, queries, keys, heads, kv_heads, head_dim)
    for (b, n, len, h, kvh, hd) in [
        (1, 1, 1, 1, 1, 4),
        (2, 7, 7, 4, 4, 8),
        (3, 5, 12, 6, 2, 6),   // grouped-query, queries after a prefix
        (2, 33, 33, 3, 1, 20), // head_dim not a multiple of 16
        (1, 64, 64, 4, 4, 32),
    ] {
        check(
            &format!("attention b{b} n{n} len{len} h{h} kvh{kvh} hd{hd}"),
            [
                random([b, n, h, hd], 1) * 2.0,
                random([b, len, kvh, hd], 2) * 2.0,
                random([b, len, kvh, hd], 3),
            ]
            .map(|t| pad(t, [b, len, h.max(kvh), hd])),
            |[q, k, v]| {
                fused::attention(
                    unpad(q, [b, n, h, hd]),
                    unpad(k, [b, len, kvh, hd]),
                    unpad(v, [b, len, kvh, hd]),
                )
            },
            |[q, k, v]| {
                reference::attention(
                    unpad(q, [b, n, h, hd]),
                    unpad(k, [b, len, kvh, hd]),
                    unpad(v, [b, len, kvh, hd]),
                )
            },
        );
    }
}

/// `check` takes inputs of one shape: pad each to a common one and cut it back inside the op
/// (the cut is a differentiable narrow, so each input still gets its own gradient).
fn pad(t: Tensor<4>, to: [usize; 4]) -> Tensor<4> {
    let mut out = Tensor::zeros(to, &t.device());
    let ranges = t.dims().map(|d| 0..d);
    out = out.slice_assign(ranges, t);
    out
}

fn unpad(t: &Tensor<4>, dims: [usize; 4]) -> Tensor<4> {
    t.clone().slice(dims.map(|d| 0..d))
}

/// Every parameter's gradient of a model's loss, by checkpoint order.
fn model_grads(model: &Transformer, fuse: bool) -> (f32, Vec<Vec<f32>>) {
    let device = device();
    let ids = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [3, 16]), &device);
    let vocab = model.config.vocab_size as i64;
    let inputs: Vec<i64> = (0..48).map(|i| (i * 7 + 3) % vocab).collect();
    let targets: Vec<i64> = inputs.iter().map(|t| (t * 5 + 1) % vocab).collect();
    let run = || {
        let loss = model.loss(
            ids(inputs.clone()),
            ids(targets.clone()),
            Tensor::ones([3, 16], &device),
            None,
        );
        let value = loss.clone().into_scalar::<f32>();
        (value, loss.backward())
    };
    let (loss, grads) = if fuse {
        run()
    } else {
        fused::without_fusion(run)
    };
    struct Collect<'a>(&'a burn::tensor::Gradients, Vec<Vec<f32>>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let grad = param
                .val()
                .grad(self.0)
                .expect("a parameter got no gradient");
            self.1.push(values(grad));
        }
    }
    let mut collect = Collect(&grads, Vec::new());
    burn::module::Module::visit(model, &mut collect);
    (loss, collect.1)
}

#[test]
fn a_model_trains_the_same_fused_and_composed() {
    // Grouped-query attention, a head_dim not equal to hidden/heads, biases, tied embeddings.
    let config = TransformerConfig::new(41, 24, 40, 3, 6, 2, 6, 48)
        .with_attention_bias(true)
        .with_output_bias(true)
        .with_tie_embeddings(true);
    let model = Transformer::init(&config, &device(), 5).unwrap();
    let (loss, grads) = model_grads(&model, true);
    let (want_loss, want_grads) = model_grads(&model, false);
    assert!(
        (loss - want_loss).abs() < 1e-5,
        "loss {loss} vs {want_loss}"
    );
    assert_eq!(grads.len(), want_grads.len());
    for (i, (g, w)) in grads.iter().zip(&want_grads).enumerate() {
        assert_close(&format!("parameter {i}"), g, w, 1e-4);
    }
}

#[test]
fn fused_bits_do_not_depend_on_threads() {
    let config = TransformerConfig::small(37, 32, 2, 4, 48);
    let model = Transformer::init(&config, &device(), 2).unwrap();
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| model_grads(&model, true))
    };
    let one = on(1);
    assert_eq!(on(2), one, "2 threads");
    assert_eq!(on(3), one, "3 threads");
}
