//! Introspection for checking jielong against other implementations: `jielong tokenize` and
//! `jielong logits`.

use anyhow::{Result, bail};
use jielong_core::{Decoder, Positions};
use jielong_nn::ModelFolder;
use jielong_text::TextCodec;
use serde_json::json;

use crate::args::{LogitsArgs, TokenizeArgs};
use crate::loaded;

pub fn tokenize(a: TokenizeArgs) -> Result<()> {
    let codec = if a.tokenizer.is_dir() {
        loaded::text_codec(&ModelFolder::open(&a.tokenizer)?)?
    } else {
        TextCodec::tokenizer(
            TextCodec::load_tokenizer(&a.tokenizer)?,
            "tokenizer.json",
            None,
            None,
        )
    };
    let print = |text: &str| -> Result<()> {
        println!("{}", serde_json::to_string(&codec.encode_text(text)?)?);
        Ok(())
    };
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
    let model = folder.load(&loaded::device(&a.device)?)?;
    if a.prompt_ids.is_empty() {
        bail!("--prompt-ids is empty");
    }
    let out = Decoder::forward(
        &model,
        &[a.prompt_ids.clone()],
        &mut model.new_cache(),
        Positions::All,
    )?;
    let rows: Vec<&[f32]> = (0..out.positions).map(|t| out.row(0, t)).collect();
    let text = serde_json::to_string(&json!({ "logits": rows }))?;
    jielong_core::write_atomic(&a.out, text.as_bytes())?;
    eprintln!(
        "wrote {} rows of {} logits to {}",
        out.positions,
        out.vocab,
        a.out.display()
    );
    Ok(())
}
