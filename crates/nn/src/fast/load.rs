//! Building a [`FastModel`]: every matrix in the format it will be run in, read once.
//!
//! A matrix already stored in the format asked for is used where it lies: a slice of the
//! checkpoint's memory map (f32 safetensors are `[out, in]` rows already, and GGUF blocks are
//! the kernels' blocks), so loading an f32 or a quantized file copies nothing and the page cache
//! holds the only copy. Anything else is converted once, tensor by tensor, through a temporary
//! f32 copy of that one tensor: the model owns only what conversion produced. Vectors (norm
//! gains, biases) are small and always copied to f32.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use anyhow::{Context, Result};
use jielong_kernels::quant::quantize_row;
use jielong_kernels::{Aligned, MatRef, Pool, WeightType};

use super::forward::Scratch;
use super::{FastModel, Weights};
use crate::config::TransformerConfig;
use crate::model::{Transformer, llama3_scale};
use crate::weights::{Checkpoint, RawTensor};

/// Where a matrix's bytes are.
enum Data {
    /// Converted at load: owned by the model, on cache lines (see [`Aligned`]).
    Owned(Aligned<u8>),
    /// A slice of the checkpoint's memory map, which the model keeps alive (`_source`).
    Mapped { ptr: *const u8, len: usize },
}

/// A weight matrix `[rows = out][cols = in]` in one of the kernels' formats.
pub(super) struct Mat {
    ty: WeightType,
    rows: usize,
    cols: usize,
    data: Data,
}

// SAFETY: `Mapped` points into a read-only memory map owned by the same `FastModel` (its
// `_source`), which outlives every `Mat` and is never written.
unsafe impl Send for Mat {}
unsafe impl Sync for Mat {}

impl Mat {
    fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Owned(b) => b,
            // SAFETY: see the `Send` impl: the map is alive and unchanged while `self` is.
            Data::Mapped { ptr, len } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }

    /// The kernels' view (its length was checked when the matrix was built).
    pub(super) fn get(&self) -> MatRef<'_> {
        MatRef::new(self.ty, self.rows, self.cols, self.bytes()).expect("checked at load")
    }

    fn owned_bytes(&self) -> usize {
        match &self.data {
            Data::Owned(b) => b.len(),
            Data::Mapped { .. } => 0,
        }
    }

    fn dequantized(&self) -> Vec<f32> {
        jielong_kernels::dequantize(self.ty, self.bytes(), self.cols).expect("checked at load")
    }
}

/// One block's weights: matrices for the kernels, gains and biases as f32.
pub(super) struct Layer {
    pub attn_norm: Vec<f32>,
    pub q: Mat,
    pub k: Mat,
    pub v: Mat,
    pub o: Mat,
    pub q_bias: Option<Vec<f32>>,
    pub k_bias: Option<Vec<f32>>,
    pub v_bias: Option<Vec<f32>>,
    pub o_bias: Option<Vec<f32>>,
    pub mlp_norm: Vec<f32>,
    pub gate: Mat,
    pub up: Mat,
    pub down: Mat,
}

/// Reads tensors from a checkpoint into the format asked for.
struct Loader<'c> {
    ckpt: &'c mut dyn Checkpoint,
    choice: Weights,
    /// The checkpoint will outlive the model: keep its bytes in place.
    borrow: bool,
    kept_f32: Vec<String>,
}

