//! Resumable checkpoints: the model, optimiser state and (with `ema_decay`) the moving average
//! of the weights in burnpack files (which keep the parameter ids the optimiser state is keyed
//! by), and `state.json` naming them.
//!
//! Files are written under new names first and `state.json` is replaced atomically last, so an
//! interruption at any moment leaves the previous checkpoint intact.

use std::path::Path;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use jielong_nn::{Transformer, TransformerConfig, burn};
use serde::{Deserialize, Serialize};

use crate::{Metrics, TrainConfig};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    pub step: usize,
    pub architecture: TransformerConfig,
    pub train: TrainConfig,
    pub metrics: Vec<Metrics>,
}

impl Checkpoint {
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("state.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("nothing to resume: cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))
    }

    fn files(step: usize) -> (String, String, String) {
        (
            format!("model-{step:08}.bpk"),
            format!("optimizer-{step:08}.bpk"),
            format!("average-{step:08}.bpk"),
        )
    }

    pub fn write(
        &self,
        dir: &Path,
        model: &Transformer,
        optim: &ModuleOptimizer,
        average: Option<&Transformer>,
    ) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let (model_file, optim_file, average_file) = Self::files(self.step);
        let save = |name: &str, f: &dyn Fn(&Path) -> Result<()>| -> Result<()> {
            let tmp = dir.join(format!("{name}.tmp"));
            f(&tmp)?;
            std::fs::rename(&tmp, dir.join(name)).with_context(|| format!("cannot write {name}"))
        };
        let save_weights = |name: &str, weights: &Transformer, what: &str| {
            save(name, &|p| {
                weights
                    .clone()
                    .save_file(p)
                    .map_err(|e| anyhow::anyhow!("cannot save {what}: {e:?}"))
            })
        };
        save_weights(&model_file, model, "the model")?;
        save(&optim_file, &|p| {
            optim
                .save(p)
                .map_err(|e| anyhow::anyhow!("cannot save the optimizer: {e:?}"))
        })?;
        if let Some(average) = average {
            save_weights(&average_file, average, "the weights' average")?;
        }
        jielong_core::write_atomic(
            &dir.join("state.json"),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?;
        // Older checkpoints are no longer referenced.
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".bpk") && ![&model_file, &optim_file, &average_file].contains(&&name)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Loads the saved weights, optimiser state and average into freshly built ones.
    pub fn restore(
        &self,
        dir: &Path,
        model: Transformer,
        optim: ModuleOptimizer,
        average: Option<Transformer>,
    ) -> Result<(Transformer, ModuleOptimizer, Option<Transformer>)> {
        let (model_file, optim_file, average_file) = Self::files(self.step);
        let load_weights = |weights: Transformer, name: &str| {
            weights
                .try_load_file(dir.join(name))
                .map_err(|e| anyhow::anyhow!("cannot load {name}: {e:?}"))
        };
        let model = load_weights(model, &model_file)?;
        let optim = optim
            .load(dir.join(&optim_file))
            .map_err(|e| anyhow::anyhow!("cannot load {optim_file}: {e:?}"))?;
        let average = average
            .map(|a| load_weights(a, &average_file))
            .transpose()?;
        Ok((model, optim, average))
    }
}
