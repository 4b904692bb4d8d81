//! Audio for the trainer: clips resampled to the model's rate, a class (or unconditional)
//! token, mu-law samples, END. A held-out set is kept out of training by content.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use jielong_audio::{AudioCodec, HeldOut, LabelledClip, Quantisation, open_dataset, to_sequences};
use jielong_core::{Codec, windows};
use jielong_nn::{ModelFolder, Transformer};
use serde::Deserialize;
use serde_json::json;

use crate::train::{Prepared, RunFile, section};

/// The `codec` section of an audio training config.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CodecSpec {
    /// mu-law or linear.
    quantisation: String,
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
            quantisation: "mu-law".into(),
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
}

pub fn prepare(data: &Path, file: &RunFile, out: &Path, resume: bool) -> Result<Prepared> {
    let c: CodecSpec = section(&file.codec, "codec")?;
    let d: DataSpec = section(&file.data, "data")?;
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
            let files = wav_files(&dir)?;
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
        AudioCodec::from_json(&ModelFolder::open(out)?.codec)?
    } else {
        let classes = if conditional {
            labels(&train_clips)
        } else {
            Vec::new()
        };
        AudioCodec::new(quantisation, rate, classes)?
    };
    let conditional = !codec.classes().is_empty();
    let context = file.model.context.unwrap_or(1024);
    let train = to_sequences(&codec, &train_clips, conditional)?;
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
         Tokens: {} with 256 levels{}.",
        data.display(),
        train_clips.len(),
        seconds,
        held_note,
        quantisation.name(),
        if conditional {
            format!(
                ", conditioned on {} classes ({}), label dropout 10%",
                codec.classes().len(),
                codec.classes().join(" ")
            )
        } else {
            String::new()
        },
    );
    let codec_json = codec.to_json();
    Ok(Prepared {
        vocab_size: codec.vocab().size(),
        context,
        codec_json,
        save_files: Box::new(|_| Ok(())),
        train,
        heldout,
        data_note,
        data_json: json!({ "source": data.display().to_string(), "heldout": d.heldout }),
    })
}

/// The sorted distinct labels of labelled clips.
fn labels(clips: &[LabelledClip]) -> Vec<String> {
    let mut l: Vec<String> = clips.iter().filter_map(|c| c.label.clone()).collect();
    l.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
    l.dedup();
    l
}

fn wav_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the held-out folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("the held-out folder {} has no WAV files", dir.display());
    }
    Ok(files)
}

/// A one-second clip per class (or two unconditional ones), with their plots, for MODEL.md.
pub fn sample(out: &Path, model: &Transformer) -> Result<String> {
    let folder = ModelFolder::open(out)?;
    let codec = AudioCodec::from_json(&folder.codec)?;
    let classes: Vec<Option<String>> = if codec.classes().is_empty() {
        vec![None, None]
    } else {
        codec.classes().iter().cloned().map(Some).collect()
    };
    let dir = out.join("samples");
    std::fs::create_dir_all(&dir)?;
    let mut lines = vec![
        "One-second clips drawn at temperature 1, seed 0 (waveform and spectrogram beside each):\n"
            .to_string(),
    ];
    for (i, class) in classes.iter().enumerate() {
        let clip = crate::generate_audio::draw(
            model,
            &codec,
            class.as_deref(),
            1.0,
            1,
            None,
            i as u64,
            &[],
            &mut |_| {},
        )?
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