impl Loader<'_> {
    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        self.ckpt.read(name, &[len])
    }

    fn bias(&mut self, present: bool, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        present.then(|| self.vector(name, len)).transpose()
    }

    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<Mat> {
        let raw: RawTensor<'_> = self.ckpt.tensor(name, &[rows, cols])?;
        let stored = jielong_gguf::weight_type(raw.ty);
        let mut ty = self
            .choice
            .weight_type()
            .or(stored)
            .unwrap_or(WeightType::F32);
        if ty.bytes_per_row(cols).is_err() {
            // e.g. down_proj of a 688-wide MLP: rows are not whole blocks of 32.
            self.kept_f32.push(name.to_string());
            ty = WeightType::F32;
        }
        let data = if stored == Some(ty) {
            match raw.data {
                Cow::Borrowed(b) if self.borrow => Data::Mapped {
                    ptr: b.as_ptr(),
                    len: b.len(),
                },
                data => Data::Owned(Aligned::from_slice(&data)),
            }
        } else {
            // Converted row by row straight into the model's buffer (no second copy of the
            // tensor at load).
            let values = raw.to_f32();
            anyhow::ensure!(
                values.len() == rows * cols,
                "tensor {name} holds {} values, not {rows}x{cols}",
                values.len()
            );
            let row_bytes = ty
                .bytes_per_row(cols)
                .with_context(|| format!("cannot convert {name}"))?;
            let mut bytes = Aligned::zeroed(rows * row_bytes);
            if cols > 0 {
                for (row, out) in values
                    .chunks_exact(cols)
                    .zip(bytes.chunks_exact_mut(row_bytes))
                {
                    quantize_row(ty, row, out);
                }
            }
            Data::Owned(bytes)
        };
        let mat = Mat {
            ty,
            rows,
            cols,
            data,
        };
        MatRef::new(ty, rows, cols, mat.bytes())
            .with_context(|| format!("tensor {name} is not a {rows}x{cols} {ty} matrix"))?;
        Ok(mat)
    }
}

impl FastModel {
    /// The model of `config` with the weights of `checkpoint` in the format `weights`, on a pool
    /// of `threads` threads. Matrices already in the format asked for are used in place (no
    /// copy of an f32 or quantized file); the checkpoint is then kept as long as the model.
    pub fn load(
        checkpoint: Box<dyn Checkpoint + Send + Sync>,
        config: &TransformerConfig,
        weights: Weights,
        threads: usize,
    ) -> Result<Self> {
        let mut checkpoint = checkpoint;
        let mut model = Self::build(&mut *checkpoint, true, config, weights, threads)?;
        // Kept only when something lies in its map: otherwise unmapping it releases the pages
        // conversion read.
        if model.mapped_bytes() > 0 {
            model._source = Some(checkpoint);
        }
        Ok(model)
    }

    /// As [`FastModel::load`] from a checkpoint that is not kept: everything is copied.
    pub fn from_checkpoint(
        checkpoint: &mut dyn Checkpoint,
        config: &TransformerConfig,
        weights: Weights,
        threads: usize,
    ) -> Result<Self> {
        Self::build(checkpoint, false, config, weights, threads)
    }

