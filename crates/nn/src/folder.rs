//! Model folders: a native jielong folder or a Hugging Face one, read through the same path.
//!
//! A native folder's `config.json` has an `architecture` section (read here) and a `codec`
//! section (handed to the modality crate by the caller); a Hugging Face folder's `config.json`
//! is translated into the same [`TransformerConfig`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
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
        let mut weights = Weights::open_dir(&self.dir)?;
        Transformer::load(&self.architecture, &mut weights, device)
            .with_context(|| format!("cannot load the model in {}", self.dir.display()))
    }

    /// Path of a file in the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
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

/// Translates a Hugging Face `config.json` (Llama, Mistral, Qwen2) into the architecture.
pub fn from_hf_config(c: &Value) -> Result<TransformerConfig> {
    let arch = c["architectures"]
        .get(0)
        .and_then(Value::as_str)
        .unwrap_or_default();
    let supported = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];
    if !supported.contains(&arch) {
        bail!(
            "unsupported architecture {arch:?}: jielong loads {}",
            supported.join(", ")
        );
    }
    let int = |key: &str| -> Result<usize> {
        c[key]
            .as_u64()
            .map(|v| v as usize)
            .with_context(|| format!("config.json has no integer {key}"))
    };
    let act = c["hidden_act"].as_str().unwrap_or("silu");
    if act != "silu" {
        bail!("unsupported hidden_act {act:?}: only silu (SwiGLU) is supported");
    }
    if c["mlp_bias"].as_bool() == Some(true) {
        bail!("unsupported mlp_bias = true");
    }
    let hidden = int("hidden_size")?;
    let heads = int("num_attention_heads")?;
    let head_dim = c["head_dim"]
        .as_u64()
        .map(|v| v as usize)
        .unwrap_or(hidden / heads);
    let mut context = int("max_position_embeddings")?;
    // Mistral-style sliding-window attention equals full attention within the window.
    if let Some(w) = c["sliding_window"]
        .as_u64()
        .filter(|_| c["use_sliding_window"].as_bool() != Some(false))
    {
        context = context.min(w as usize);
    }
    let rope_scaling = match &c["rope_scaling"] {
        Value::Null => None,
        s => {
            let kind = s["rope_type"]
                .as_str()
                .or(s["type"].as_str())
                .unwrap_or_default();
            if kind != "llama3" {
                bail!("unsupported rope_scaling type {kind:?}: only llama3 is supported");
            }
            let f = |key: &str| {
                s[key]
                    .as_f64()
                    .with_context(|| format!("rope_scaling has no {key}"))
            };
            Some(Llama3RopeScaling {
                factor: f("factor")?,
                low_freq_factor: f("low_freq_factor")?,
                high_freq_factor: f("high_freq_factor")?,
                original_max_position_embeddings: f("original_max_position_embeddings")? as usize,
            })
        }
    };
    let config = TransformerConfig {
        vocab_size: int("vocab_size")?,
        hidden_size: hidden,
        intermediate_size: int("intermediate_size")?,
        num_layers: int("num_hidden_layers")?,
        num_heads: heads,
        num_kv_heads: c["num_key_value_heads"]
            .as_u64()
            .map(|v| v as usize)
            .unwrap_or(heads),
        head_dim,
        context_len: context,
        rope_theta: c["rope_theta"].as_f64().unwrap_or(10000.0),
        rope_scaling,
        rms_norm_eps: c["rms_norm_eps"].as_f64().unwrap_or(1e-6),
        tie_embeddings: c["tie_word_embeddings"].as_bool().unwrap_or(false),
        // Qwen2 always has q/k/v biases (and none on o_proj); Llama's `attention_bias` puts
        // biases on all four projections.
        attention_bias: arch == "Qwen2ForCausalLM"
            || c["attention_bias"].as_bool().unwrap_or(false),
        output_bias: arch != "Qwen2ForCausalLM" && c["attention_bias"].as_bool().unwrap_or(false),
    };
    config.validate()?;
    Ok(config)
}

/// A Hugging Face `config.json` for the architecture (Llama format, whose `attention_bias`
/// covers all four attention projections or none).
pub fn to_hf_config(a: &TransformerConfig, bos: Option<u32>, eos: Option<u32>) -> Result<Value> {
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
