//! An exponential moving average of the weights (Polyak averaging): late in training the
//! weights still wander around the valley they are in, step to step, and their average sits
//! nearer its floor, so it usually scores better on held-out data than the last step does.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;
use jielong_nn::{Transformer, burn};

/// The decay for update number `updates` (0 for the first): `decay`, but lower early on
/// (`(1 + n) / (10 + n)`, as TensorFlow's `ExponentialMovingAverage` with `num_updates`), so
/// that the random initial weights do not linger in the average.
pub fn decay_at(decay: f64, updates: u64) -> f64 {
    decay.min((1 + updates) as f64 / (10 + updates) as f64)
}

/// `average <- decay * average + (1 - decay) * weights`, parameter by parameter. Both models
/// have the same architecture (the average starts as a copy of the weights), so their
/// parameters are visited in the same order.
pub fn update(average: Transformer, weights: &Transformer, decay: f64) -> Transformer {
    let mut collect = Collect(Vec::new());
    weights.visit(&mut collect);
    let mut blend = Blend {
        weights: collect.0.into_iter(),
        decay,
    };
    average.map(&mut blend)
}

/// Every float parameter, flattened, in visiting order.
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().flatten(0, D - 1));
    }
}

struct Blend {
    weights: std::vec::IntoIter<Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let w = self
            .weights
            .next()
            .expect("the average and the weights share one architecture");
        let decay = self.decay;
        param.map(|a| {
            let w = w.reshape(a.shape());
            a.mul_scalar(decay) + w.mul_scalar(1.0 - decay)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use jielong_nn::TransformerConfig;

    fn named(model: &Transformer) -> Vec<(String, Vec<f32>)> {
        model
            .named_tensors()
            .into_iter()
            .map(|(n, d)| (n, d.try_to_vec::<f32>().unwrap()))
            .collect()
    }

    #[test]
    fn the_update_blends_every_parameter_by_the_decay() {
        let arch = TransformerConfig::small(50, 16, 2, 2, 8);
        let device = Device::flex();
        let average = Transformer::init(&arch, &device, 1).unwrap();
        let weights = Transformer::init(&arch, &device, 2).unwrap();
        let (a, w) = (named(&average), named(&weights));
        let blended = named(&update(average, &weights, 0.75));
        assert_eq!(blended.len(), a.len());
        let mut moved = 0;
        for ((name, b), ((_, a), (_, w))) in blended.iter().zip(a.iter().zip(&w)) {
            for ((b, a), w) in b.iter().zip(a).zip(w) {
                let want = 0.75 * a + 0.25 * w;
                assert!((b - want).abs() <= 1e-6 * want.abs().max(1.0), "{name}");
                moved += (a != w) as usize;
            }
        }
        assert!(moved > 1000, "the two seeds give different weights");
    }

    #[test]
    fn the_decay_is_lower_for_the_first_updates() {
        assert!((decay_at(0.998, 0) - 0.1).abs() < 1e-12);
        assert!((decay_at(0.998, 90) - 0.91).abs() < 1e-12);
        assert_eq!(decay_at(0.998, 10_000), 0.998);
        assert_eq!(decay_at(0.5, 100), 0.5);
    }
}