    /// The weights of a burn model in memory (after training; for samples and checks).
    pub fn from_transformer(model: &Transformer, weights: Weights, threads: usize) -> Result<Self> {
        let mut tensors = InMemory::default();
        for (name, data) in model.named_tensors() {
            let shape = data.shape().to_vec();
            let values = data
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("cannot read {name}: {e:?}"))?;
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.map.insert(name, (shape, bytes));
        }
        Self::build(&mut tensors, false, &model.config, weights, threads)
    }

    fn build(
        ckpt: &mut dyn Checkpoint,
        borrow: bool,
        config: &TransformerConfig,
        weights: Weights,
        threads: usize,
    ) -> Result<Self> {
        config.validate()?;
        let c = config;
        let (h, q, kv, i, v) = (
            c.hidden_size,
            c.num_heads * c.head_dim,
            c.num_kv_heads * c.head_dim,
            c.intermediate_size,
            c.vocab_size,
        );
        let mut ld = Loader {
            ckpt,
            choice: weights,
            borrow,
            kept_f32: Vec::new(),
        };
        let embed = ld.matrix("model.embed_tokens.weight", v, h)?;
        let condition = c
            .first_token_condition
            .then(|| ld.matrix("model.condition_embed.weight", v, h))
            .transpose()?;
        let layers = (0..c.num_layers)
            .map(|l| {
                let p = format!("model.layers.{l}");
                let attn = |w: &str| format!("{p}.self_attn.{w}");
                Ok(Layer {
                    attn_norm: ld.vector(&format!("{p}.input_layernorm.weight"), h)?,
                    q: ld.matrix(&attn("q_proj.weight"), q, h)?,
                    k: ld.matrix(&attn("k_proj.weight"), kv, h)?,
                    v: ld.matrix(&attn("v_proj.weight"), kv, h)?,
                    o: ld.matrix(&attn("o_proj.weight"), h, q)?,
                    q_bias: ld.bias(c.attention_bias, &attn("q_proj.bias"), q)?,
                    k_bias: ld.bias(c.attention_bias, &attn("k_proj.bias"), kv)?,
                    v_bias: ld.bias(c.attention_bias, &attn("v_proj.bias"), kv)?,
                    o_bias: ld.bias(c.output_bias, &attn("o_proj.bias"), h)?,
                    mlp_norm: ld.vector(&format!("{p}.post_attention_layernorm.weight"), h)?,
                    gate: ld.matrix(&format!("{p}.mlp.gate_proj.weight"), i, h)?,
                    up: ld.matrix(&format!("{p}.mlp.up_proj.weight"), i, h)?,
                    down: ld.matrix(&format!("{p}.mlp.down_proj.weight"), h, i)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = ld.vector("model.norm.weight", h)?;
        let head = (!c.tie_embeddings)
            .then(|| ld.matrix("lm_head.weight", v, h))
            .transpose()?;
        let kept_f32 = std::mem::take(&mut ld.kept_f32);
        ld.ckpt.finish()?;
        let (cos, sin) = rope_tables(c);
        Ok(FastModel {
            config: c.clone(),
            embed,
            condition,
            layers,
            norm,
            head,
            cos,
            sin,
            eps: c.rms_norm_eps as f32,
            pool: Pool::try_new(threads.max(1))
                .with_context(|| format!("starting {} kernel threads", threads.max(1)))?,
            kept_f32,
            scratch: Mutex::new(Scratch::default()),
            _source: None,
        })
    }

    pub fn config(&self) -> &TransformerConfig {
        &self.config
    }

    /// Threads of the pool (the caller's included).
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Checkpoint names of the matrices kept in f32 because their rows are not whole blocks of
    /// the format asked for.
    pub fn kept_f32(&self) -> &[String] {
        &self.kept_f32
    }

    fn mats(&self) -> impl Iterator<Item = &Mat> {
        let layers = self
            .layers
            .iter()
            .flat_map(|l| [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down]);
        std::iter::once(&self.embed)
            .chain(&self.condition)
            .chain(layers)
            .chain(&self.head)
    }

    /// Bytes of weights the model owns (converted at load; the rest lies in the checkpoint's
    /// memory map), vectors and rotary tables included.
    pub fn owned_bytes(&self) -> usize {
        let vectors: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.q_bias, &l.k_bias, &l.v_bias, &l.o_bias]
                    .iter()
                    .map(|b| b.as_ref().map_or(0, Vec::len))
                    .sum::<usize>()
                    + l.attn_norm.len()
                    + l.mlp_norm.len()
            })
            .sum();
        self.mats().map(Mat::owned_bytes).sum::<usize>()
            + 4 * (vectors + self.norm.len() + self.cos.len() + self.sin.len())
    }

    /// Bytes of all weight matrices as run (owned or mapped).
    pub fn matrix_bytes(&self) -> usize {
        self.mats().map(|m| m.bytes().len()).sum()
    }

    /// Bytes of the matrices used in place in the checkpoint's memory map.
    pub fn mapped_bytes(&self) -> usize {
        self.matrix_bytes() - self.mats().map(Mat::owned_bytes).sum::<usize>()
    }

    /// One line for the load message: "kernels, q8_0 weights, 2 threads; f32 kept for:
    /// layers.*.mlp.down_proj".
    pub fn describe(&self) -> String {
        let mut types: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.mats() {
            *types.entry(m.ty.name()).or_default() += 1;
        }
        let formats = if types.len() == 1 {
            types.keys().next().copied().unwrap_or_default().to_string()
        } else {
            let parts: Vec<String> = types.iter().map(|(t, n)| format!("{t} x{n}")).collect();
            parts.join(", ")
        };
        let mut line = format!("kernels, {formats} weights, {} threads", self.threads());
        if !self.kept_f32.is_empty() {
            // One entry per tensor role: layers.*.mlp.down_proj for every layer's down_proj.
            let mut seen = BTreeSet::new();
            let roles: Vec<String> = self
                .kept_f32
                .iter()
                .map(|n| role(n))
                .filter(|r| seen.insert(r.clone()))
                .collect();
            line += &format!("; f32 kept for: {}", roles.join(", "));
        }
        line
    }

    /// Every weight as the kernels compute with it (de-quantized), under its checkpoint name
    /// with its PyTorch shape: a reference model built from these has exactly these weights.
    pub fn dequantized_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mat = |name: String, m: &Mat| (name, vec![m.rows, m.cols], m.dequantized());
        let vector = |name: String, v: &[f32]| (name, vec![v.len()], v.to_vec());
        let mut out = vec![mat("model.embed_tokens.weight".into(), &self.embed)];
        if let Some(m) = &self.condition {
            out.push(mat("model.condition_embed.weight".into(), m));
        }
        for (l, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            out.push(vector(
                format!("{p}.input_layernorm.weight"),
                &layer.attn_norm,
            ));
            for (w, m, b) in [
                ("q_proj", &layer.q, &layer.q_bias),
                ("k_proj", &layer.k, &layer.k_bias),
                ("v_proj", &layer.v, &layer.v_bias),
                ("o_proj", &layer.o, &layer.o_bias),
            ] {
                out.push(mat(format!("{p}.self_attn.{w}.weight"), m));
                if let Some(b) = b {
                    out.push(vector(format!("{p}.self_attn.{w}.bias"), b));
                }
            }
            out.push(vector(
                format!("{p}.post_attention_layernorm.weight"),
                &layer.mlp_norm,
            ));
            for (w, m) in [
                ("gate_proj", &layer.gate),
                ("up_proj", &layer.up),
                ("down_proj", &layer.down),
            ] {
                out.push(mat(format!("{p}.mlp.{w}.weight"), m));
            }
        }
        out.push(vector("model.norm.weight".into(), &self.norm));
        if let Some(head) = &self.head {
            out.push(mat("lm_head.weight".into(), head));
        }
        out
    }
}

