//! Text corpora: a file read whole, split into a training part and a held-out tail.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// A corpus split at a character boundary: the first `1 - heldout` of its characters train,
/// the rest is held out (the published tiny-shakespeare split is `heldout = 0.1`).
pub struct TextCorpus {
    pub train: String,
    pub heldout: String,
}

pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    if text.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(text)
}

impl TextCorpus {
    pub fn split(text: String, heldout: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&heldout) {
            bail!("the held-out fraction must be in [0, 1) (got {heldout})");
        }
        let n = text.chars().count();
        let cut = (n as f64 * (1.0 - heldout)) as usize;
        let byte = text.char_indices().nth(cut).map_or(text.len(), |(i, _)| i);
        let (train, rest) = text.split_at(byte);
        if train.is_empty() {
            bail!("nothing left to train on after holding out {heldout}");
        }
        Ok(Self {
            train: train.to_string(),
            heldout: rest.to_string(),
        })
    }
}
