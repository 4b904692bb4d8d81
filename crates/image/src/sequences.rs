//! Images as training sequences: a start token (the class, or the unconditional / BOS token),
//! then the image's tokens in raster order.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use jielong_core::{Codec, LABEL_DROPOUT, Redraw, Sequences, par_map};

use crate::binarise::Binarise;
use crate::codec::ImageCodec;
use crate::datasets::LabelledImage;

/// Encodes `images` (at the codec's size) into sequences with a one-token prefix.
///
/// `conditional`: start each sequence with its class token (every image must be labelled and
/// the codec must know the classes), with label dropout. Otherwise every sequence starts with
/// the codec's start token (the unconditional token, or BOS for a codec without classes).
pub fn to_sequences(
    codec: &ImageCodec,
    images: &[LabelledImage],
    conditional: bool,
) -> Result<Sequences> {
    let vocab = codec.vocab();
    if images.is_empty() {
        bail!("no images to train on");
    }
    let plain_start = vocab
        .start_token(None)?
        .context("this codec has no start token")?;
    if conditional && vocab.classes.is_empty() {
        bail!(
            "a conditional model needs class labels, and this codec has none: train without conditioning"
        );
    }
    let start = |i: usize, l: &LabelledImage| -> Result<u32> {
        if !conditional {
            return Ok(plain_start);
        }
        match l.label {
            None => bail!(
                "image {i} has no label: a conditional model needs a labelled dataset (train without conditioning)"
            ),
            Some(c) if c >= vocab.classes.len() => {
                bail!(
                    "image {i} has label {c}, but the codec knows {} classes",
                    vocab.classes.len()
                )
            }
            Some(c) => Ok(vocab.first_class + c as u32),
        }
    };
    let encode = |i: usize, l: &LabelledImage| -> Result<Vec<u32>> {
        let mut seq = vec![start(i, l)?];
        seq.extend(
            codec
                .encode(&l.image)
                .with_context(|| format!("image {i}"))?,
        );
        Ok(seq)
    };
    // Images are independent: encode them on all cores, in order.
    let seqs = par_map(images, encode)?;
    Ok(Sequences {
        seqs,
        prefix: 1,
        label_dropout: if conditional {
            vocab.unconditional.map(|u| (u, LABEL_DROPOUT))
        } else {
            None
        },
        pad: plain_start,
        redraw: None,
        start_share: 0.0,
    })
}

/// [`to_sequences`] of `images` binarised afresh each time a batch uses one (dynamic
/// binarisation: a pixel is on with probability intensity / 255). The stored sequences are the
/// thresholded images.
pub fn to_dynamic_sequences(
    codec: &ImageCodec,
    images: &[LabelledImage],
    conditional: bool,
) -> Result<Sequences> {
    let thresholded: Vec<LabelledImage> = images
        .iter()
        .map(|l| LabelledImage {
            image: Binarise::Threshold.apply(&l.image, 0),
            label: l.label,
        })
        .collect();
    let mut sequences = to_sequences(codec, &thresholded, conditional)?;
    let (codec, originals) = (codec.clone(), Arc::new(images.to_vec()));
    let starts: Vec<u32> = sequences.seqs.iter().map(|s| s[0]).collect();
    sequences.redraw = Some(Redraw(Arc::new(move |i, seed| {
        let image = Binarise::Stochastic { seed }.apply(&originals[i].image, i as u64);
        let mut seq = vec![starts[i]];
        // The image has the codec's size and only 0/255 pixels: encoding cannot fail.
        seq.extend(
            codec
                .encode(&image)
                .expect("a binarised image of the codec's size"),
        );
        seq
    })));
    Ok(sequences)
}
