//! Introspection for checking jielong against other implementations: `jielong tokenize` and
//! `jielong logits`.

use anyhow::{Result, bail};
use jielong_core::{Decoder, Feed, Positions};
use jielong_nn::ModelFolder;
use jielong_text::{GgufVocab, TextCodec, encode_like_llama_cpp};
use serde_json::json;

use crate::args::{LogitsArgs, TokenizeArgs};
use crate::open;

pub fn tokenize(a: TokenizeArgs) -> Result<()> {
    if jielong_nn::gguf::is_gguf_path(&a.tokenizer) {
        return tokenize_gguf(&a);
    }
    let codec = if a.tokenizer.is_dir() {
        open::text_codec(&ModelFolder::open(&a.tokenizer)?)?
    } else {
        TextCodec::tokenizer(
            TextCodec::load_tokenizer(&a.tokenizer)?,
            "tokenizer.json",
            None,
            None,
        )
    };
    for_each_text(&a, &mut |text| {
        println!("{}", serde_json::to_string(&codec.encode_text(text)?)?);
        Ok(())
    })
}

/// A GGUF file's tokenizer as llama.cpp runs it on text: no BOS added, special tokens written in
/// the text (`<|im_start|>`) parsed as themselves.
fn tokenize_gguf(a: &TokenizeArgs) -> Result<()> {
    let tokenizer = GgufVocab::open(&a.tokenizer)?.tokenizer()?;
    for_each_text(a, &mut |text| {
        let ids = encode_like_llama_cpp(&tokenizer, text, true)?;
        println!("{}", serde_json::to_string(&ids)?);
        Ok(())
    })
}

/// Runs `print` on the `--text`, the `--file`, or each `--split` piece of the file.
fn for_each_text(a: &TokenizeArgs, print: &mut dyn FnMut(&str) -> Result<()>) -> Result<()> {
    match (&a.text, &a.file) {
        (Some(text), _) => print(text),
        (None, Some(path)) => {
            let text = jielong_text::read_text(path)?;
            match &a.split {
                Some(sep) if sep.is_empty() => bail!("--split needs a non-empty separator"),
                Some(sep) => text.split(sep.as_str()).try_for_each(print),
                None => print(&text),
            }
        }
        (None, None) => bail!("give --text TEXT or --file FILE"),
    }
}

pub fn logits(a: LogitsArgs) -> Result<()> {
    let folder = ModelFolder::open(&a.model)?;
    let model = folder.load_model(open::load_options(&a.device)?)?;
    if a.prompt_ids.is_empty() {
        bail!("--prompt-ids is empty");
    }
    let mut cache = model.new_cache();
    let out = Decoder::forward(
        &model,
        &mut [Feed::new(&a.prompt_ids, &mut cache)],
        Positions::All,
    )?;
    let rows: Vec<&[f32]> = (0..out.rows(0)).map(|t| out.row(0, t)).collect();
    let text = serde_json::to_string(&json!({ "logits": rows }))?;
    jielong_core::write_atomic(&a.out, text.as_bytes())?;
    eprintln!(
        "wrote {} rows of {} logits to {}",
        rows.len(),
        out.vocab,
        a.out.display()
    );
    Ok(())
}
