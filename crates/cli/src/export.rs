//! `jielong export --to hf`: a native text model as a Llama-format Hugging Face folder
//! (config.json, model.safetensors, tokenizer.json), so other tools can load what jielong trained.

use anyhow::{Context, Result, bail};
use jielong_core::Codec;
use jielong_nn::folder::to_hf_config;
use jielong_nn::{FolderKind, ModelFolder};
use serde_json::json;

use crate::args::{ExportArgs, ExportFormat, Modality};
use crate::open;

pub fn run(a: ExportArgs) -> Result<()> {
    let ExportFormat::Hf = a.to;
    let folder = open::open_folder(&a.model, Modality::Text)?;
    if folder.kind == FolderKind::HuggingFace {
        bail!("{} is already a Hugging Face folder", a.model.display());
    }
    if a.out.canonicalize().ok() == a.model.canonicalize().ok() {
        bail!("export into another folder than the model's");
    }
    let codec = open::text_codec(&folder)?;
    let vocab = codec.vocab();
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;

    // The weights already carry Llama's names and layout.
    let weights = std::fs::read(folder.file("model.safetensors"))
        .with_context(|| format!("cannot read the weights of {}", a.model.display()))?;
    jielong_core::write_atomic(&a.out.join("model.safetensors"), &weights)?;
    let config = to_hf_config(&folder.architecture, vocab.bos, vocab.end)?;
    jielong_core::write_atomic(
        &a.out.join("config.json"),
        serde_json::to_string_pretty(&config)?.as_bytes(),
    )?;
    let generation = json!({ "bos_token_id": vocab.bos, "eos_token_id": vocab.end });
    jielong_core::write_atomic(
        &a.out.join("generation_config.json"),
        serde_json::to_string_pretty(&generation)?.as_bytes(),
    )?;
    let tokenizer = codec
        .to_hf_tokenizer()?
        .to_string(true)
        .map_err(|e| anyhow::anyhow!("cannot write the tokenizer: {e}"))?;
    jielong_core::write_atomic(&a.out.join("tokenizer.json"), tokenizer.as_bytes())?;
    ModelFolder::open(&a.out).context("the exported folder does not read back")?;
    eprintln!(
        "wrote a Llama-format Hugging Face folder to {}",
        a.out.display()
    );
    Ok(())
}
