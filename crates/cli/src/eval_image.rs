//! `jielong eval image`: held-out likelihood per token, per image and in bits per dimension, and
//! optionally whether class-conditional samples look like the class asked for.

use anyhow::{Result, bail};
use jielong_core::{Codec, Decoder, Score, score_each, windows};
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
    // The literature's -log p(x) has no label. A class-conditional model's own p(x) sums the
    // class out, p(x) = 1/K sum_c p(x | c): exact (K forward passes per image), and never looser
    // than -log p(x | true class) + ln K. The unconditional token that label dropout trains is
    // reported beside it, and the label-conditioned score when the set has labels.
    let n = images.len() as f64;
    // Encoded once, after the unconditional token; each class's pass swaps that first token.
    let plain = to_sequences(&codec, images, false)?.seqs;
    let mut unconditional = Score::default();
    for s in score_each_image(model, &codec, &plain)? {
        unconditional += s;
    }
    let mut extra = json!({
        "images": images.len(),
        "binarise": match binarise {
            None => json!("none (the codec's own tokenisation)"),
            Some(Binarise::Threshold) => json!("threshold (intensity >= 128)"),
            Some(Binarise::Stochastic { seed }) => json!(format!("stochastic, seed {seed}")),
        },
    });
    let main = if codec.classes().is_empty() {
        unconditional
    } else {
        let per_class = score_under_each_class(model, &codec, &plain)?;
        if conditional {
            let given = images
                .iter()
                .enumerate()
                .map(|(i, l)| per_class[l.label.expect("a labelled set")][i].nats);
            let given: f64 = given.sum();
            extra["nats_per_image_given_label"] = json!(given / n);
            extra["bits_per_dim_given_label"] = json!(codec.bits_per_dim(given, images.len()));
        }
        extra["nats_per_image_unconditional_token"] = json!(unconditional.nats / n);
        extra["nats_per_image_from"] = json!(format!(
            "the {} classes summed out, each with prior 1/{}",
            per_class.len(),
            per_class.len()
        ));
        class_mixture(&per_class)
    };
    extra["nats_per_image"] = json!(main.nats / n);
    extra["bits_per_dim"] = json!(codec.bits_per_dim(main.nats, images.len()));
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
            open::temperature(folder, a.temperature)?,
        )?;
    }
    Ok((main, extra))
}

/// Each sequence's score (a start or class token, then one image's tokens), in order.
fn score_each_image(
    model: &impl Decoder,
    codec: &ImageCodec,
    seqs: &[Vec<u32>],
) -> Result<Vec<Score>> {
    let (mut ws, mut owner) = (Vec::new(), Vec::new());
    for (i, s) in seqs.iter().enumerate() {
        let w = windows(s, 1, model.context_len())?;
        owner.extend(std::iter::repeat_n(i, w.len()));
        ws.extend(w);
    }
    let vocab = codec.vocab();
    let mut per_image = vec![Score::default(); seqs.len()];
    for (s, i) in score_each(model, &ws, &|t| vocab.is_content(t))?
        .into_iter()
        .zip(owner)
    {
        per_image[i] += s;
    }
    Ok(per_image)
}

/// `[class][image]`: each image scored after each class token in turn (`plain`: the images'
/// sequences after the unconditional token, whose first token is swapped for the class's).
fn score_under_each_class(
    model: &impl Decoder,
    codec: &ImageCodec,
    plain: &[Vec<u32>],
) -> Result<Vec<Vec<Score>>> {
    let first_class = codec.vocab().first_class;
    let mut out = Vec::new();
    for (c, name) in codec.classes().iter().enumerate() {
        eprintln!("scoring {} images as class {name} ...", plain.len());
        let as_c: Vec<Vec<u32>> = plain
            .iter()
            .map(|s| {
                let mut s = s.clone();
                s[0] = first_class + c as u32;
                s
            })
            .collect();
        out.push(score_each_image(model, codec, &as_c)?);
    }
    Ok(out)
}

/// The score of a uniform mixture over classes, `-ln(1/K sum_c exp(-nats_c))` per image,
/// summed: `per_class[class][image]`.
fn class_mixture(per_class: &[Vec<Score>]) -> Score {
    let k = per_class.len() as f64;
    let mut total = Score::default();
    for i in 0..per_class[0].len() {
        let best = per_class
            .iter()
            .map(|s| s[i].nats)
            .fold(f64::INFINITY, f64::min);
        let sum: f64 = per_class.iter().map(|s| (best - s[i].nats).exp()).sum();
        total += Score {
            tokens: per_class[0][i].tokens,
            nats: best - sum.ln() + k.ln(),
        };
    }
    total
}

/// Draws `n` images per class (at `temperature`) and classifies them with a 5-NN vote on
/// binarised pixels.
fn check_classes(
    model: &impl Decoder,
    codec: &ImageCodec,
    dataset: &jielong_image::ImageDataset,
    n: usize,
    guidance: Option<f32>,
    temperature: f32,
) -> Result<Value> {
    if codec.classes().is_empty() {
        bail!("--check-classes needs a class-conditional model");
    }
    let classifier = DigitClassifier::from_dataset(dataset)?;
    let (mut images, mut wanted) = (Vec::new(), Vec::new());
    for (c, name) in codec.classes().iter().enumerate() {
        eprintln!("drawing {n} images of class {name} ...");
        let mut request = DrawRequest {
            guidance,
            seed: c as u64 * 1000,
            ..DrawRequest::new(Some(name), n)
        };
        request.sampler.temperature = temperature;
        images.extend(draw_images(model, codec, &request)?);
        wanted.extend(std::iter::repeat_n(c, n));
    }
    let acc = classifier.evaluate(&images, &wanted)?;
    Ok(json!({
        "samples_per_class": n,
        "guidance": guidance.map(crate::eval::as_written),
        "temperature": crate::eval::as_written(temperature),
        "recognised": acc.overall(),
        "per_class": acc.per_class.iter().map(|c| json!({"class": c.class, "correct": c.correct, "total": c.total})).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(nats: &[f64]) -> Vec<Score> {
        nats.iter().map(|&nats| Score { tokens: 3, nats }).collect()
    }

    #[test]
    fn a_class_mixture_sums_the_class_out() {
        // Image 0: equally likely under both classes, so the mixture costs what each does.
        // Image 1: impossible under class 1, so it costs class 0's score plus ln 2.
        let per_class = vec![scores(&[5.0, 7.0]), scores(&[5.0, f64::INFINITY])];
        let m = class_mixture(&per_class);
        assert_eq!(m.tokens, 6);
        assert!((m.nats - (5.0 + 7.0 + 2f64.ln())).abs() < 1e-12, "{m:?}");
        // Very large scores (long images) do not underflow to infinity.
        let m = class_mixture(&[scores(&[2000.0]), scores(&[2001.0])]);
        let want = 2000.0 - (1.0 + (-1f64).exp()).ln() + 2f64.ln();
        assert!((m.nats - want).abs() < 1e-9, "{m:?}");
    }
}
