//! `jielong eval text`: nats per token on a text file, or on the held-out tail the model was
//! trained without.

use anyhow::{Result, bail};
use jielong_core::{Decoder, Score, score, windows};
use jielong_nn::ModelFolder;
use serde_json::Value;

use crate::args::{EvalArgs, Part};
use crate::open;

pub fn score_text(
    folder: &ModelFolder,
    model: &impl Decoder,
    a: &EvalArgs,
) -> Result<(Score, Value)> {
    let codec = open::text_codec(folder)?;
    let text = jielong_text::read_text(&a.data)?;
    let text = match a.part {
        Part::All => text,
        Part::Heldout => {
            let Some(fraction) = folder.raw["data"]["heldout"].as_f64() else {
                bail!(
                    "{} does not record a held-out fraction: use --part all",
                    a.model.display()
                );
            };
            jielong_text::TextCorpus::split(text, fraction)?.heldout
        }
    };
    let ids = codec.encode_text(&text)?;
    if ids.len() < 2 {
        bail!(
            "{} is too short to score: it needs at least two tokens",
            a.data.display()
        );
    }
    let ws = windows(&ids, 0, model.context_len())?;
    Ok((score(model, &ws, &|_| true)?, Value::Null))
}
