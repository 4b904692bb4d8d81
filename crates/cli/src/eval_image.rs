//! `jielong eval image`: held-out likelihood per token, per image and in bits per dimension, and
//! optionally whether class-conditional samples look like the class asked for.

use anyhow::{Result, bail};
use jielong_core::{Codec, Decoder, Score, score, windows};
use jielong_image::{
    Binarise, DatasetOptions, DigitClassifier, DrawRequest, ImageCodec, LabelledImage, MnistSplits,
    draw_images, open_dataset_with, to_sequences,
};
use jielong_nn::ModelFolder;
use serde_json::{Value, json};

use crate::args::{BinariseArg, EvalArgs};
use crate::open;

pub fn score_images(
    folder: &ModelFolder,
    model: &impl Decoder,
    a: &EvalArgs,
) -> Result<(Score, Value)> {
    let codec: ImageCodec = open::codec(folder)?;
    let size = Some((codec.width(), codec.height()));
    // An MNIST folder needs only its t10k files (its training files, when there, are the
    // references of --check-classes).
    let options = DatasetOptions {
        size,
        index: None,
        mnist: MnistSplits::Test,
    };
    let dataset = open_dataset_with(&a.data, &options)?;
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
    let binarise = match (a.binarise, a.binarise_seed) {
        (None, Some(_)) => bail!("--binarise-seed goes with --binarise stochastic"),
        (Some(BinariseArg::Threshold), Some(_)) => {
            bail!("--binarise-seed goes with --binarise stochastic, not threshold")
        }
        (None, None) => None,
        (Some(BinariseArg::Threshold), None) => Some(Binarise::Threshold),
        (Some(BinariseArg::Stochastic), seed) => Some(Binarise::Stochastic {
            seed: seed.unwrap_or(0),
        }),
    };
    let binarised: Vec<LabelledImage>;
    let images = match binarise {
        None => images,
        Some(b) => {
            binarised = images
                .iter()
                .enumerate()
                .map(|(i, l)| LabelledImage {
                    image: b.apply(&l.image, i as u64),
                    label: l.label,
                })
                .collect();
            &binarised
        }
    };
    // The literature's -log p(x) has no label: each image is scored after the unconditional
    // token the label dropout trained; with labels, the class token's score is reported too.
    let unconditional = score_sequences(model, &codec, images, false)?;
    let n = images.len() as f64;
    let mut extra = json!({
        "images": images.len(),
        "nats_per_image": unconditional.nats / n,
        "bits_per_dim": codec.bits_per_dim(unconditional.nats, images.len()),
        "binarise": match binarise {
            None => json!("none (the codec's own tokenisation)"),
            Some(Binarise::Threshold) => json!("threshold (intensity >= 128)"),
            Some(Binarise::Stochastic { seed }) => json!(format!("stochastic, seed {seed}")),
        },
    });
    if conditional {
        let given = score_sequences(model, &codec, images, true)?;
        extra["nats_per_image_given_label"] = json!(given.nats / n);
        extra["bits_per_dim_given_label"] = json!(codec.bits_per_dim(given.nats, images.len()));
        extra["nats_per_image_from"] = json!("the unconditional token, which label dropout trains");
    }
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
            open::guidance(folder, a.guidance, true)?,
        )?;
    }
    Ok((unconditional, extra))
}

/// The held-out score of `images`, each after its class token (`conditional`) or after the
/// unconditional one.
fn score_sequences(
    model: &impl Decoder,
    codec: &ImageCodec,
    images: &[LabelledImage],
    conditional: bool,
) -> Result<Score> {
    let seqs = to_sequences(codec, images, conditional)?;
    let mut ws = Vec::new();
    for s in &seqs.seqs {
        ws.extend(windows(s, 1, model.context_len())?);
    }
    let vocab = codec.vocab();
    score(model, &ws, &|t| vocab.is_content(t))
}

/// Draws `n` images per class and classifies them with a 5-NN vote on binarised pixels.
fn check_classes(
    model: &impl Decoder,
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
        let request = DrawRequest {
            guidance,
            seed: c as u64 * 1000,
            ..DrawRequest::new(Some(name), n)
        };
        images.extend(draw_images(model, codec, &request)?);
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
