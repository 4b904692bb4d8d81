//! Images for the trainer: a dataset, a tokenisation fitted to it, a start token per image.

use std::path::Path;

use anyhow::{Result, bail};
use jielong_core::{Codec, LABEL_DROPOUT, windows};
use jielong_image::{
    Binarise, DatasetOptions, DrawRequest, ImageCodec, LabelledImage, MnistSplits, TokenSpec,
    draw_images, open_dataset_with, to_dynamic_sequences, to_sequences,
};
use jielong_nn::{ModelFolder, Transformer};
use serde::Deserialize;
use serde_json::json;

use crate::open;
use crate::training::{Prepared, RunFile, section};

/// The `codec` section of an image training config.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CodecSpec {
    /// The tokenisation (see `jielong_image::TOKEN_SPEC_HELP`).
    tokens: String,
    /// Condition on the class labels: by default when the dataset has labels; `true` on an
    /// unlabelled dataset is an error.
    conditional: Option<bool>,
    /// Resize every image to `[width, height]`.
    size: Option<[u32; 2]>,
    /// Seed of the palette or codebook k-means.
    seed: u64,
    /// How grey training digits become black and white for a binary tokenisation: `threshold`
    /// (the codec's own, intensity >= 128) or `dynamic` (each pixel on with probability
    /// intensity / 255, drawn afresh each time a digit is used; the held-out digits are drawn
    /// once, with seed 0, as `jielong eval image --binarise stochastic` does).
    binarise: String,
}

impl Default for CodecSpec {
    fn default() -> Self {
        Self {
            tokens: "binary".into(),
            conditional: None,
            size: None,
            seed: 0,
            binarise: "threshold".into(),
        }
    }
}

/// Image datasets take no `data` options (the held-out split is the dataset's own).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataSpec {}

pub fn prepare(
    data: &Path,
    file: &RunFile,
    out: &Path,
    resume: bool,
) -> Result<Prepared<ImageCodec>> {
    let c: CodecSpec = section(&file.codec, "codec")?;
    section::<DataSpec>(&file.data, "data")?;
    let tokens: TokenSpec = c.tokens.parse()?;
    if let Some([w, h]) = c.size {
        if w == 0 || h == 0 {
            bail!("codec.size must be [width, height] with positive numbers");
        }
    }
    let dataset = open_dataset_with(
        data,
        &DatasetOptions {
            size: c.size.map(|[w, h]| (w, h)),
            index: None,
            // An MNIST folder needs only its training files (its t10k files, when there, are
            // the held-out split).
            mnist: MnistSplits::Training,
        },
    )?;
    let conditional = match c.conditional {
        Some(true) if !dataset.is_labelled() => {
            bail!(
                "codec.conditional is true but {} has no class labels",
                data.display()
            )
        }
        Some(wanted) => wanted,
        None => dataset.is_labelled(),
    };
    let codec = if resume {
        open::codec(&ModelFolder::open(out)?)?
    } else {
        eprintln!(
            "fitting {tokens} tokens to {} training images ...",
            dataset.train.len()
        );
        tokens.fit(&dataset, conditional, c.seed)?
    };
    let per_image = codec.tokens_per_image();
    let context = file.model.context.unwrap_or(per_image + 1);
    if context < per_image + 1 {
        bail!(
            "model.context ({context}) must hold a whole image: {} tokens and a start token",
            per_image
        );
    }
    let heldout_images = if dataset.heldout.is_empty() {
        &dataset.train
    } else {
        &dataset.heldout
    };
    let (train, heldout_seqs) = match c.binarise.as_str() {
        "threshold" => (
            to_sequences(&codec, &dataset.train, conditional)?,
            to_sequences(&codec, heldout_images, conditional)?,
        ),
        "dynamic" => {
            if !matches!(
                tokens,
                TokenSpec::Grey { levels: 2 } | TokenSpec::BinaryBlocks { .. }
            ) {
                bail!(
                    "codec.binarise \"dynamic\" needs a binary tokenisation (binary or blocks:B), not {tokens}"
                );
            }
            let fixed = Binarise::Stochastic { seed: 0 };
            let held: Vec<LabelledImage> = heldout_images
                .iter()
                .enumerate()
                .map(|(i, l)| LabelledImage {
                    image: fixed.apply(&l.image, i as u64),
                    label: l.label,
                })
                .collect();
            (
                to_dynamic_sequences(&codec, &dataset.train, conditional)?,
                to_sequences(&codec, &held, conditional)?,
            )
        }
        other => bail!("codec.binarise must be \"threshold\" or \"dynamic\", not {other:?}"),
    };
    let mut heldout = Vec::new();
    for seq in &heldout_seqs.seqs {
        heldout.extend(windows(seq, 1, context)?);
    }
    let data_note = format!(
        "`{}`: {} training images, {} held out{}, {}x{} {}, tokenised as `{}` ({} tokens per image, {} content tokens){}{}.",
        data.display(),
        dataset.train.len(),
        dataset.heldout.len(),
        if dataset.heldout.is_empty() {
            " (none: the training images are scored)"
        } else {
            ""
        },
        codec.width(),
        codec.height(),
        if codec.channels() == 1 {
            "grey"
        } else {
            "colour"
        },
        tokens,
        per_image,
        codec.vocab().content_size,
        if conditional {
            format!(
                ", conditioned on {} classes (label dropout {:.0}%)",
                dataset.classes.len(),
                100.0 * LABEL_DROPOUT
            )
        } else {
            String::new()
        },
        if c.binarise == "dynamic" {
            "; dynamic binarisation (each pixel on with probability intensity/255, drawn afresh for every use; held-out digits drawn once with seed 0)"
        } else {
            ""
        },
    );
    Ok(Prepared {
        codec,
        context,
        train,
        heldout,
        data_note,
        data_json: json!({ "source": data.display().to_string(), "conditional": conditional, "tokens": tokens.to_string(), "binarise": c.binarise }),
    })
}

/// A grid of samples (four per class, or sixteen unconditional) saved as `samples.png`.
pub fn sample(out: &Path, model: &Transformer, prepared: &Prepared<ImageCodec>) -> Result<String> {
    let codec = &prepared.codec;
    let classes: Vec<Option<String>> = if codec.classes().is_empty() {
        vec![None]
    } else {
        codec.classes().iter().cloned().map(Some).collect()
    };
    let per = if classes.len() == 1 { 16 } else { 4 };
    let mut images = Vec::new();
    for class in &classes {
        images.extend(draw_images(
            model,
            codec,
            &DrawRequest::new(class.as_deref(), per),
        )?);
    }
    let grid = jielong_image::grid(&images, per.max(4), 3)?;
    jielong_image::save_png(&grid, &out.join("samples.png"))?;
    Ok(format!(
        "{} drawn at temperature 1, seed 0{}:\n\n![samples](samples.png)\n",
        if per == 16 {
            "Sixteen images".to_string()
        } else {
            format!("{per} images per class, one class per row,")
        },
        if per == 16 {
            ""
        } else {
            " (rows in class order)"
        }
    ))
}
