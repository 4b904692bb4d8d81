//! Numbers that tell speech from silence and from white noise, for checking generated audio.
//!
//! Speech concentrates its power in a few harmonics and formants, so its power spectrum is far
//! from flat: spectral flatness (geometric over arithmetic mean of the power spectrum) is about
//! 0.01 on recorded speech. White noise has a flat spectrum whose periodogram values are
//! exponentially distributed, which puts its flatness at e^-γ ≈ 0.56. Silence has no energy.

use anyhow::{Result, bail};
use rustfft::{FftPlanner, num_complex::Complex};

use jielong_core::Codec;

use crate::codec::AudioCodec;

/// Length of an analysis frame: 32 ms, long enough to resolve the pitch harmonics of a voice.
pub const FRAME_SECONDS: f64 = 0.032;
/// A frame is voiced when its energy is within this many dB of the clip's loudest frame (20 dB keeps
/// the vowels and voiced consonants, drops the faint fricatives and breath around them)...
pub const VOICED_BELOW_LOUDEST_DB: f64 = 20.0;
/// ...and above this absolute level (dB relative to a full-scale square wave), so that digital
/// silence and faint dither are never "voiced".
pub const VOICED_FLOOR_DBFS: f64 = -60.0;

/// What [`analyse`] measured on one clip.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Analysis {
    /// Mean spectral flatness over the voiced frames (0 = a pure tone, 1 = perfectly flat);
    /// `None` when no frame is voiced (silence).
    pub flatness: Option<f64>,
    /// Root mean square of the whole clip (1 = a full-scale square wave).
    pub rms: f64,
    pub frames: usize,
    pub voiced_frames: usize,
}

impl Analysis {
    /// The clip's RMS level in dB relative to full scale (-inf for digital silence).
    pub fn rms_dbfs(&self) -> f64 {
        20.0 * self.rms.log10()
    }
}

/// Frames of [`FRAME_SECONDS`] with half-frame hops, the Hann-windowed power spectrum of each,
/// and the flatness averaged over the voiced ones.
///
/// Voiced rule: a frame's energy (mean square of its samples) is at least the loudest frame's
/// energy minus [`VOICED_BELOW_LOUDEST_DB`] dB, and above [`VOICED_FLOOR_DBFS`]. The DC bin is
/// left out of the flatness so that an offset does not count as a tone.
pub fn analyse(samples: &[f32], rate: u32) -> Result<Analysis> {
    if rate == 0 {
        bail!("cannot analyse audio at 0 Hz");
    }
    let rms = if samples.is_empty() {
        0.0
    } else {
        (samples.iter().map(|&x| x as f64 * x as f64).sum::<f64>() / samples.len() as f64).sqrt()
    };
    let n = ((FRAME_SECONDS * rate as f64).round() as usize).max(16);
    let (starts, energy) = frame_energies(samples, n, n / 2);
    let loudest = energy.iter().cloned().fold(0.0, f64::max);
    let threshold =
        (loudest * db_to_power(-VOICED_BELOW_LOUDEST_DB)).max(db_to_power(VOICED_FLOOR_DBFS));

    let window = hann(n);
    let fft = FftPlanner::<f64>::new().plan_fft_forward(n);
    let mut buf = vec![Complex::new(0.0, 0.0); n];
    let mut total = 0.0;
    let mut voiced = 0;
    for (&s, &e) in starts.iter().zip(&energy) {
        if e < threshold {
            continue;
        }
        for (b, (&x, &w)) in buf.iter_mut().zip(samples[s..s + n].iter().zip(&window)) {
            *b = Complex::new(x as f64 * w, 0.0);
        }
        fft.process(&mut buf);
        let power: Vec<f64> = buf[1..=n / 2].iter().map(|c| c.norm_sqr()).collect();
        total += flatness(&power);
        voiced += 1;
    }
    Ok(Analysis {
        flatness: (voiced > 0).then(|| total / voiced as f64),
        rms,
        frames: starts.len(),
        voiced_frames: voiced,
    })
}

/// Geometric mean over arithmetic mean of a power spectrum (a tiny floor keeps log(0) out).
pub fn flatness(power: &[f64]) -> f64 {
    if power.is_empty() {
        return 0.0;
    }
    let floor = 1e-20;
    let log_mean = power.iter().map(|&p| (p + floor).ln()).sum::<f64>() / power.len() as f64;
    let mean = power.iter().map(|&p| p + floor).sum::<f64>() / power.len() as f64;
    log_mean.exp() / mean
}

/// Bits per token of the best model that ignores context: the entropy of the codec's token
/// frequencies over all `clips`. A context-aware model should do better than this.
pub fn unigram_entropy(codec: &AudioCodec, clips: &[&[f32]]) -> Result<f64> {
    let mut counts = vec![0u64; codec.vocab().content_size];
    for clip in clips {
        for id in codec.encode(&clip.to_vec())? {
            counts[id as usize] += 1;
        }
    }
    if counts.iter().all(|&c| c == 0) {
        bail!("no samples to measure an entropy on");
    }
    Ok(entropy_bits(&counts))
}

/// Entropy in bits of the distribution proportional to `counts`.
pub fn entropy_bits(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total as f64;
            -p * p.log2()
        })
        .sum()
}

fn db_to_power(db: f64) -> f64 {
    10f64.powf(db / 10.0)
}

/// The periodic Hann window, the usual taper for short-time spectra.
pub(crate) fn hann(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
        .collect()
}

/// The start of every whole frame of `n` samples, `hop` apart, and each frame's mean power.
pub(crate) fn frame_energies(samples: &[f32], n: usize, hop: usize) -> (Vec<usize>, Vec<f64>) {
    let starts: Vec<usize> = if samples.len() < n {
        Vec::new()
    } else {
        (0..=samples.len() - n).step_by(hop).collect()
    };
    let energy = starts
        .iter()
        .map(|&s| {
            samples[s..s + n]
                .iter()
                .map(|&x| x as f64 * x as f64)
                .sum::<f64>()
                / n as f64
        })
        .collect();
    (starts, energy)
}
