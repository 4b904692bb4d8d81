//! Audio for the trainer: clips resampled to the model's rate, a class (or unconditional)
//! token, mu-law samples or frame tokens, END. A held-out set is kept out of training by content.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use jielong_audio::{
    AudioCodec, AudioTokens, ClipRequest, FrameCodebook, HeldOut, Quantisation, draw, open_dataset,
    to_sequences, wav_files,
};
use jielong_core::{Flow, LABEL_DROPOUT, sorted_classes, windows};
use jielong_nn::{ModelFolder, Transformer};
use serde::Deserialize;
use serde_json::json;

use crate::open;
use crate::training::{Prepared, RunFile, section};

/// The `codec` section of an audio training config.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CodecSpec {
    /// "samples" (one token per sample) or "frames" (one per hop, from a fitted codebook).
    tokens: String,
    /// Samples: mu-law or linear.
    quantisation: String,
    /// Frames: codebook entries, frame length and hop (samples), and the k-means seed.
    codebook: usize,
    window: usize,
    hop: usize,
    codebook_seed: u64,
    rate: u32,
    /// Condition on the class labels.
    conditional: bool,
    /// Keep only these labels as classes; clips with other labels train unconditionally.
    classes: Option<Vec<String>>,
    /// Long clips (music) are cut into pieces of at most this many seconds.
    piece_seconds: f64,
}

impl Default for CodecSpec {
    fn default() -> Self {
        Self {
            tokens: "samples".into(),
            quantisation: "mu-law".into(),
            codebook: 512,
            window: 256,
            hop: 64,
            codebook_seed: 0,
            rate: 8000,
            conditional: true,
            classes: None,
            piece_seconds: 4.0,
        }
    }
}

/// The `data` section of an audio training config.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DataSpec {
    /// A folder of held-out WAVs (named by label), never trained on; relative to the config.
    heldout: Option<PathBuf>,
    /// The share of training windows that start at their clip's first sample (the rest start
    /// anywhere): generation starts there, and a digit is several windows long.
    clip_start_share: f64,
}

