//! [`Model`]: the one decode type the CLI and the server use, whichever engine runs it.
//!
//! On the CPU (`--device flex`) a model folder is read straight into the kernels path
//! ([`FastModel`]): no burn module is built first, so an f32 checkpoint is never copied and a
//! quantized one never expanded. On a GPU (`--device wgpu`) it is burn's [`Transformer`], in
//! f32. Both implement [`Decoder`]; [`Model`] delegates, with a cache enum to match.

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use jielong_core::{Decoder, Feed, Logits, Positions};

use crate::config::TransformerConfig;
use crate::fast::{FastModel, KvSlot, Weights};
use crate::folder::ModelFolder;
use crate::model::{KvCache as BurnCache, Transformer};

/// How [`ModelFolder::load_model`] builds the decode model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// `flex` runs the kernels path; any other device runs burn.
    pub device: Device,
    /// The weight format of the kernels path. Burn runs f32: there only `F32` and `Stored`
    /// (de-quantized to f32) are accepted.
    pub weights: Weights,
    /// Threads of the kernels' pool; 0: one per core.
    pub threads: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::flex(),
            weights: Weights::Stored,
            threads: 0,
        }
    }
}

/// A decoder on the kernels (CPU) or on burn (GPU, or a model just trained).
pub enum Model {
    Kernels(FastModel),
    Burn(Transformer),
}

/// One sequence's cache, of the engine that made it.
#[derive(Clone, Debug)]
pub enum ModelCache {
    Kernels(jielong_kernels::KvCache),
    Burn(BurnCache),
}

impl KvSlot for ModelCache {
    fn kv(&self) -> Option<&jielong_kernels::KvCache> {
        match self {
            ModelCache::Kernels(c) => Some(c),
            ModelCache::Burn(_) => None,
        }
    }
    fn kv_mut(&mut self) -> Option<&mut jielong_kernels::KvCache> {
        match self {
            ModelCache::Kernels(c) => Some(c),
            ModelCache::Burn(_) => None,
        }
    }
}

const WRONG_CACHE: &str = "a cache of the other engine was given to this model";

impl Model {
    /// The decode model of `folder` (see [`LoadOptions`]).
    pub fn load(folder: &ModelFolder, options: LoadOptions) -> Result<Model> {
        let on_cpu = options.device == Device::flex();
        if !on_cpu {
            if !matches!(options.weights, Weights::F32 | Weights::Stored) {
                bail!(
                    "--weights {} needs --device flex (the GPU path runs f32 weights)",
                    options.weights
                );
            }
            return Ok(Model::Burn(folder.load(&options.device)?));
        }
        let threads = match options.threads {
            0 => jielong_core::cores(),
            n => n,
        };
        let checkpoint = folder.checkpoint()?;
        let model = FastModel::load(checkpoint, &folder.architecture, options.weights, threads)
            .with_context(|| format!("cannot load the model in {}", folder.dir.display()))?;
        Ok(Model::Kernels(model))
    }

    pub fn config(&self) -> &TransformerConfig {
        match self {
            Model::Kernels(m) => m.config(),
            Model::Burn(m) => &m.config,
        }
    }

    /// One line for the load message, e.g. "kernels, q8_0 weights, 2 threads; f32 kept for:
    /// layers.*.mlp.down_proj" or "burn on wgpu, f32 weights".
    pub fn describe(&self) -> String {
        match self {
            Model::Kernels(m) => m.describe(),
            Model::Burn(m) => format!("burn on {:?}, f32 weights", m.device()),
        }
    }

    pub fn is_kernels(&self) -> bool {
        matches!(self, Model::Kernels(_))
    }
}

impl From<FastModel> for Model {
    fn from(m: FastModel) -> Self {
        Model::Kernels(m)
    }
}

impl From<Transformer> for Model {
    fn from(m: Transformer) -> Self {
        Model::Burn(m)
    }
}

impl Decoder for Model {
    type Cache = ModelCache;

    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }

    fn context_len(&self) -> usize {
        self.config().context_len
    }

    fn new_cache(&self) -> ModelCache {
        match self {
            Model::Kernels(m) => ModelCache::Kernels(m.new_cache()),
            Model::Burn(m) => ModelCache::Burn(m.new_cache()),
        }
    }

    /// # Panics
    /// On a cache of the other engine (a caller's bug: caches come from `new_cache`).
    fn cache_len(&self, cache: &ModelCache) -> usize {
        match (self, cache) {
            (Model::Kernels(m), ModelCache::Kernels(c)) => m.cache_len(c),
            (Model::Burn(m), ModelCache::Burn(c)) => m.cache_len(c),
            _ => panic!("{WRONG_CACHE}"),
        }
    }

    /// # Panics
    /// On a cache of the other engine.
    fn truncate_cache(&self, cache: &mut ModelCache, len: usize) {
        match (self, cache) {
            (Model::Kernels(m), ModelCache::Kernels(c)) => m.truncate_cache(c, len),
            (Model::Burn(m), ModelCache::Burn(c)) => m.truncate_cache(c, len),
            _ => panic!("{WRONG_CACHE}"),
        }
    }

    fn forward(&self, feeds: &mut [Feed<'_, ModelCache>], positions: Positions) -> Result<Logits> {
        match self {
            // Straight through: no per-step list of inner feeds (a warm step allocates nothing).
            Model::Kernels(m) => m.run(feeds, positions),
            Model::Burn(m) => {
                let mut inner = feeds
                    .iter_mut()
                    .map(|f| match &mut *f.cache {
                        ModelCache::Burn(c) => Ok(Feed::new(f.ids, c)),
                        ModelCache::Kernels(_) => bail!("{WRONG_CACHE}"),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Decoder::forward(m, &mut inner, positions)
            }
        }
    }

    fn run_tasks(&self, n: usize, task: &(dyn Fn(usize) + Sync)) {
        match self {
            Model::Kernels(m) => m.run_tasks(n, task),
            Model::Burn(m) => m.run_tasks(n, task),
        }
    }
}
