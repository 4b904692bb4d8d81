//! `jielong eval`: held-out nats and bits per token, for every modality.

use anyhow::{Result, bail};
use jielong_core::{SamplerConfig, Score};
use serde_json::{Value, json};

use crate::args::{EvalArgs, Format, Modality, Part};
use crate::open;

pub fn run(a: EvalArgs) -> Result<()> {
    if a.part == Part::Heldout && a.modality != Modality::Text {
        bail!(
            "--part heldout is for text files; image and audio datasets carry their own held-out split"
        );
    }
    if a.modality != Modality::Image && (a.binarise.is_some() || a.binarise_seed.is_some()) {
        bail!("--binarise is for image models");
    }
    // Checked before any scoring: scoring a test set takes minutes.
    match a.check_classes {
        Some(_) if a.modality == Modality::Text => {
            bail!("--check-classes is for image and audio models")
        }
        Some(0) => bail!("--check-classes must be at least 1"),
        _ => {}
    }
    // The sampler's own check of --temperature, also before scoring.
    SamplerConfig {
        temperature: a.temperature.unwrap_or(1.0),
        ..SamplerConfig::default()
    }
    .validate()?;
    let (folder, model) = open::open_model(&a.model, a.modality, &a.device)?;
    let (score, extra) = match a.modality {
        Modality::Text => crate::eval_text::score_text(&folder, &model, &a)?,
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

/// A setting for a JSON report as it was written: 0.8, not the 0.800000011920929 that its f32
/// becomes as an f64.
pub fn as_written(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}
