//! Generation helpers: the start of a recorded clip as a prompt, and how fast generation runs.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use jielong_core::Codec;

use crate::codec::AudioCodec;
use crate::wav::read_wav;

/// A continuation prompt cut from a recording.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioPrompt {
    /// The kept samples at the codec's rate (what the model continues; plot it beside the result).
    pub samples: Vec<f32>,
    /// The same samples as content tokens (no start token: the caller puts the class or
    /// unconditional token in front).
    pub tokens: Vec<u32>,
}

/// The first `keep_seconds` of `samples` (already at the codec's rate) as a prompt.
pub fn prompt_from_samples(
    codec: &AudioCodec,
    samples: &[f32],
    keep_seconds: f64,
) -> Result<AudioPrompt> {
    if !keep_seconds.is_finite() || keep_seconds <= 0.0 {
        bail!("the seconds of prompt audio to keep must be a positive number, not {keep_seconds}");
    }
    let keep = (keep_seconds * codec.rate() as f64).round() as usize;
    if keep == 0 {
        bail!(
            "{keep_seconds} s is less than one sample at {} Hz",
            codec.rate()
        );
    }
    if keep > samples.len() {
        bail!(
            "the prompt clip lasts {:.3} s, shorter than the {keep_seconds} s to keep",
            samples.len() as f64 / codec.rate() as f64
        );
    }
    let samples = samples[..keep].to_vec();
    let tokens = codec.encode(&samples)?;
    Ok(AudioPrompt { samples, tokens })
}

/// The first `keep_seconds` of a WAV file (any rate or format) as a prompt.
pub fn prompt_from_wav(codec: &AudioCodec, path: &Path, keep_seconds: f64) -> Result<AudioPrompt> {
    let samples = read_wav(path, codec.rate())?;
    prompt_from_samples(codec, &samples, keep_seconds)
        .map_err(|e| e.context(format!("cannot use {} as a prompt", path.display())))
}

/// Generated samples per second divided by the sample rate: seconds of audio made per second
/// of wall-clock time, so above 1 is faster than real time. `None` when no time passed.
pub fn real_time_factor(samples: usize, rate: u32, elapsed: Duration) -> Option<f64> {
    let seconds = elapsed.as_secs_f64();
    (seconds > 0.0 && rate > 0).then(|| samples as f64 / seconds / rate as f64)
}
