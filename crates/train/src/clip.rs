//! Clipping by the global gradient norm (all parameters together, as PyTorch's
//! `clip_grad_norm_`), which burn's per-tensor clipping does not do.

use anyhow::Result;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use jielong_nn::{Transformer, burn};

/// Scales every gradient so that their joint L2 norm is at most `max_norm` (0: no clipping)
/// and returns the norm before clipping.
pub fn clip_global_norm(
    model: &Transformer,
    grads: &mut GradientsParams,
    max_norm: f32,
) -> Result<f64> {
    let mut sum = SquaredNorm { grads, total: None };
    model.visit(&mut sum);
    let Some(total) = sum.total else {
        return Ok(0.0);
    };
    let total = total
        .try_into_scalar::<f32>()
        .map_err(|e| anyhow::anyhow!("the gradient norm failed on the device: {e:?}"))?;
    let norm = (total as f64).sqrt();
    if max_norm > 0.0 && norm > max_norm as f64 {
        let mut scale = Scale {
            grads,
            factor: max_norm as f64 / (norm + 1e-6),
        };
        model.visit(&mut scale);
    }
    Ok(norm)
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}
