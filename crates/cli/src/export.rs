//! `jielong export`: a text model (native folder, Hugging Face folder or GGUF file) as a
//! Llama-format Hugging Face folder (`--to hf`, f32) or as one GGUF file (`--to gguf`), so
//! other tools (transformers, llama.cpp) run the weights jielong trained or loaded.

use std::path::Path;

use anyhow::{Context, Result, bail};
use jielong_core::{Codec, InvalidSetting};
use jielong_gguf::GgmlType;
use jielong_nn::gguf::{hf_config, save_hf_weights};
use jielong_nn::{FolderKind, ModelFolder, write_gguf};
use jielong_text::{TextCodec, gguf_vocab_metadata};
use serde_json::json;

use crate::args::{ExportArgs, ExportFormat, Modality};
use crate::open;

pub fn run(a: ExportArgs) -> Result<()> {
    let folder = ModelFolder::open(&a.model)?;
    if folder.modality != Modality::Text.name() {
        bail!(
            "{} is an {} model: only text models can be exported, since llama.cpp and \
             transformers have no use for jielong's {} tokens",
            a.model.display(),
            folder.modality,
            folder.modality
        );
    }
    if a.out.canonicalize().ok() == a.model.canonicalize().ok() {
        bail!("export to another path than the model's");
    }
    let codec = open::text_codec(&folder)?;
    let template = open::chat_template(&folder)?;
    match a.to {
        ExportFormat::Gguf => {
            let ty = weight_type(&a.weights)?;
            let vocabulary =
                gguf_vocab_metadata(&codec, folder.architecture.vocab_size, template.source())?;
            write_gguf(
                &a.out,
                &folder.architecture,
                &mut *folder.checkpoint()?,
                &vocabulary,
                ty,
            )?;
            eprintln!(
                "wrote {} ({} matrices) to {}",
                a.model.display(),
                ty,
                a.out.display()
            );
        }
        ExportFormat::Hf => {
            if a.weights != "f32" {
                return Err(InvalidSetting::new(
                    "weights",
                    "a Hugging Face folder is written as f32",
                )
                .into());
            }
            if folder.kind == FolderKind::HuggingFace {
                bail!("{} is already a Hugging Face folder", a.model.display());
            }
            write_hf(&folder, &codec, template.source(), &a.out)?;
            eprintln!(
                "wrote a Llama-format Hugging Face folder to {}",
                a.out.display()
            );
        }
    }
    Ok(())
}

/// The `--weights` of a GGUF export.
fn weight_type(name: &str) -> Result<GgmlType> {
    Ok(match name {
        "f32" => GgmlType::F32,
        "f16" => GgmlType::F16,
        "bf16" => GgmlType::BF16,
        "q8_0" => GgmlType::Q8_0,
        "q4_0" => GgmlType::Q4_0,
        "q4_1" => GgmlType::Q4_1,
        _ => {
            return Err(InvalidSetting::new(
                "weights",
                format!("is {name}: a GGUF file is written as f32, f16, bf16, q8_0, q4_0 or q4_1"),
            )
            .into());
        }
    })
}

/// config.json, generation_config.json, model.safetensors (de-quantized), tokenizer.json and,
/// with a chat template, tokenizer_config.json; then the folder is opened again as a check.
fn write_hf(
    folder: &ModelFolder,
    codec: &TextCodec,
    chat_template: Option<&str>,
    out: &Path,
) -> Result<()> {
    let vocab = codec.vocab();
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    save_hf_weights(
        &out.join("model.safetensors"),
        &folder.architecture,
        &mut *folder.checkpoint()?,
    )?;
    let write_json = |name: &str, value: &serde_json::Value| {
        jielong_core::write_atomic(
            &out.join(name),
            serde_json::to_string_pretty(value)?.as_bytes(),
        )
    };
    write_json(
        "config.json",
        &hf_config(&folder.architecture, vocab.bos, vocab.end)?,
    )?;
    write_json(
        "generation_config.json",
        &json!({ "bos_token_id": vocab.bos, "eos_token_id": vocab.end }),
    )?;
    let tokenizer = codec.to_hf_tokenizer()?;
    let token_text = |id: Option<u32>| id.and_then(|id| tokenizer.id_to_token(id));
    if let Some(source) = chat_template {
        write_json(
            "tokenizer_config.json",
            &json!({
                "chat_template": source,
                "bos_token": token_text(vocab.bos),
                "eos_token": token_text(vocab.end),
            }),
        )?;
    }
    let text = tokenizer
        .to_string(true)
        .map_err(|e| anyhow::anyhow!("cannot write the tokenizer: {e}"))?;
    jielong_core::write_atomic(&out.join("tokenizer.json"), text.as_bytes())?;
    ModelFolder::open(out).context("the exported folder does not read back")?;
    Ok(())
}