pub fn prepare(
    data: &Path,
    file: &RunFile,
    out: &Path,
    resume: bool,
) -> Result<Prepared<AudioCodec>> {
    let c: CodecSpec = section(&file.codec, "codec")?;
    let d: DataSpec = section(&file.data, "data")?;
    if !(0.0..=1.0).contains(&d.clip_start_share) {
        bail!(
            "data: clip_start_share must be between 0 and 1, not {}",
            d.clip_start_share
        );
    }
    let (rate, piece_seconds) = (c.rate, c.piece_seconds);
    let quantisation: Quantisation = c.quantisation.parse()?;
    let conditional = c.conditional;
    let wanted_classes = c.classes;

    let mut dataset = open_dataset(data, rate)?;
    if let Some(classes) = &wanted_classes {
        let n = dataset.unlabel_except(classes);
        eprintln!("{n} clips with other labels are used unconditionally");
    }
    dataset.cut_long(piece_seconds)?;

    // The held-out clips: a folder of WAVs named by label, removed from training by content;
    // otherwise every tenth clip.
    let (train_clips, heldout_clips, held_note) = match &d.heldout {
        Some(dir) => {
            let dir = file.path(dir);
            let files = wav_files(&dir)
                .with_context(|| format!("cannot read the held-out folder {}", dir.display()))?;
            if files.is_empty() {
                bail!("the held-out folder {} has no WAV files", dir.display());
            }
            let held = HeldOut::from_files(&files, rate)?;
            let removed = dataset.remove_held_out(&held)?;
            held.check(&dataset.clips)?;
            let note = format!(
                "held out: the {} clips of `{}` ({} copies found in the training data were removed)",
                held.clips().len(),
                dir.display(),
                removed.len()
            );
            (dataset.clips.clone(), held.clips().to_vec(), note)
        }
        None if dataset.clips.len() < 10 => {
            let note = "no held-out clips (fewer than ten clips): the training clips are scored"
                .to_string();
            (dataset.clips.clone(), dataset.clips.clone(), note)
        }
        None => {
            let (held, train): (Vec<_>, Vec<_>) = dataset
                .clips
                .iter()
                .cloned()
                .enumerate()
                .partition(|(i, _)| i % 10 == 9);
            let note = format!("held out: every tenth clip ({})", held.len());
            (
                train.into_iter().map(|(_, c)| c).collect::<Vec<_>>(),
                held.into_iter().map(|(_, c)| c).collect(),
                note,
            )
        }
    };
    if train_clips.is_empty() {
        bail!("no training clips left in {}", data.display());
    }

    let codec = if resume {
        open::codec(&ModelFolder::open(out)?)?
    } else {
        let classes = if conditional {
            sorted_classes(train_clips.iter().filter_map(|c| c.label.as_deref()))
        } else {
            Vec::new()
        };
        match c.tokens.as_str() {
            "samples" => AudioCodec::new(quantisation, rate, classes)?,
            "frames" => {
                eprintln!(
                    "fitting {} frame tokens ({}-sample frames every {} samples) to the training clips ...",
                    c.codebook, c.window, c.hop
                );
                let clips: Vec<&[f32]> = train_clips.iter().map(|c| c.samples.as_slice()).collect();
                let codebook =
                    FrameCodebook::fit(&clips, c.window, c.hop, c.codebook, c.codebook_seed)?;
                AudioCodec::frames(codebook, rate, classes)?
            }
            other => bail!("codec: \"tokens\" is {other:?}: use \"samples\" or \"frames\""),
        }
    };
    let conditional = !codec.classes().is_empty();
    let context = file.model.context.unwrap_or(1024);
    let mut train = to_sequences(&codec, &train_clips, conditional)?;
    train.start_share = d.clip_start_share;
    let held_seqs = to_sequences(
        &codec,
        &heldout_clips,
        conditional && heldout_clips.iter().all(|c| c.label.is_some()),
    )?;
    let mut heldout = Vec::new();
    for s in &held_seqs.seqs {
        heldout.extend(windows(s, 1, context)?);
    }
    let seconds: f64 = train_clips
        .iter()
        .map(|c| c.samples.len() as f64)
        .sum::<f64>()
        / rate as f64;
    let data_note = format!(
        "`{}`: {} training clips ({:.0} s at {rate} Hz, cut into pieces of at most {piece_seconds} s); {}. \
         Tokens: {}{}.{}",
        data.display(),
        train_clips.len(),
        seconds,
        held_note,
        match codec.tokens() {
            AudioTokens::Samples(q) => format!("one per sample, {} with 256 levels", q.name()),
            AudioTokens::Frames(f) => format!(
                "one per {} samples, the nearest of {} log-magnitude spectra of {}-sample Hann frames (k-means, seed {}), decoded by Griffin-Lim",
                f.hop(),
                f.len(),
                f.window(),
                c.codebook_seed
            ),
        },
        if conditional {
            format!(
                ", conditioned on {} classes ({}), label dropout {:.0}%",
                codec.classes().len(),
                codec.classes().join(" "),
                100.0 * LABEL_DROPOUT
            )
        } else {
            String::new()
        },
        if d.clip_start_share > 0.0 {
            format!(
                " {:.0}% of the training windows start at their clip's first sample, the rest anywhere.",
                100.0 * d.clip_start_share
            )
        } else {
            String::new()
        },
    );
    Ok(Prepared {
        codec,
        context,
        train,
        heldout,
        data_note,
        data_json: json!({
            "source": data.display().to_string(),
            "heldout": d.heldout,
            "clip_start_share": d.clip_start_share,
        }),
    })
}

/// A one-second clip per class (or two unconditional ones), with their plots, for MODEL.md.
pub fn sample(out: &Path, model: &Transformer, prepared: &Prepared<AudioCodec>) -> Result<String> {
    let codec = &prepared.codec;
    let classes: Vec<Option<String>> = if codec.classes().is_empty() {
        vec![None, None]
    } else {
        codec.classes().iter().cloned().map(Some).collect()
    };
    let dir = out.join("samples");
    std::fs::create_dir_all(&dir)?;
    let mut lines = vec![
        "One-second clips drawn at temperature 1, the n-th with seed n (class k: seed k), waveform and spectrogram beside each:\n"
            .to_string(),
    ];
    for (i, class) in classes.iter().enumerate() {
        let mut request = ClipRequest::new(class.as_deref(), 1.0, 1);
        request.draw.seed = i as u64;
        let clip = draw(model, codec, &request, &mut |_| Flow::Continue)?
            .into_iter()
            .next()
            .context("no clip drawn")?;
        let name = class
            .clone()
            .map_or(format!("unconditional-{i}"), |c| format!("class-{c}"));
        jielong_audio::write_wav(
            &dir.join(format!("{name}.wav")),
            &clip.samples,
            codec.rate(),
        )?;
        jielong_audio::plot(
            &dir.join(format!("{name}.png")),
            &[(name.as_str(), &clip.samples)],
            codec.rate(),
        )?;
        lines.push(format!(
            "- [{name}.wav](samples/{name}.wav) ![{name}](samples/{name}.png)"
        ));
    }
    Ok(lines.join("\n"))
}