/// `model.layers.3.mlp.down_proj.weight` -> `layers.*.mlp.down_proj`.
fn role(name: &str) -> String {
    let name = name.strip_prefix("model.").unwrap_or(name);
    let name = name.strip_suffix(".weight").unwrap_or(name);
    match name.strip_prefix("layers.") {
        Some(rest) => format!("layers.*.{}", rest.split_once('.').map_or(rest, |(_, r)| r)),
        None => name.to_string(),
    }
}

/// cos and sin of `position * inv_freq` for every position of the context, `[context][hd/2]`,
/// computed as the burn model and Hugging Face do (frequencies rounded to f32 before the
/// product, Llama 3 scaling applied to the frequencies), so both paths rotate by the same
/// angles.
fn rope_tables(c: &TransformerConfig) -> (Vec<f32>, Vec<f32>) {
    let inv_freq: Vec<f32> = (0..c.head_dim / 2)
        .map(|j| {
            let freq = 1.0 / c.rope_theta.powf(2.0 * j as f64 / c.head_dim as f64);
            c.rope_scaling
                .as_ref()
                .map_or(freq, |s| llama3_scale(freq, s)) as f32
        })
        .collect();
    let n = c.context_len * inv_freq.len();
    let (mut cos, mut sin) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for pos in 0..c.context_len {
        for f in &inv_freq {
            let angle = (pos as f32 * f) as f64;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (cos, sin)
}

/// A burn model's tensors as a checkpoint (f32, `[out, in]`).
#[derive(Default)]
struct InMemory {
    map: BTreeMap<String, (Vec<usize>, Vec<u8>)>,
}

impl Checkpoint for InMemory {
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<RawTensor<'_>> {
        let (stored, bytes) = self
            .map
            .get(name)
            .with_context(|| format!("the model has no tensor {name}"))?;
        anyhow::ensure!(
            stored == shape,
            "tensor {name} has shape {stored:?}, expected {shape:?}"
        );
        Ok(RawTensor {
            name: name.to_string(),
            shape: shape.to_vec(),
            ty: jielong_gguf::GgmlType::F32,
            data: Cow::Borrowed(bytes),
        })
    }

    fn finish(&self) -> Result<()> {
        Ok(())
    }
}
