//! Opening a model folder for a modality: the transformer from the architecture section, the
//! codec from the codec section.

use std::path::Path;

use anyhow::{Context, Result, bail};
use jielong_core::{SamplerConfig, Vocab};
use jielong_nn::burn::tensor::Device;
use jielong_nn::{FolderKind, ModelFolder, Transformer, select_device};
use jielong_text::TextCodec;
use serde_json::Value;

use crate::args::{DeviceArgs, Modality, SamplingArgs};

pub fn device(args: &DeviceArgs) -> Result<Device> {
    select_device(&args.device)
}

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

pub fn open_model(
    dir: &Path,
    expected: Modality,
    device: &DeviceArgs,
) -> Result<(ModelFolder, Transformer)> {
    let folder = open_folder(dir, expected)?;
    let model = folder.load(&self::device(device)?)?;
    Ok((folder, model))
}

/// The text codec of a folder: a native codec section, or a Hugging Face folder's
/// `tokenizer.json` with its BOS/EOS ids.
pub fn text_codec(folder: &ModelFolder) -> Result<TextCodec> {
    let codec = match folder.kind {
        FolderKind::Native => TextCodec::from_json(&folder.codec, &folder.dir)?,
        FolderKind::HuggingFace => {
            let tokenizer = TextCodec::load_tokenizer(&folder.file("tokenizer.json"))?;
            let (bos, eos) = (
                hf_ids(folder, "bos_token_id").first().copied(),
                hf_ids(folder, "eos_token_id").first().copied(),
            );
            TextCodec::tokenizer(tokenizer, "tokenizer.json", bos, eos)
        }
    };
    if codec_vocab(&codec).size() > folder.architecture.vocab_size {
        bail!(
            "the codec has {} tokens but the model's output layer only {}",
            codec_vocab(&codec).size(),
            folder.architecture.vocab_size
        );
    }
    Ok(codec)
}

fn codec_vocab(codec: &TextCodec) -> &Vocab {
    jielong_core::Codec::vocab(codec)
}

/// Token ids named `key` in `generation_config.json` (preferred) or `config.json`; either file
/// may hold one id or a list.
pub fn hf_ids(folder: &ModelFolder, key: &str) -> Vec<u32> {
    let from = |v: &Value| -> Vec<u32> {
        match &v[key] {
            Value::Number(n) => n.as_u64().map(|i| vec![i as u32]).unwrap_or_default(),
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_u64().map(|i| i as u32))
                .collect(),
            _ => Vec::new(),
        }
    };
    let generation = std::fs::read_to_string(folder.file("generation_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .map(|v| from(&v))
        .unwrap_or_default();
    if generation.is_empty() {
        from(&folder.raw)
    } else {
        generation
    }
}

/// The tokens that end a text: the codec's END and, for Hugging Face folders, every EOS id.
pub fn text_end_ids(folder: &ModelFolder, codec: &TextCodec) -> Vec<u32> {
    let mut ends: Vec<u32> = codec_vocab(codec).end.into_iter().collect();
    if folder.kind == FolderKind::HuggingFace {
        ends.extend(hf_ids(folder, "eos_token_id"));
    }
    ends.sort_unstable();
    ends.dedup();
    ends
}

/// Tokens a text model must never draw: BOS, PAD, conditioning tokens, and a tokenizer's
/// unknown and padding tokens; never one that ends the text.
pub fn text_banned(codec: &TextCodec, ends: &[u32]) -> Vec<u32> {
    let mut banned = codec_vocab(codec).never_drawn();
    if let TextCodec::Tokenizer { tokenizer, .. } = codec {
        banned.extend(
            ["<unk>", "<pad>", "[UNK]", "[PAD]", "<|pad|>"]
                .iter()
                .filter_map(|t| tokenizer.token_to_id(t)),
        );
    }
    banned.retain(|id| !ends.contains(id));
    banned.sort_unstable();
    banned.dedup();
    banned
}

pub fn sampler_config(s: &SamplingArgs) -> Result<SamplerConfig> {
    let config = SamplerConfig {
        greedy: s.greedy,
        temperature: s.temperature,
        top_k: s.top_k,
        top_p: s.top_p,
        min_p: s.min_p,
        repetition_penalty: s.repetition_penalty,
    };
    config.validate()?;
    if s.show_probs == Some(0) {
        bail!("--show-probs must be at least 1");
    }
    Ok(config)
}

/// Reads a JSON file with a clear error.
pub fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
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
