//! `jielong eval`: held-out nats and bits per token, for every modality.

use anyhow::{Result, bail};
use jielong_core::{Score, score, windows};
use serde_json::{Value, json};

use crate::args::{EvalArgs, Format, Modality, Part};
use crate::loaded;

pub fn run(a: EvalArgs) -> Result<()> {
    if a.part == Part::Heldout && a.modality != Modality::Text {
        bail!(
            "--part heldout is for text files; image and audio datasets carry their own held-out split"
        );
    }
    // Checked before any scoring: scoring a test set takes minutes.
    match a.check_classes {
        Some(_) if a.modality == Modality::Text => {
            bail!("--check-classes is for image and audio models")
        }
        Some(0) => bail!("--check-classes must be at least 1"),
        _ => {}
    }
    let (folder, model) = loaded::open_model(&a.model, a.modality, &a.device)?;
    let (score, extra) = match a.modality {
        Modality::Text => {
            let codec = loaded::text_codec(&folder)?;
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
            let ws = windows(&ids, 0, model.config.context_len)?;
            (score(&model, &ws, &|_| true)?, Value::Null)
        }
        Modality::Image => crate::eval_image::score_images(&folder, &model, &a)?,
        Modality::Audio => crate::eval_audio::score_clips(&folder, &model, &a)?,
    };
    print(&score, extra, a.format);
    Ok(())
}

fn print(s: &Score, extra: Value, format: Format) {
    let mut obj = json!({
        "tokens": s.tokens,
        "nats_per_token": s.nats_per_token(),
        "bits_per_token": s.bits_per_token(),
    });
    if let (Some(o), Value::Object(e)) = (obj.as_object_mut(), extra) {
        o.extend(e);
    }
    match format {
        Format::Json => println!("{obj}"),
        Format::Text => {
            for (k, v) in obj.as_object().expect("an object") {
                println!("{k:>16}: {v}");
            }
        }
    }
}
