//! The architecture section of a model folder: everything needed to build the transformer.

use anyhow::{Context, Result, bail};
use burn::config::Config;

/// The longest context a configuration may declare: 2^20 positions, beyond the longest of the
/// open models (Qwen2.5-1M's 1,010,000). Both decode paths build rotary tables for the whole
/// context, so a corrupt or mistyped value would otherwise try to allocate gigabytes.
pub const MAX_CONTEXT: usize = 1 << 20;

/// Llama 3's rotary frequency rescaling for long contexts (`rope_scaling` with
/// `rope_type: "llama3"` in a Hugging Face config).
#[derive(Config, Debug, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// A decoder-only, pre-norm transformer of the Llama shape: RMSNorm, rotary positions, SwiGLU
/// MLP, grouped-query attention, optionally tied embeddings and attention biases.
#[derive(Config, Debug, PartialEq)]
pub struct TransformerConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// The longest sequence the model attends over.
    pub context_len: usize,
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    #[config(default = 1e-5)]
    pub rms_norm_eps: f64,
    /// The output layer reuses the token embedding matrix.
    #[config(default = false)]
    pub tie_embeddings: bool,
    /// The q, k and v projections have biases (Qwen2; Llama with `attention_bias`).
    #[config(default = false)]
    pub attention_bias: bool,
    /// The attention output projection has a bias too (Llama with `attention_bias`).
    #[config(default = false)]
    pub output_bias: bool,
    /// Every position's input also gets a second embedding of its sequence's first token (the
    /// class token of a conditional codec): WaveNet's global conditioning, so that the class
    /// reaches every position directly rather than only through attention to position 0. Not
    /// a Llama feature: such a model cannot be exported to GGUF or a Hugging Face folder.
    #[config(default = false)]
    pub first_token_condition: bool,
}

impl TransformerConfig {
    /// A small model: `hidden` wide, `layers` deep, `heads` heads of `hidden / heads`, MLP about
    /// 8/3 as wide (rounded to a multiple of 8), no grouping of key-value heads.
    pub fn small(
        vocab_size: usize,
        hidden: usize,
        layers: usize,
        heads: usize,
        context_len: usize,
    ) -> Self {
        let intermediate = (hidden * 8 / 3).div_ceil(8) * 8;
        Self::new(
            vocab_size,
            hidden,
            intermediate,
            layers,
            heads,
            heads,
            hidden / heads,
            context_len,
        )
    }

    /// Reads an architecture section; keys with defaults may be missing (older folders lack
    /// newer options), required ones may not.
    pub fn from_json(section: &serde_json::Value) -> Result<Self> {
        let required = |key: &str| -> Result<usize> {
            section
                .get(key)
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .with_context(|| format!("architecture: missing {key}"))
        };
        let base = Self::new(
            required("vocab_size")?,
            required("hidden_size")?,
            required("intermediate_size")?,
            required("num_layers")?,
            required("num_heads")?,
            required("num_kv_heads")?,
            required("head_dim")?,
            required("context_len")?,
        );
        let mut merged = serde_json::to_value(&base)?;
        let (Some(m), Some(given)) = (merged.as_object_mut(), section.as_object()) else {
            bail!("architecture: not a JSON object");
        };
        for (k, v) in given {
            if !m.contains_key(k) {
                bail!("architecture: unknown key {k:?}");
            }
            m.insert(k.clone(), v.clone());
        }
        let config: Self =
            serde_json::from_value(merged).context("architecture: a value has the wrong type")?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("context_len", self.context_len),
        ];
        for (name, value) in positive {
            if value == 0 {
                bail!("architecture: {name} must be positive");
            }
        }
        if self.context_len > MAX_CONTEXT {
            bail!(
                "architecture: context_len ({}) is beyond the {MAX_CONTEXT} positions this \
                 transformer supports (its rotary tables grow with the context)",
                self.context_len
            );
        }
        if self.num_heads % self.num_kv_heads != 0 {
            bail!(
                "architecture: num_heads ({}) must be a multiple of num_kv_heads ({})",
                self.num_heads,
                self.num_kv_heads
            );
        }
        if self.head_dim % 2 != 0 {
            bail!(
                "architecture: head_dim ({}) must be even for rotary positions",
                self.head_dim
            );
        }
        if !(self.rope_theta > 0.0 && self.rms_norm_eps > 0.0) {
            bail!("architecture: rope_theta and rms_norm_eps must be positive");
        }
        Ok(())
    }

    /// Fails for a model that Llama's architecture (GGUF, Hugging Face) cannot describe.
    pub fn ensure_llama(&self) -> Result<()> {
        if self.first_token_condition {
            bail!(
                "this model conditions every position on its first token (first_token_condition), \
                 which the Llama architecture of GGUF and Hugging Face files cannot express"
            );
        }
        Ok(())
    }

    /// Number of parameters, counted from the declared shapes (nothing is allocated).
    pub fn num_params(&self) -> usize {
        use burn::module::Module;
        crate::model::Transformer::skeleton(self, &burn::tensor::Device::flex())
            .map_or(0, |m| m.num_params())
    }
}
