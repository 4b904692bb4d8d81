//! Images as training sequences: a start token (the class, or the unconditional / BOS token),
//! then the image's tokens in raster order.

use anyhow::{Context, Result, bail};
use jielong_core::{Codec, Sequences, par_map};

use crate::codec::ImageCodec;
use crate::datasets::LabelledImage;

/// How often a labelled image's class token is replaced by the unconditional token during
/// training, so that one model learns both conditional and unconditional generation.
pub const LABEL_DROPOUT: f64 = 0.1;

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
    })
}
