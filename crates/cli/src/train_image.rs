//! Images for the trainer: a dataset, a tokenisation fitted to it, a start token per image.

use std::path::Path;

use anyhow::{Context, Result, bail};
use jielong_core::{Codec, windows};
use jielong_image::{DatasetOptions, ImageCodec, TokenSpec, open_dataset_with, to_sequences};
use jielong_nn::{ModelFolder, Transformer};
use serde_json::{Value, json};

use crate::train::{Prepared, RunFile};

/// The `codec` section of an image training config.
struct ImageChoice {
    tokens: TokenSpec,
    conditional: bool,
    size: Option<(u32, u32)>,
    seed: u64,
}

fn choice(codec: &Value) -> Result<ImageChoice> {
    let tokens = codec.get("tokens").and_then(Value::as_str).unwrap_or("binary").parse()?;
    let size = match codec.get("size") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let wh: Vec<u32> = serde_json::from_value(v.clone()).context("codec.size must be [width, height]")?;
            match wh.as_slice() {
                [w, h] if *w > 0 && *h > 0 => Some((*w, *h)),
                _ => bail!("codec.size must be [width, height] with positive numbers"),
            }
        }
    };
    Ok(ImageChoice {
        tokens,
        conditional: codec.get("conditional").and_then(Value::as_bool).unwrap_or(true),
        size,
        seed: codec.get("seed").and_then(Value::as_u64).unwrap_or(0),
    })
}

pub fn prepare(data: &Path, file: &RunFile, out: &Path, resume: bool) -> Result<Prepared> {
    let c = choice(&file.codec)?;
    let dataset = open_dataset_with(data, &DatasetOptions { size: c.size, index: None })?;
    let conditional = c.conditional && dataset.is_labelled();
    let codec = if resume {
        let folder = ModelFolder::open(out)?;
        ImageCodec::from_json(&folder.codec, out)?
    } else {
        eprintln!("fitting {} tokens to {} training images ...", c.tokens, dataset.train.len());
        c.tokens.fit(&dataset, conditional, c.seed)?
    };
    let per_image = codec.tokens_per_image();
    let context = file.model.context.unwrap_or(per_image + 1);
    if context < per_image + 1 {
        bail!("model.context ({context}) must hold a whole image: {} tokens and a start token", per_image);
    }
    let train = to_sequences(&codec, &dataset.train, conditional)?;
    let heldout_images = if dataset.heldout.is_empty() { &dataset.train } else { &dataset.heldout };
    let heldout_seqs = to_sequences(&codec, heldout_images, conditional)?;
    let mut heldout = Vec::new();
    for seq in &heldout_seqs.seqs {
        heldout.extend(windows(seq, 1, context)?);
    }
    let data_note = format!(
        "`{}`: {} training images, {} held out{}, {}x{} {}, tokenised as `{}` ({} tokens per image, {} content tokens){}.",
        data.display(),
        dataset.train.len(),
        dataset.heldout.len(),
        if dataset.heldout.is_empty() { " (none: the training images are scored)" } else { "" },
        codec.width(),
        codec.height(),
        if codec.channels() == 1 { "grey" } else { "colour" },
        c.tokens,
        per_image,
        codec.vocab().content_size,
        if conditional { format!(", conditioned on {} classes (label dropout 10%)", dataset.classes.len()) } else { String::new() },
    );
    let codec_json = codec.to_json();
    Ok(Prepared {
        vocab_size: codec.vocab().size(),
        context,
        codec_json,
        save_files: Box::new(move |dir| codec.save_files(dir)),
        train,
        heldout,
        data_note,
        data_json: json!({ "source": data.display().to_string(), "conditional": conditional, "tokens": c.tokens.to_string() }),
    })
}

/// A grid of samples (four per class, or sixteen unconditional) saved as `samples.png`.
pub fn sample(out: &Path, model: &Transformer) -> Result<String> {
    let folder = ModelFolder::open(out)?;
    let codec = ImageCodec::from_json(&folder.codec, out)?;
    let classes: Vec<Option<String>> =
        if codec.classes().is_empty() { vec![None] } else { codec.classes().iter().cloned().map(Some).collect() };
    let per = if classes.len() == 1 { 16 } else { 4 };
    let mut images = Vec::new();
    for class in &classes {
        images.extend(crate::generate_image::draw(model, &codec, class.as_deref(), per, 0, &[], &mut |_| {})?);
    }
    let grid = jielong_image::grid(&images, per.max(4), 3)?;
    jielong_image::save_png(&grid, &out.join("samples.png"))?;
    Ok(format!(
        "{} drawn at temperature 1, seed 0{}:\n\n![samples](samples.png)\n",
        if per == 16 { "Sixteen images".to_string() } else { format!("{per} images per class, one class per row") },
        if per == 16 { "" } else { " (rows in class order)" }
    ))
}
