//! Opening a model for a command: the folder, checked against the modality the command needs,
//! its transformer, and its codec (a text model's with its end tokens and chat template).

use std::path::Path;

use anyhow::{Result, bail};
use jielong_core::{Codec, FolderCodec, InvalidSetting};
use jielong_nn::fast::Weights;
use jielong_nn::{FolderKind, LoadOptions, Model, ModelFolder, select_device};
use jielong_text::{ChatTemplate, GgufVocab, TextCodec, TextModel};

use crate::args::{LoadArgs, Modality};

/// Opens a folder and checks that it holds a model of the expected modality.
pub fn open_folder(dir: &Path, expected: Modality) -> Result<ModelFolder> {
    let folder = ModelFolder::open(dir)?;
    if folder.modality != expected.name() {
        let article = |m: &str| {
            if m.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            }
        };
        bail!(
            "{} is {} {} model, not {} {} model: use `jielong ... {}` with it",
            dir.display(),
            article(&folder.modality),
            folder.modality,
            article(expected.name()),
            expected.name(),
            folder.modality
        );
    }
    Ok(folder)
}

/// The folder and its decode model as the flags ask: the CPU kernels with the weight format
/// and threads asked for, or burn on a GPU. Says on stderr what runs it.
pub fn open_model(dir: &Path, expected: Modality, load: &LoadArgs) -> Result<(ModelFolder, Model)> {
    let folder = open_folder(dir, expected)?;
    let model = folder.load_model(load_options(load)?)?;
    eprintln!("[{}: {}]", dir.display(), model.describe());
    Ok((folder, model))
}

/// The most kernel threads `--threads` accepts.
const MAX_THREADS: usize = 1024;

/// The loader's options from the flags.
pub fn load_options(load: &LoadArgs) -> Result<LoadOptions> {
    match load.threads {
        Some(0) => return Err(InvalidSetting::new("threads", "must be at least 1").into()),
        // Every worker spins a while after each parallel region: thousands would only contend.
        Some(n) if n > MAX_THREADS => {
            return Err(InvalidSetting::new(
                "threads",
                format!(
                    "must be at most {MAX_THREADS} (this machine has {} cores)",
                    jielong_core::cores()
                ),
            )
            .into());
        }
        _ => {}
    }
    let weights: Weights = load
        .weights
        .parse()
        .map_err(|e: anyhow::Error| InvalidSetting::new("weights", format!("is wrong: {e}")))?;
    Ok(LoadOptions {
        device: select_device(&load.device)?,
        weights,
        threads: load.threads.unwrap_or(0),
    })
}

/// The codec of a native image or audio folder. Its vocabulary must be the model's: a codebook
/// or palette file from another model would otherwise decode the wrong tokens.
pub fn codec<C: FolderCodec>(folder: &ModelFolder) -> Result<C> {
    let codec = C::from_json(&folder.codec, &folder.dir)?;
    let size = codec.vocab().size();
    if size != folder.architecture.vocab_size {
        bail!(
            "{}: the codec has {size} tokens but the model's output layer has {}: the folder's \
             config.json, side files and weights do not belong together",
            folder.dir.display(),
            folder.architecture.vocab_size
        );
    }
    Ok(codec)
}

/// The text codec of a folder: a native codec section, or a Hugging Face folder's
/// `tokenizer.json` with its BOS/EOS ids.
pub fn text_codec(folder: &ModelFolder) -> Result<TextCodec> {
    let codec = match folder.kind {
        FolderKind::Native => TextCodec::from_json(&folder.codec, &folder.dir)?,
        FolderKind::HuggingFace => TextCodec::tokenizer(
            TextCodec::load_tokenizer(&folder.file("tokenizer.json"))?,
            "tokenizer.json",
            folder.hf_token_ids("bos_token_id").first().copied(),
            folder.hf_token_ids("eos_token_id").first().copied(),
        ),
        FolderKind::Gguf => TextCodec::from_gguf_vocab(&GgufVocab::open(&folder.dir)?)?,
    };
    let size = codec.vocab().size();
    if size > folder.architecture.vocab_size {
        bail!(
            "the codec has {size} tokens but the model's output layer only {}",
            folder.architecture.vocab_size
        );
    }
    Ok(codec)
}

/// A text folder's codec with the tokens that end a text (a Hugging Face folder's every EOS).
pub fn text_model(folder: &ModelFolder) -> Result<TextModel> {
    let eos = match folder.kind {
        // A GGUF file's EOS and end-of-turn ids are kept in the same place.
        FolderKind::HuggingFace | FolderKind::Gguf => folder.hf_token_ids("eos_token_id"),
        FolderKind::Native => Vec::new(),
    };
    Ok(TextModel::new(text_codec(folder)?, &eos))
}

/// The model's chat template (a GGUF file's `tokenizer.chat_template`, a folder's
/// `tokenizer_config.json`), or the built-in one.
pub fn chat_template(folder: &ModelFolder) -> Result<ChatTemplate> {
    match folder.kind {
        FolderKind::Gguf => Ok(GgufVocab::open(&folder.dir)?
            .chat_template()?
            .unwrap_or_else(ChatTemplate::builtin)),
        _ => ChatTemplate::from_folder(&folder.dir),
    }
}

/// The classifier-free guidance to draw a class with: the one asked for, else the model's
/// default (`config.json`: `"generation": {"guidance": G}`, set from its class check), else
/// none. Unconditional draws (`with_class` false) are never guided by default.
pub fn guidance(folder: &ModelFolder, asked: Option<f32>, with_class: bool) -> Result<Option<f32>> {
    if asked.is_some() || !with_class {
        return Ok(asked);
    }
    match folder.raw.pointer("/generation/guidance") {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(g) => {
                eprintln!(
                    "guidance {g} (the model's default; --guidance 1 draws from the plain model)"
                );
                Ok(Some(g as f32))
            }
            None => bail!(
                "{}: generation.guidance must be a number, not {v}",
                folder.dir.join("config.json").display()
            ),
        },
    }
}

/// The temperature to draw with: the one asked for, else the model's default (`config.json`:
/// `"generation": {"temperature": T}`, chosen by its class check), else 1.
pub fn temperature(folder: &ModelFolder, asked: Option<f32>) -> Result<f32> {
    if let Some(t) = asked {
        return Ok(t);
    }
    match default_temperature(folder)? {
        Some(t) => {
            eprintln!(
                "temperature {t} (the model's default; --temperature 1 draws from the plain distribution)"
            );
            Ok(t)
        }
        None => Ok(1.0),
    }
}

/// The model's own default temperature, if its config.json names one.
pub fn default_temperature(folder: &ModelFolder) -> Result<Option<f32>> {
    let Some(v) = folder.raw.pointer("/generation/temperature") else {
        return Ok(None);
    };
    match v.as_f64() {
        Some(t) if t > 0.0 && t.is_finite() => Ok(Some(t as f32)),
        _ => bail!(
            "{}: generation.temperature must be a positive number, not {v}",
            folder.dir.join("config.json").display()
        ),
    }
}
