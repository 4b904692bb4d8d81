//! `jielong generate audio`: clips drawn one token (a sample or a frame) at a time through the
//! shared loop, sliding the window (keeping the class token) when a clip outgrows the context.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use jielong_audio::{AudioCodec, ClipRequest, analyse, draw, plot, prompt_from_wav, write_wav};
use jielong_core::{ClassDraw, Codec, Event, Flow};

use crate::args::{GenerateAudio, Modality};
use crate::show::{self, Step, record_steps};
use crate::{open, settings};

pub fn run(a: GenerateAudio) -> Result<()> {
    let mut sampler = settings::sampler_config(&a.sampling)?;
    settings::check_count(a.count)?;
    let (folder, model) = open::open_model(&a.model, Modality::Audio, &a.device)?;
    sampler.temperature = open::temperature(&folder, a.sampling.temperature)?;
    let codec: AudioCodec = open::codec(&folder)?;
    let prompt = match (&a.prompt_audio, a.keep_seconds) {
        (Some(path), Some(keep)) => Some(prompt_from_wav(&codec, path, keep)?),
        _ => None,
    };
    let kept = prompt.as_ref().map_or(&[][..], |p| &p.tokens[..]);

    let show = a.sampling.show_probs.unwrap_or(0);
    let mut steps: Vec<Vec<Step>> = vec![Vec::new(); a.count];
    let mut slides = 0;
    let label = |id: u32| codec.token_label(id);
    let started = Instant::now();
    let mut request = ClipRequest::new(a.class.as_deref(), a.seconds, a.count);
    request.draw = ClassDraw {
        kept: kept.to_vec(),
        guidance: open::guidance(&folder, a.guidance, a.class.is_some())?,
        sampler,
        seed: a.sampling.seed,
        show_top: show,
        ..request.draw
    };
    let clips = draw(&model, &codec, &request, &mut |e| {
        record_steps(&mut steps, e);
        match e {
            Event::Token { seq: 0, step, .. } if show > 0 => println!(
                "{}",
                show::render(*step, steps[0].last().expect("just recorded"), &label)
            ),
            Event::Slide { seq: 0, .. } => slides += 1,
            _ => {}
        }
        Flow::Continue
    })?;
    let elapsed = started.elapsed();

    let rate = codec.rate();
    let kept_samples = kept.len() * codec.samples_per_token();
    let drawn: usize = clips
        .iter()
        .map(|c| {
            c.ended_at
                .unwrap_or(c.samples.len())
                .saturating_sub(kept_samples)
        })
        .sum();
    for (i, clip) in clips.iter().enumerate() {
        let path = numbered(&a.out, i);
        write_wav(&path, &clip.samples, rate)?;
        let stats = analyse(&clip.samples, rate)?;
        eprintln!(
            "wrote {} ({:.2} s at {rate} Hz{}): RMS {:.1} dBFS, spectral flatness {}",
            path.display(),
            clip.samples.len() as f64 / rate as f64,
            clip.ended_at.map_or(String::new(), |n| format!(
                "; the model ended it at {:.2} s, silence after",
                n as f64 / rate as f64
            )),
            stats.rms_dbfs(),
            stats
                .flatness
                .map_or("n/a (no voiced frames)".into(), |f| format!("{f:.4}")),
        );
        if let Some(plot_path) = &a.plot {
            let plot_path = numbered(plot_path, i);
            let mut panels: Vec<(&str, &[f32])> = vec![("generated", &clip.samples)];
            if let Some(p) = &prompt {
                panels.push(("prompt", &p.samples));
            }
            plot(&plot_path, &panels, rate)?;
        }
    }
    let per_second = drawn as f64 / elapsed.as_secs_f64();
    eprintln!(
        "{drawn} samples in {:.1} s: {per_second:.0} samples/s, real-time factor {:.3} (generated samples per second / sample rate){}",
        elapsed.as_secs_f64(),
        per_second / rate as f64,
        if slides > 0 {
            format!("; the window slid {slides} times")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `out.wav`, then `out-1.wav`, `out-2.wav`... for a batch.
fn numbered(path: &Path, i: usize) -> PathBuf {
    if i == 0 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map_or("clip".into(), |s| s.to_string_lossy().to_string());
    let ext = path
        .extension()
        .map_or("wav".into(), |e| e.to_string_lossy().to_string());
    path.with_file_name(format!("{stem}-{i}.{ext}"))
}
