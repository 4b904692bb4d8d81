//! Model folders: a native jielong folder or a Hugging Face one, read through the same path.
//!
//! A native folder's `config.json` has an `architecture` section (read here) and a `codec`
//! section (handed to the modality crate by the caller); a Hugging Face folder's `config.json`
//! is translated into the same [`TransformerConfig`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{Llama3RopeScaling, TransformerConfig};
use crate::model::Transformer;
use crate::weights::{Weights, save_safetensors};

/// Version of the native folder layout, stored as `"jielong"` in `config.json`.
pub const FORMAT_VERSION: u64 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FolderKind {
    Native,
    HuggingFace,
    /// A GGUF file (llama.cpp's format; `dir` is the file): see [`crate::gguf`].
    Gguf,
}

#[derive(Clone, Debug)]
pub struct ModelFolder {
    pub dir: PathBuf,
    pub kind: FolderKind,
    /// `text`, `image` or `audio` (Hugging Face folders are text).
    pub modality: String,
    pub architecture: TransformerConfig,
    /// The codec section, for the modality crate.
    pub codec: Value,
    /// The whole `config.json`, for sections other crates own (training notes, HF extras).
    pub raw: Value,
}

impl ModelFolder {
    pub fn open(dir: &Path) -> Result<Self> {
        if crate::gguf::is_gguf_path(dir) {
            return crate::gguf::open_gguf_model(dir);
        }
        if !dir.is_dir() {
            bail!("model folder {} does not exist", dir.display());
        }
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is not a model folder: cannot read {}",
                dir.display(),
                path.display()
            )
        })?;
        let raw: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        if raw.get("jielong").is_some() {
            let architecture = TransformerConfig::from_json(&raw["architecture"])
                .with_context(|| format!("{}", path.display()))?;
            let modality = raw["modality"]
                .as_str()
                .context("config.json has no modality")?
                .to_string();
            Ok(Self {
                dir: dir.to_path_buf(),
                kind: FolderKind::Native,
                modality,
                architecture,
                codec: raw["codec"].clone(),
                raw,
            })
        } else if raw.get("architectures").is_some() || raw.get("model_type").is_some() {
            let architecture =
                from_hf_config(&raw).with_context(|| format!("{}", path.display()))?;
            Ok(Self {
                dir: dir.to_path_buf(),
                kind: FolderKind::HuggingFace,
                modality: "text".into(),
                architecture,
                codec: json!({ "kind": "hf" }),
                raw,
            })
        } else {
            bail!(
                "{} is neither a jielong nor a Hugging Face config",
                path.display()
            )
        }
    }

    /// Loads the weights into the transformer on `device`.
    pub fn load(&self, device: &Device) -> Result<Transformer> {
        if self.kind == FolderKind::Gguf {
            return crate::gguf::load_gguf(&self.dir, device);
        }
        let mut weights = Weights::open_dir(&self.dir)?;
        Transformer::load(&self.architecture, &mut weights, device)
            .with_context(|| format!("cannot load the model in {}", self.dir.display()))
    }

    /// The folder's weights by Hugging Face name, memory-mapped (the one place that says where
    /// a folder's tensors come from; the decode model keeps it and borrows its bytes).
    pub fn checkpoint(&self) -> Result<Box<dyn crate::weights::Checkpoint + Send + Sync>> {
        Ok(match self.kind {
            FolderKind::Gguf => Box::new(crate::gguf::GgufCheckpoint::open(&self.dir)?),
            FolderKind::Native | FolderKind::HuggingFace => Box::new(Weights::open_dir(&self.dir)?),
        })
    }

    /// The decode model: the kernels path on the CPU, burn on a GPU (see [`crate::Model`]).
    pub fn load_model(&self, options: crate::LoadOptions) -> Result<crate::Model> {
        crate::Model::load(self, options)
    }

    /// Path of a file in the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Token ids named `key` (`bos_token_id`, `eos_token_id`) in a Hugging Face folder's
    /// `generation_config.json` (preferred) or `config.json`; either may hold one id or a list.
    pub fn hf_token_ids(&self, key: &str) -> Vec<u32> {
        let ids = |v: &Value| -> Vec<u32> {
            serde_json::from_value::<Option<TokenIds>>(v[key].clone())
                .ok()
                .flatten()
                .map_or_else(Vec::new, |t| t.ids())
        };
        let generation = std::fs::read_to_string(self.file("generation_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|v| ids(&v))
            .unwrap_or_default();
        if generation.is_empty() {
            ids(&self.raw)
        } else {
            generation
        }
    }
}

/// Writes a native folder: `config.json` (with `extra` sections merged in) and
/// `model.safetensors`. Both writes are atomic.
pub fn save_native(
    dir: &Path,
    modality: &str,
    model: &Transformer,
    codec: &Value,
    extra: &Value,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    save_weights(&dir.join("model.safetensors"), model)?;
    let mut config = json!({
        "jielong": FORMAT_VERSION,
        "modality": modality,
        "architecture": serde_json::from_str::<Value>(&model.config.to_string())?,
        "codec": codec,
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    jielong_core::write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&config)?.as_bytes(),
    )
}

/// Writes the weights under their checkpoint names as f32 safetensors.
pub fn save_weights(path: &Path, model: &Transformer) -> Result<()> {
    let tensors = model
        .named_tensors()
        .into_iter()
        .map(|(name, data)| {
            let shape = data.shape().to_vec();
            let values = data
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("cannot read {name}: {e:?}"))?;
            Ok((name, shape, values))
        })
        .collect::<Result<Vec<_>>>()?;
    save_safetensors(path, &tensors)
}

