//! One walk over the transformer's parameters, naming each by its checkpoint name.
//!
//! The module's field paths are the checkpoint names: `layers.3.self_attn.q_proj.weight` is
//! stored as `model.layers.3.self_attn.q_proj.weight` (everything but `lm_head` sits under
//! Hugging Face's `model.`), and a weight inside a burn `Linear` (held `[in, out]`) is stored
//! transposed (`[out, in]`, PyTorch's layout). So the names are written once, by the fields
//! themselves, and burn's own traversal (`Module::map` / `Module::visit`) drives every use:
//! [`Fresh`] initialises, [`Load`] reads a checkpoint, [`Save`] writes one, and burn's
//! `num_params` counts the declared shapes without allocating them.

use anyhow::Result;
use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::TransformerConfig;
use crate::weights::Checkpoint;

/// A parameter of `shape` that a walk fills in; it allocates nothing until then.
pub(crate) fn declare<const D: usize>(shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::uninitialized(
        burn::module::ParamId::new(),
        move |device, _| Tensor::zeros(shape, device),
        device.clone(),
        true,
        shape.into(),
    )
}

/// Where a traversal is: the field path and whether it is inside a `Linear`.
#[derive(Default)]
struct Path {
    names: Vec<String>,
    containers: Vec<String>,
}

impl Path {
    fn enter(&mut self, name: &str, container: &str) {
        self.names.push(name.to_string());
        self.containers.push(container.to_string());
    }

    fn exit(&mut self) {
        self.names.pop();
        self.containers.pop();
    }

    /// The checkpoint name of the parameter at this path.
    fn checkpoint_name(&self) -> String {
        let path = self.names.join(".");
        if path.starts_with("lm_head") {
            path
        } else {
            format!("model.{path}")
        }
    }

    /// Linear weights are held `[in, out]` and stored `[out, in]`.
    fn transposed(&self) -> bool {
        self.containers.last().is_some_and(|c| c == "Struct:Linear")
            && self.names.last().is_some_and(|n| n == "weight")
    }

    fn leaf(&self) -> &str {
        self.names.last().map_or("", String::as_str)
    }

    /// The module holding the parameter, e.g. `o_proj`.
    fn owner(&self) -> &str {
        let n = self.names.len();
        if n >= 2 { &self.names[n - 2] } else { "" }
    }
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn dims<const D: usize>(param: &Param<Tensor<D>>) -> [usize; D] {
    param.lazy_shape().dims::<D>()
}

/// Fresh weights from a seeded generator, GPT-2 style: normal with std 0.02 (the residual
/// projections `o_proj` and `down_proj` scaled down by the depth), norm gains 1, biases 0.
pub(crate) struct Fresh<'a> {
    rng: ChaCha8Rng,
    std: f64,
    residual_std: f64,
    device: &'a Device,
    path: Path,
}

impl<'a> Fresh<'a> {
    pub fn new(config: &TransformerConfig, seed: u64, device: &'a Device) -> Self {
        let std = 0.02;
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            std,
            residual_std: std / (2.0 * config.num_layers as f64).sqrt(),
            device,
            path: Path::default(),
        }
    }
}

impl ModuleMapper for Fresh<'_> {
    fn enter_module(&mut self, name: &str, container: &str) {
        self.path.enter(name, container);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let shape = dims(&param);
        let n: usize = shape.iter().product();
        let values = match (D, self.path.leaf()) {
            (1, "bias") => vec![0.0; n],
            (1, _) => vec![1.0; n], // norm gains
            _ => {
                let std = match self.path.owner() {
                    "o_proj" | "down_proj" => self.residual_std,
                    _ => self.std,
                };
                (0..n)
                    .map(|_| (gaussian(&mut self.rng) * std) as f32)
                    .collect()
            }
        };
        Param::from_tensor(tensor(values, shape, self.device))
    }
}

/// Weights read from a checkpoint by name, checked against the declared shapes. The first
/// problem is kept and reported by [`Load::finish`] (a mapper cannot fail midway).
pub(crate) struct Load<'a> {
    weights: &'a mut dyn Checkpoint,
    device: &'a Device,
    path: Path,
    error: Option<anyhow::Error>,
}

impl<'a> Load<'a> {
    pub fn new(weights: &'a mut dyn Checkpoint, device: &'a Device) -> Self {
        Self {
            weights,
            device,
            path: Path::default(),
            error: None,
        }
    }

    pub fn finish(self) -> Result<()> {
        self.error.map_or(Ok(()), Err)
    }

    fn read<const D: usize>(&mut self, shape: [usize; D]) -> Result<Tensor<D>> {
        let name = self.path.checkpoint_name();
        if !self.path.transposed() {
            let values = self.weights.read(&name, &shape)?;
            return Ok(tensor(values, shape, self.device));
        }
        let [d_in, d_out] = [shape[0], shape[1]];
        let stored = self.weights.read(&name, &[d_out, d_in])?;
        let mut values = vec![0.0f32; stored.len()];
        for o in 0..d_out {
            for i in 0..d_in {
                values[i * d_out + o] = stored[o * d_in + i];
            }
        }
        Ok(tensor(values, shape, self.device))
    }
}

impl ModuleMapper for Load<'_> {
    fn enter_module(&mut self, name: &str, container: &str) {
        self.path.enter(name, container);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return param;
        }
        match self.read(dims(&param)) {
            Ok(t) => Param::from_tensor(t),
            Err(e) => {
                self.error = Some(e);
                param
            }
        }
    }
}

/// Every weight under its checkpoint name, as stored.
#[derive(Default)]
pub(crate) struct Save {
    path: Path,
    pub tensors: Vec<(String, TensorData)>,
}

impl ModuleVisitor for Save {
    fn enter_module(&mut self, name: &str, container: &str) {
        self.path.enter(name, container);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let data = if self.path.transposed() {
            value.transpose().into_data()
        } else {
            value.into_data()
        };
        self.tensors.push((self.path.checkpoint_name(), data));
    }
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.r#gen::<f64>(); // in (0, 1]
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
