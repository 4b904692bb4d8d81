//! `jielong eval audio`: bits per token (and per second) on held-out clips, beside the clips'
//! unigram token entropy (what a model that ignores context would pay), and with `--check-classes N` how
//! many drawn clips a nearest-neighbour classifier on those clips hears as the class asked for.

use anyhow::{Context, Result, bail};
use jielong_audio::{
    AudioCodec, AudioDataset, ClipRequest, DigitClassifier, draw, open_dataset, to_sequences,
    unigram_entropy,
};
use jielong_core::{Codec, Decoder, Flow, Score, score, windows};
use jielong_nn::ModelFolder;
use serde_json::{Value, json};

use crate::args::EvalArgs;
use crate::open;

pub fn score_clips(
    folder: &ModelFolder,
    model: &impl Decoder,
    a: &EvalArgs,
) -> Result<(Score, Value)> {
    let codec: AudioCodec = open::codec(folder)?;
    let dataset = open_dataset(&a.data, codec.rate())?;
    // Clips labelled with one of the model's classes are scored conditioned on it.
    let conditional = !codec.classes().is_empty()
        && dataset.clips.iter().all(|c| {
            c.label
                .as_ref()
                .is_some_and(|l| codec.classes().contains(l))
        });
    let seqs = to_sequences(&codec, &dataset.clips, conditional)?;
    let mut ws = Vec::new();
    for s in &seqs.seqs {
        ws.extend(windows(s, 1, model.context_len())?);
    }
    let vocab = codec.vocab().clone();
    let total = score(model, &ws, &|t| vocab.is_content(t))?;
    let clips: Vec<&[f32]> = dataset.clips.iter().map(|c| c.samples.as_slice()).collect();
    let unigram = unigram_entropy(&codec, &clips)?;
    // A frame token stands for a hop of samples, and its codec is lossy: its bits per second
    // price the frames' spectra, not the waveform.
    let bits = total.bits_per_token();
    let mut extra = json!({
        "tokenisation": if codec.samples_per_token() == 1 { "samples" } else { "frames" },
        "bits_per_token": bits,
        "bits_per_sample": bits / codec.samples_per_token() as f64,
        "bits_per_second": bits * codec.tokens_per_second(),
        "clips": dataset.clips.len(),
        "conditioned_on_labels": conditional,
        "unigram_entropy_bits": unigram,
        "bits_below_unigram": unigram - total.bits_per_token(),
    });
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
    Ok((total, extra))
}

/// Draws `n` one-second clips per class (at `temperature`) and classifies them against the
/// dataset's labelled clips (mel cepstra, dynamic time warping, nearest reference). Chance is
/// one in the number of classes.
fn check_classes(
    model: &impl Decoder,
    codec: &AudioCodec,
    dataset: &AudioDataset,
    n: usize,
    guidance: Option<f32>,
    temperature: f32,
) -> Result<Value> {
    if codec.classes().is_empty() {
        bail!("--check-classes needs a class-conditional model");
    }
    let classifier = DigitClassifier::train(&dataset.clips, codec.rate())
        .context("the clips given with --data are the classifier's references")?;
    let (mut clips, mut wanted) = (Vec::new(), Vec::new());
    for (c, name) in codec.classes().iter().enumerate() {
        let Some(index) = classifier.class_index(name) else {
            bail!(
                "the references have no clip of class {name:?}, which the model can be asked for"
            );
        };
        eprintln!("drawing {n} one-second clips of class {name} ...");
        let mut request = ClipRequest::new(Some(name), 1.0, n);
        request.draw.guidance = guidance;
        request.draw.sampler.temperature = temperature;
        request.draw.seed = c as u64 * 1000;
        let drawn = draw(model, codec, &request, &mut |_| Flow::Continue)?;
        clips.extend(drawn.into_iter().map(|clip| clip.samples));
        wanted.extend(std::iter::repeat_n(index, n));
    }
    let acc = classifier.evaluate(&clips, &wanted)?;
    Ok(json!({
        "samples_per_class": n,
        "guidance": guidance.map(crate::eval::as_written),
        "temperature": crate::eval::as_written(temperature),
        "references": classifier.references(),
        "recognised": acc.overall(),
        "chance": 1.0 / classifier.classes().len() as f64,
        "per_class": acc.per_class.iter().map(|c| json!({
            "class": c.class, "correct": c.correct, "total": c.total, "unclassified": c.unclassified,
        })).collect::<Vec<_>>(),
    }))
}
