//! `jielong eval audio`: bits per sample on held-out clips, beside the clips' mu-law unigram
//! entropy (what a model that ignores context would pay).

use anyhow::Result;
use jielong_audio::{AudioCodec, open_dataset, to_sequences, unigram_entropy};
use jielong_core::{Codec, Score, score, windows};
use jielong_nn::{ModelFolder, Transformer};
use serde_json::{Value, json};

use crate::args::EvalArgs;

pub fn score_clips(folder: &ModelFolder, model: &Transformer, a: &EvalArgs) -> Result<(Score, Value)> {
    let codec = AudioCodec::from_json(&folder.codec)?;
    let dataset = open_dataset(&a.data, codec.rate())?;
    // Clips labelled with one of the model's classes are scored conditioned on it.
    let conditional = !codec.classes().is_empty()
        && dataset.clips.iter().all(|c| c.label.as_ref().is_some_and(|l| codec.classes().contains(l)));
    let seqs = to_sequences(&codec, &dataset.clips, conditional)?;
    let mut ws = Vec::new();
    for s in &seqs.seqs {
        ws.extend(windows(s, 1, model.config.context_len)?);
    }
    let vocab = codec.vocab().clone();
    let total = score(model, &ws, &|t| vocab.is_content(t))?;
    let clips: Vec<&[f32]> = dataset.clips.iter().map(|c| c.samples.as_slice()).collect();
    let unigram = unigram_entropy(&codec, &clips)?;
    Ok((
        total,
        json!({
            "bits_per_sample": total.bits_per_token(),
            "clips": dataset.clips.len(),
            "conditioned_on_labels": conditional,
            "unigram_entropy_bits": unigram,
            "bits_below_unigram": unigram - total.bits_per_token(),
        }),
    ))
}
