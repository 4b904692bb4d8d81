//! `jielong generate audio`: clips drawn one 8-bit sample at a time through the shared loop,
//! sliding the window (keeping the class token) when a clip outgrows the context.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use jielong_audio::{AudioCodec, analyse, plot, prompt_from_wav, write_wav};
use jielong_core::{
    Codec, Decoder, Event, Finish, GenerateConfig, Guided, Overflow, SamplerConfig, generate,
};
use jielong_nn::Transformer;

use crate::args::{GenerateAudio, Modality};
use crate::generate::record_steps;
use crate::loaded;
use crate::probs::{self, Step};

/// One generated clip.
pub struct Clip {
    pub samples: Vec<f32>,
    /// Where the model drew END, if it did (the rest is silence).
    pub ended_at: Option<usize>,
}

/// Draws `count` clips of `seconds` (the `kept` prompt tokens included) as one batch.
pub fn draw_with(
    model: &Transformer,
    codec: &AudioCodec,
    class: Option<&str>,
    seconds: f64,
    count: usize,
    sampler: SamplerConfig,
    guidance: Option<f32>,
    seed: u64,
    kept: &[u32],
    show_top: usize,
    on_event: &mut dyn FnMut(Event),
) -> Result<Vec<Clip>> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 600.0) {
        bail!("--seconds must be between 0 and 600 (got {seconds})");
    }
    let total = (seconds * codec.rate() as f64).round() as usize;
    if total == 0 {
        bail!(
            "--seconds {seconds} is shorter than one sample at {} Hz",
            codec.rate()
        );
    }
    if kept.len() >= total {
        bail!(
            "the prompt ({} samples) is already as long as the clip asked for ({total} samples)",
            kept.len()
        );
    }
    let vocab = codec.vocab();
    let start = vocab
        .start_token(class)?
        .ok_or_else(|| anyhow::anyhow!("this model has no start token"))?;
    let mut prompt = vec![start];
    prompt.extend_from_slice(kept);
    let mut config = GenerateConfig::new(sampler, seed, total - kept.len());
    config.ends = vec![codec.end()];
    config.banned = vocab.never_drawn();
    config.overflow = Overflow::Slide;
    config.keep_prefix = 1;
    config.show_top = show_top;
    config.pad = codec.end();
    let decoder = Guided::for_vocab(model, vocab, class.is_some(), guidance)?;
    let mut cache = decoder.new_cache(count);
    let out = generate(
        &decoder,
        &mut cache,
        &vec![prompt; count],
        &config,
        on_event,
        &mut |_, _| false,
    )?;
    out.into_iter()
        .map(|g| {
            let mut ids = kept.to_vec();
            ids.extend(&g.ids);
            let ended_at = (g.finish == Finish::End).then_some(ids.len());
            let mut samples = codec.decode(&ids)?;
            samples.resize(total, 0.0);
            Ok(Clip { samples, ended_at })
        })
        .collect()
}

/// [`draw_with`] at temperature 1, guided by `guidance` when given (for MODEL.md samples and checks).
pub fn draw(
    model: &Transformer,
    codec: &AudioCodec,
    class: Option<&str>,
    seconds: f64,
    count: usize,
    guidance: Option<f32>,
    seed: u64,
    kept: &[u32],
    on_event: &mut dyn FnMut(Event),
) -> Result<Vec<Clip>> {
    draw_with(
        model,
        codec,
        class,
        seconds,
        count,
        SamplerConfig::default(),
        guidance,
        seed,
        kept,
        0,
        on_event,
    )
}

pub fn run(a: GenerateAudio) -> Result<()> {
    let sampler = loaded::sampler_config(&a.sampling)?;
    if a.count == 0 {
        bail!("--count must be at least 1");
    }
    let (folder, model) = loaded::open_model(&a.model, Modality::Audio, &a.device)?;
    let codec = AudioCodec::from_json(&folder.codec)?;
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
    let clips = draw_with(
        &model,
        &codec,
        a.class.as_deref(),
        a.seconds,
        a.count,
        sampler,
        loaded::guidance(&folder, a.guidance, a.class.is_some())?,
        a.sampling.seed,
        kept,
        show,
        &mut |e| {
            record_steps(&mut steps, &e);
            match &e {
                Event::Token { seq: 0, step, .. } if show > 0 => println!(
                    "{}",
                    probs::render(*step, steps[0].last().expect("just recorded"), &label)
                ),
                Event::Slide { .. } => slides += 1,
                _ => {}
            }
        },
    )?;
    let elapsed = started.elapsed();

    let rate = codec.rate();
    let drawn: usize = clips
        .iter()
        .map(|c| c.ended_at.unwrap_or(c.samples.len()) - kept.len())
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
