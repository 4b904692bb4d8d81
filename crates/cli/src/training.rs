//! What every modality's training shares: the `--config` file and what a modality hands the
//! trainer.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use jielong_core::{Sequences, Window};
use jielong_nn::TransformerConfig;
use jielong_train::TrainConfig;
use serde::Deserialize;
use serde_json::Value;

/// The `model` section of a `--config` file: the shape of the transformer.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    /// Key-value heads (grouped-query attention); defaults to `heads`.
    pub kv_heads: Option<usize>,
    /// MLP width; defaults to about 8/3 of `hidden`.
    pub intermediate: Option<usize>,
    /// Longest sequence attended over; each modality has a default (an image model's is one
    /// image plus its start token).
    pub context: Option<usize>,
    pub tie_embeddings: bool,
    pub rope_theta: f64,
    /// Add the embedding of each window's first token (a conditional codec's class) at every
    /// position (`TransformerConfig::first_token_condition`).
    pub first_token_condition: bool,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            hidden: 192,
            layers: 4,
            heads: 6,
            kv_heads: None,
            intermediate: None,
            context: None,
            tie_embeddings: false,
            rope_theta: 10000.0,
            first_token_condition: false,
        }
    }
}

impl ModelSpec {
    pub fn architecture(&self, vocab_size: usize, context: usize) -> Result<TransformerConfig> {
        if self.heads == 0 || self.hidden % self.heads != 0 {
            bail!(
                "model: hidden ({}) must be a multiple of heads ({})",
                self.hidden,
                self.heads
            );
        }
        let mut a =
            TransformerConfig::small(vocab_size, self.hidden, self.layers, self.heads, context)
                .with_tie_embeddings(self.tie_embeddings)
                .with_rope_theta(self.rope_theta)
                .with_first_token_condition(self.first_token_condition);
        a.num_kv_heads = self.kv_heads.unwrap_or(self.heads);
        if let Some(i) = self.intermediate {
            a.intermediate_size = i;
        }
        a.validate()?;
        Ok(a)
    }
}

/// A whole `--config` file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunFile {
    pub model: ModelSpec,
    pub train: TrainConfig,
    /// Modality-specific codec choices (e.g. `{"kind": "chars"}` or `{"kind": "bpe", "vocab_size": 1024}`).
    pub codec: Value,
    /// Modality-specific data choices (e.g. `{"heldout": 0.1}`).
    pub data: Value,
    /// The folder of the config file: relative paths inside it are relative to this.
    #[serde(skip)]
    pub base: PathBuf,
}

impl RunFile {
    /// A path written in the config file, relative to the file's folder.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }
}

/// Reads a modality's `codec` or `data` section into its typed form: unknown keys are errors,
/// missing keys take their defaults.
pub fn section<T: serde::de::DeserializeOwned + Default>(value: &Value, name: &str) -> Result<T> {
    match value {
        Value::Null => Ok(T::default()),
        v => serde_json::from_value(v.clone())
            .with_context(|| format!("bad {name} section in the config")),
    }
}

/// What a modality hands the trainer.
pub struct Prepared<C> {
    /// The codec the run trains with (fitted to the data, or the run's own on resume).
    pub codec: C,
    /// The model's context (the config's, or the modality's default).
    pub context: usize,
    pub train: Sequences,
    pub heldout: Vec<Window>,
    /// A line for MODEL.md describing the data and split.
    pub data_note: String,
    /// Extra settings recorded in config.json's "data" section (e.g. the held-out fraction).
    pub data_json: Value,
}
