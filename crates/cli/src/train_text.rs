//! Text for the trainer: a corpus file, split, tokenised by bytes, characters or BPE.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use jielong_core::{Codec, Flow, SamplerConfig, windows};
use jielong_nn::{ModelFolder, Transformer};
use jielong_text::{
    CompletionRequest, TextCodec, TextCorpus, TextModel, TextPrompt, complete, read_text,
    to_sequences, train_bpe,
};
use serde::Deserialize;
use serde_json::json;

use crate::open;
use crate::training::{Prepared, RunFile, section};

/// The `codec` section of a text training config.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CodecSpec {
    /// chars, bytes, bpe (trained on the training text) or tokenizer (an existing file).
    kind: String,
    /// Vocabulary size of a trained BPE.
    vocab_size: usize,
    /// The tokenizer.json of the `tokenizer` kind.
    file: Option<PathBuf>,
}

impl Default for CodecSpec {
    fn default() -> Self {
        Self {
            kind: "chars".into(),
            vocab_size: 1024,
            file: None,
        }
    }
}

/// The `data` section of a text training config.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DataSpec {
    /// The fraction of the text, at its end, held out.
    heldout: f64,
}

impl Default for DataSpec {
    fn default() -> Self {
        Self { heldout: 0.1 }
    }
}

pub fn prepare(
    data: &Path,
    file: &RunFile,
    out: &Path,
    resume: bool,
) -> Result<Prepared<TextCodec>> {
    let spec: CodecSpec = section(&file.codec, "codec")?;
    let heldout_fraction = section::<DataSpec>(&file.data, "data")?.heldout;
    let text = read_text(data)?;
    let corpus = TextCorpus::split(text.clone(), heldout_fraction)?;
    let codec = if resume {
        // The codec the run started with, not a re-derived one.
        open::text_codec(&ModelFolder::open(out)?)?
    } else {
        match spec.kind.as_str() {
            "chars" => TextCodec::chars_of(&text)?,
            "bytes" => TextCodec::bytes(),
            "bpe" => {
                eprintln!(
                    "training a byte-level BPE of {} tokens on the training text ...",
                    spec.vocab_size
                );
                TextCodec::tokenizer(
                    train_bpe(&corpus.train, spec.vocab_size)?,
                    "tokenizer.json",
                    None,
                    None,
                )
            }
            "tokenizer" => {
                let Some(path) = &spec.file else {
                    bail!("codec: a tokenizer codec needs \"file\": the path of a tokenizer.json");
                };
                TextCodec::tokenizer(
                    TextCodec::load_tokenizer(&file.path(path))?,
                    "tokenizer.json",
                    None,
                    None,
                )
            }
            other => bail!("codec: unknown text codec {other:?} (chars, bytes, bpe or tokenizer)"),
        }
    };
    let train = to_sequences(&codec, &corpus.train)?;
    let heldout_ids = codec.encode_text(&corpus.heldout)?;
    let context = file.model.context.unwrap_or(128);
    let heldout = if heldout_ids.len() >= 2 {
        windows(&heldout_ids, 0, context)?
    } else {
        Vec::new()
    };
    if heldout.is_empty() {
        bail!(
            "the held-out part of {} is too short to score: raise data.heldout",
            data.display()
        );
    }
    let sample_prompt: String = corpus.heldout.chars().take(40).collect();
    let data_note = format!(
        "`{}`: the first {:.0}% of its characters train ({} tokens), the last {:.0}% are held out ({} tokens). \
         Codec: {} ({} tokens).",
        data.display(),
        100.0 * (1.0 - heldout_fraction),
        train.content_tokens(),
        100.0 * heldout_fraction,
        heldout_ids.len(),
        codec.kind(),
        codec.vocab().size()
    );
    Ok(Prepared {
        codec,
        context,
        train,
        heldout,
        data_note,
        data_json: json!({ "heldout": heldout_fraction, "sample_prompt": sample_prompt }),
    })
}

/// A continuation of the start of the held-out text, for MODEL.md.
pub fn sample(_out: &Path, model: &Transformer, prepared: &Prepared<TextCodec>) -> Result<String> {
    let prompt = prepared.data_json["sample_prompt"]
        .as_str()
        .unwrap_or("The ")
        .to_string();
    let text_model = TextModel::new(prepared.codec.clone(), &[]);
    let request = CompletionRequest {
        sampler: SamplerConfig {
            temperature: 0.8,
            ..Default::default()
        },
        slide: true,
        ..CompletionRequest::new(TextPrompt::Text(prompt.clone()), 500)
    };
    let text = complete(model, &text_model, &request, &mut |_| Flow::Continue)?
        .remove(0)
        .text;
    Ok(format!(
        "Prompt (the start of the held-out text), then 500 tokens drawn at temperature 0.8, seed 0:\n\n```\n{prompt}{text}\n```"
    ))
}
