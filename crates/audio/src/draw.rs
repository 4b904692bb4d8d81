//! Drawing clips one token (a sample or a frame) at a time: the recipe behind `jielong generate
//! audio`, training's samples, `eval --check-classes` and `/v1/audio/speech`. A clip longer than
//! the context slides the window, keeping the class token.

use anyhow::Result;
use jielong_core::{
    ClassDraw, Codec, Decoder, Event, Finish, Flow, GenerateConfig, Generation, InvalidSetting,
    Overflow, generate,
};

use crate::AudioCodec;

/// What to draw: a clip of `seconds` (the kept prompt included), and what every drawing has.
#[derive(Clone, Debug)]
pub struct ClipRequest {
    /// The class (e.g. "7"), count, kept prompt tokens, guidance and dice.
    pub draw: ClassDraw,
    /// Length of each clip, the kept prompt included.
    pub seconds: f64,
}

impl ClipRequest {
    /// `count` clips of `seconds` of `class` at temperature 1.
    pub fn new(class: Option<&str>, seconds: f64, count: usize) -> Self {
        Self {
            draw: ClassDraw::new(class, count),
            seconds,
        }
    }
}

/// One generated clip.
#[derive(Clone, Debug)]
pub struct Clip {
    pub samples: Vec<f32>,
    /// The sample where the model drew END, if it did (the rest is silence).
    pub ended_at: Option<usize>,
}

/// A clip drawing in pieces: the prompt and settings for the loop, and the clips at the end.
pub struct ClipJob<'c> {
    codec: &'c AudioCodec,
    request: ClipRequest,
    prompt: Vec<u32>,
    config: GenerateConfig,
    /// Samples per clip.
    total: usize,
}

impl<'c> ClipJob<'c> {
    pub fn new(codec: &'c AudioCodec, request: ClipRequest) -> Result<Self> {
        let seconds = request.seconds;
        if !(seconds.is_finite() && seconds > 0.0 && seconds <= 600.0) {
            return Err(InvalidSetting::new(
                "seconds",
                format!("must be between 0 and 600 (got {seconds})"),
            )
            .into());
        }
        let total = (seconds * codec.rate() as f64).round() as usize;
        if total == 0 {
            return Err(InvalidSetting::new(
                "seconds",
                format!(
                    "{seconds} is shorter than one sample at {} Hz",
                    codec.rate()
                ),
            )
            .into());
        }
        let tokens = total.div_ceil(codec.samples_per_token());
        let kept = request.draw.kept.len();
        if kept >= tokens {
            return Err(InvalidSetting::new(
                "seconds",
                format!(
                    "is too short: the prompt ({kept} tokens) is already as long as the clip asked for ({tokens} tokens)"
                ),
            )
            .into());
        }
        let (prompt, mut config) = request.draw.prepare(codec.vocab(), tokens - kept)?;
        config.ends = vec![codec.end()];
        config.banned = codec.vocab().never_drawn();
        // A clip longer than the context slides the window, keeping the class token.
        config.overflow = Overflow::Slide;
        config.keep_prefix = 1;
        Ok(Self {
            codec,
            request,
            prompt,
            config,
            total,
        })
    }

    pub fn prompt(&self) -> &[u32] {
        &self.prompt
    }

    /// The settings of clip 0; clip `i` adds `i` to the seed.
    pub fn config(&self) -> &GenerateConfig {
        &self.config
    }

    pub fn request(&self) -> &ClipRequest {
        &self.request
    }

    /// The clips, each padded with silence after an END to the length asked for.
    pub fn clips(&self, generations: Vec<Generation>) -> Result<Vec<Clip>> {
        generations
            .into_iter()
            .map(|g| {
                let mut ids = self.request.draw.kept.clone();
                ids.extend(&g.ids);
                let ended_at =
                    (g.finish == Finish::End).then_some(ids.len() * self.codec.samples_per_token());
                let mut samples = self.codec.decode(&ids)?;
                samples.resize(self.total, 0.0);
                Ok(Clip { samples, ended_at })
            })
            .collect()
    }
}

/// Draws `request.count` clips with any decoder, as one batch; `on_event` sees each token.
pub fn draw<D: Decoder>(
    decoder: &D,
    codec: &AudioCodec,
    request: &ClipRequest,
    on_event: &mut dyn FnMut(&Event) -> Flow,
) -> Result<Vec<Clip>> {
    let job = ClipJob::new(codec, request.clone())?;
    let prompts = vec![job.prompt().to_vec(); request.draw.count];
    let generations = generate(decoder, &prompts, job.config(), on_event)?;
    job.clips(generations)
}
