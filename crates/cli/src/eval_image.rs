//! `jielong eval image`: held-out likelihood per token, per image and in bits per dimension, and
//! optionally whether class-conditional samples look like the class asked for.

use anyhow::{Result, bail};
use jielong_core::{Codec, Score, score, windows};
use jielong_image::{DatasetOptions, DigitClassifier, ImageCodec, open_dataset_with, to_sequences};
use jielong_nn::{ModelFolder, Transformer};
use serde_json::{Value, json};

use crate::args::EvalArgs;

pub fn score_images(
    folder: &ModelFolder,
    model: &Transformer,
    a: &EvalArgs,
) -> Result<(Score, Value)> {
    let codec = ImageCodec::from_json(&folder.codec, &folder.dir)?;
    let size = Some((codec.width(), codec.height()));
    let dataset = open_dataset_with(&a.data, &DatasetOptions { size, index: None })?;
    // An MNIST folder's t10k files; otherwise the dataset's held-out split, or all of it.
    let images = if dataset.heldout.is_empty() {
        &dataset.train
    } else {
        &dataset.heldout
    };
    let conditional = !codec.classes().is_empty() && dataset.is_labelled();
    if conditional && dataset.classes != codec.classes() {
        bail!(
            "the dataset's classes ({}) are not the model's ({})",
            dataset.classes.join(", "),
            codec.classes().join(", ")
        );
    }
    let seqs = to_sequences(&codec, images, conditional)?;
    let mut ws = Vec::new();
    for s in &seqs.seqs {
        ws.extend(windows(s, 1, model.config.context_len)?);
    }
    let vocab = codec.vocab().clone();
    let total = score(model, &ws, &|t| vocab.is_content(t))?;
    let mut extra = json!({
        "images": images.len(),
        "nats_per_image": total.nats / images.len() as f64,
        "bits_per_dim": codec.bits_per_dim(total.nats, images.len()),
    });
    // What the tokenisation itself loses on these images (palettes, codebooks, grey levels):
    // the scores above are of the tokenised images.
    let lost = codec.reconstruction_error(images.iter().map(|l| &l.image))?;
    extra["reconstruction"] =
        json!({"mse": lost.mse, "psnr_db": lost.psnr.is_finite().then_some(lost.psnr)});
    if let Some(n) = a.check_classes {
        extra["class_check"] = check_classes(
            model,
            &codec,
            &dataset,
            n,
            crate::loaded::guidance(folder, a.guidance, true)?,
        )?;
    }
    Ok((total, extra))
}

/// Draws `n` images per class and classifies them with a 5-NN vote on binarised pixels.
fn check_classes(
    model: &Transformer,
    codec: &ImageCodec,
    dataset: &jielong_image::ImageDataset,
    n: usize,
    guidance: Option<f32>,
) -> Result<Value> {
    if codec.classes().is_empty() {
        bail!("--check-classes needs a class-conditional model");
    }
    let classifier = DigitClassifier::from_dataset(dataset)?;
    let (mut images, mut wanted) = (Vec::new(), Vec::new());
    for (c, name) in codec.classes().iter().enumerate() {
        eprintln!("drawing {n} images of class {name} ...");
        images.extend(crate::generate_image::draw(
            model,
            codec,
            Some(name),
            n,
            guidance,
            c as u64 * 1000,
            &[],
            &mut |_| {},
        )?);
        wanted.extend(std::iter::repeat_n(c, n));
    }
    let acc = classifier.evaluate(&images, &wanted)?;
    Ok(json!({
        "samples_per_class": n,
        "guidance": guidance,
        "recognised": acc.overall(),
        "per_class": acc.per_class.iter().map(|c| json!({"class": c.class, "correct": c.correct, "total": c.total})).collect::<Vec<_>>(),
    }))
}