/// A Hugging Face `config.json` of the Llama family, as far as jielong reads it.
#[derive(Debug, Deserialize)]
pub struct HfConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub max_position_embeddings: usize,
    pub sliding_window: Option<usize>,
    pub use_sliding_window: Option<bool>,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    pub rope_scaling: Option<HfRopeScaling>,
    #[serde(default = "default_hf_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    pub hidden_act: Option<String>,
    pub bos_token_id: Option<TokenIds>,
    pub eos_token_id: Option<TokenIds>,
}

/// `rope_scaling`: jielong reads Llama 3's kind.
#[derive(Debug, Deserialize)]
pub struct HfRopeScaling {
    pub rope_type: Option<String>,
    /// Older configs name the kind `type`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub factor: Option<f64>,
    pub low_freq_factor: Option<f64>,
    pub high_freq_factor: Option<f64>,
    pub original_max_position_embeddings: Option<usize>,
}

/// A token id field that holds one id or a list (`eos_token_id` of Llama 3 is a list).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn ids(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

fn default_rope_theta() -> f64 {
    10000.0
}

fn default_hf_eps() -> f64 {
    1e-6
}

const SUPPORTED: [&str; 3] = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];

impl HfConfig {
    pub fn from_json(c: &Value) -> Result<Self> {
        serde_json::from_value(c.clone()).context("not a Llama-family config.json")
    }

    /// The architecture this config describes (Llama, Mistral or Qwen2).
    pub fn architecture(&self) -> Result<TransformerConfig> {
        let arch = self.architectures.first().map_or("", String::as_str);
        if !SUPPORTED.contains(&arch) {
            bail!(
                "unsupported architecture {arch:?}: jielong loads {}",
                SUPPORTED.join(", ")
            );
        }
        let act = self.hidden_act.as_deref().unwrap_or("silu");
        if act != "silu" {
            bail!("unsupported hidden_act {act:?}: only silu (SwiGLU) is supported");
        }
        if self.mlp_bias {
            bail!("unsupported mlp_bias = true");
        }
        // Mistral-style sliding-window attention equals full attention within the window.
        let context = match self.sliding_window {
            Some(w) if self.use_sliding_window != Some(false) => {
                self.max_position_embeddings.min(w)
            }
            _ => self.max_position_embeddings,
        };
        let rope_scaling = match &self.rope_scaling {
            None => None,
            Some(s) => {
                let kind = s
                    .rope_type
                    .as_deref()
                    .or(s.kind.as_deref())
                    .unwrap_or_default();
                if kind != "llama3" {
                    bail!("unsupported rope_scaling type {kind:?}: only llama3 is supported");
                }
                let need = |v: Option<f64>, key: &str| {
                    v.with_context(|| format!("rope_scaling has no {key}"))
                };
                Some(Llama3RopeScaling {
                    factor: need(s.factor, "factor")?,
                    low_freq_factor: need(s.low_freq_factor, "low_freq_factor")?,
                    high_freq_factor: need(s.high_freq_factor, "high_freq_factor")?,
                    original_max_position_embeddings: s
                        .original_max_position_embeddings
                        .context("rope_scaling has no original_max_position_embeddings")?,
                })
            }
        };
        let qwen2 = arch == "Qwen2ForCausalLM";
        let config = TransformerConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self
                .head_dim
                .unwrap_or(self.hidden_size / self.num_attention_heads.max(1)),
            context_len: context,
            rope_theta: self.rope_theta,
            rope_scaling,
            rms_norm_eps: self.rms_norm_eps,
            tie_embeddings: self.tie_word_embeddings,
            // Qwen2 always has q/k/v biases (and none on o_proj); Llama's `attention_bias` puts
            // biases on all four projections.
            attention_bias: qwen2 || self.attention_bias,
            output_bias: !qwen2 && self.attention_bias,
            first_token_condition: false,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Translates a Hugging Face `config.json` (Llama, Mistral, Qwen2) into the architecture.
pub fn from_hf_config(c: &Value) -> Result<TransformerConfig> {
    HfConfig::from_json(c)?.architecture()
}

/// A Hugging Face `config.json` for the architecture (Llama format, whose `attention_bias`
/// covers all four attention projections or none).
pub fn to_hf_config(a: &TransformerConfig, bos: Option<u32>, eos: Option<u32>) -> Result<Value> {
    a.ensure_llama()?;
    if a.attention_bias != a.output_bias {
        bail!(
            "a model with biases on some attention projections only cannot be written as a Llama config"
        );
    }
    let rope_scaling = a.rope_scaling.as_ref().map(|s| {
        json!({
            "rope_type": "llama3",
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings,
        })
    });
    Ok(json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": a.vocab_size,
        "hidden_size": a.hidden_size,
        "intermediate_size": a.intermediate_size,
        "num_hidden_layers": a.num_layers,
        "num_attention_heads": a.num_heads,
        "num_key_value_heads": a.num_kv_heads,
        "head_dim": a.head_dim,
        "max_position_embeddings": a.context_len,
        "rope_theta": a.rope_theta,
        "rope_scaling": rope_scaling,
        "rms_norm_eps": a.rms_norm_eps,
        "tie_word_embeddings": a.tie_embeddings,
        "attention_bias": a.attention_bias,
        "mlp_bias": false,
        "hidden_act": "silu",
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    }))
}
