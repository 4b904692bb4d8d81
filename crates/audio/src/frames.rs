//! Frame tokens: a k-means codebook over short-time spectra, one token per hop of samples (8 ms
//! at 8 kHz with the default hop of 64), so a spoken digit is about a hundred tokens instead of
//! thousands of samples and a context of a few hundred tokens holds the whole word.
//!
//! A token stands for the log-magnitude spectrum of a Hann-windowed frame; the phase is dropped.
//! Decoding looks the spectra up and recovers a phase that fits them by Griffin-Lim (alternate
//! projections between "has these magnitudes" and "is the STFT of some signal"), as early neural
//! text-to-speech systems did. Lossy twice over (the codebook and the phase); what survives was
//! measured with the digit classifier and is written in `models/spoken-digits/MODEL.md`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustfft::{Fft, FftPlanner, num_complex::Complex};
use serde::{Deserialize, Serialize};

use jielong_core::kmeans::{self, Points};

/// Codebook sizes a model may use.
pub const CODEBOOK_SIZES: std::ops::RangeInclusive<usize> = 2..=4096;
/// Frame lengths (samples) a codebook may use: powers of two in this range.
pub const WINDOW_SIZES: std::ops::RangeInclusive<usize> = 32..=2048;
/// At most this many frames (evenly strided over the training clips) go into k-means.
const MAX_FIT_FRAMES: usize = 100_000;
/// Added to every magnitude before the logarithm, so that digital silence has a finite level
/// (about 116 dB below a full-scale sine's peak bin with a 256-sample window).
const FLOOR: f32 = 1e-4;
/// Griffin-Lim iterations when decoding: past about 30 the classifier's score stops moving.
const PHASE_ITERATIONS: usize = 48;

/// Short-time Fourier transform with a periodic Hann window: frame `t` covers the `window`
/// samples centred on the middle of hop `t`, so `n` frames stand for `n * hop` samples.
pub struct Stft {
    window: usize,
    hop: usize,
    hann: Vec<f32>,
    forward: Arc<dyn Fft<f32>>,
    inverse: Arc<dyn Fft<f32>>,
}

impl Stft {
    pub fn new(window: usize, hop: usize) -> Result<Self> {
        if !WINDOW_SIZES.contains(&window) || !window.is_power_of_two() {
            bail!(
                "a frame must be a power of two between {} and {} samples, not {window}",
                WINDOW_SIZES.start(),
                WINDOW_SIZES.end()
            );
        }
        if hop == 0 || hop > window / 2 || !window.is_multiple_of(hop) {
            bail!(
                "the hop must divide the frame ({window} samples) and be at most half of it, not {hop}"
            );
        }
        let hann = (0..window)
            .map(|i| {
                let phase = 2.0 * std::f64::consts::PI * i as f64 / window as f64;
                (0.5 - 0.5 * phase.cos()) as f32
            })
            .collect();
        let mut planner = FftPlanner::new();
        Ok(Self {
            window,
            hop,
            hann,
            forward: planner.plan_fft_forward(window),
            inverse: planner.plan_fft_inverse(window),
        })
    }

    /// Frequency bins per frame (DC to Nyquist).
    pub fn bins(&self) -> usize {
        self.window / 2 + 1
    }

    /// Frames that cover `len` samples.
    pub fn frames(&self, len: usize) -> usize {
        len.div_ceil(self.hop)
    }

    /// First sample of frame `t` (negative before the clip: zeros are read there).
    fn start(&self, t: usize) -> isize {
        (t * self.hop + self.hop / 2) as isize - (self.window / 2) as isize
    }

    /// The complex spectra of every frame, `bins()` each, frame after frame.
    fn spectra(&self, samples: &[f32]) -> Vec<Complex<f32>> {
        let (n, bins) = (self.window, self.bins());
        let frames = self.frames(samples.len());
        let mut out = Vec::with_capacity(frames * bins);
        let mut buf = vec![Complex::new(0.0, 0.0); n];
        for t in 0..frames {
            let start = self.start(t);
            for (i, slot) in buf.iter_mut().enumerate() {
                let j = start + i as isize;
                let x = usize::try_from(j)
                    .ok()
                    .and_then(|j| samples.get(j))
                    .copied()
                    .unwrap_or(0.0);
                *slot = Complex::new(x * self.hann[i], 0.0);
            }
            self.forward.process(&mut buf);
            out.extend_from_slice(&buf[..bins]);
        }
        out
    }

    /// Weighted overlap-add of the frames' inverse transforms: `frames * hop` samples.
    fn overlap_add(&self, spectra: &[Complex<f32>]) -> Vec<f32> {
        let (n, bins) = (self.window, self.bins());
        let frames = spectra.len() / bins;
        let len = frames * self.hop;
        let mut out = vec![0f32; len];
        let mut weight = vec![0f32; len];
        let mut buf = vec![Complex::new(0.0, 0.0); n];
        for (t, half) in spectra.chunks_exact(bins).enumerate() {
            // The spectrum of a real frame is conjugate-symmetric: rebuild the upper half.
            buf[..bins].copy_from_slice(half);
            for k in 1..n / 2 {
                buf[n - k] = half[k].conj();
            }
            self.inverse.process(&mut buf);
            let start = self.start(t);
            for (i, z) in buf.iter().enumerate() {
                let Some(j) = usize::try_from(start + i as isize)
                    .ok()
                    .filter(|&j| j < len)
                else {
                    continue;
                };
                out[j] += z.re / n as f32 * self.hann[i];
                weight[j] += self.hann[i] * self.hann[i];
            }
        }
        for (x, w) in out.iter_mut().zip(&weight) {
            if *w > 1e-6 {
                *x /= w;
            }
        }
        out
    }

    /// Log-magnitude spectra, `bins()` per frame, frame after frame.
    pub fn log_magnitudes(&self, samples: &[f32]) -> Vec<f32> {
        self.spectra(samples)
            .iter()
            .map(|z| (z.norm() + FLOOR).ln())
            .collect()
    }

    /// A signal whose spectra have the given magnitudes (`bins()` per frame), by Griffin-Lim from
    /// a fixed pseudo-random phase, so the same magnitudes always give the same samples.
    pub fn griffin_lim(&self, magnitudes: &[f32], iterations: usize) -> Vec<f32> {
        let bins = self.bins();
        let mut spectra: Vec<Complex<f32>> = magnitudes
            .iter()
            .enumerate()
            .map(|(i, &m)| Complex::from_polar(m, start_phase(i)))
            .collect();
        let mut samples = self.overlap_add(&spectra);
        for _ in 0..iterations {
            let now = self.spectra(&samples);
            for ((slot, z), &m) in spectra.iter_mut().zip(&now).zip(magnitudes) {
                let norm = z.norm();
                *slot = if norm > 1e-12 {
                    z * (m / norm)
                } else {
                    Complex::new(m, 0.0)
                };
            }
            samples = self.overlap_add(&spectra);
        }
        debug_assert_eq!(samples.len(), magnitudes.len() / bins * self.hop);
        samples
    }
}

/// A phase in [0, 2 pi) that looks random but is a pure function of the bin's index.
fn start_phase(i: usize) -> f32 {
    let mut h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 32;
    (h as f64 / u64::MAX as f64 * std::f64::consts::TAU) as f32
}

/// `k` log-magnitude spectra of `window`-sample frames taken every `hop` samples, quietest first.
#[derive(Clone)]
pub struct FrameCodebook {
    stft: Arc<Stft>,
    /// All entries one after another, `bins` log-magnitudes each.
    entries: Vec<f32>,
}

/// `codebook.json` in a model folder.
#[derive(Serialize, Deserialize)]
struct CodebookFile {
    window: usize,
    hop: usize,
    /// One list per token: the natural log of each bin's magnitude (plus a tiny floor).
    entries: Vec<Vec<f32>>,
}

impl fmt::Debug for FrameCodebook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FrameCodebook {{ window: {}, hop: {}, entries: {} }}",
            self.window(),
            self.hop(),
            self.len()
        )
    }
}

impl PartialEq for FrameCodebook {
    fn eq(&self, other: &Self) -> bool {
        self.window() == other.window()
            && self.hop() == other.hop()
            && self.entries == other.entries
    }
}

impl FrameCodebook {
    pub fn new(window: usize, hop: usize, entries: Vec<Vec<f32>>) -> Result<Self> {
        let stft = Stft::new(window, hop)?;
        if !CODEBOOK_SIZES.contains(&entries.len()) {
            bail!(
                "a frame codebook has {} to {} entries, not {}",
                CODEBOOK_SIZES.start(),
                CODEBOOK_SIZES.end(),
                entries.len()
            );
        }
        let bins = stft.bins();
        for (i, e) in entries.iter().enumerate() {
            if e.len() != bins {
                bail!(
                    "codebook entry {i} has {} values, a {window}-sample frame has {bins} bins",
                    e.len()
                );
            }
            if let Some(v) = e.iter().find(|v| !v.is_finite()) {
                bail!("codebook entry {i} holds {v}, not a finite log-magnitude");
            }
        }
        Ok(Self {
            stft: Arc::new(stft),
            entries: entries.concat(),
        })
    }

    /// Fits `k` entries to the frames of `clips` (at most [`MAX_FIT_FRAMES`] of them, evenly
    /// strided), a pure function of the clips and `seed`.
    pub fn fit(clips: &[&[f32]], window: usize, hop: usize, k: usize, seed: u64) -> Result<Self> {
        if !CODEBOOK_SIZES.contains(&k) {
            bail!(
                "a frame codebook has {} to {} entries, not {k}",
                CODEBOOK_SIZES.start(),
                CODEBOOK_SIZES.end()
            );
        }
        let stft = Stft::new(window, hop)?;
        let bins = stft.bins();
        let total: usize = clips.iter().map(|c| stft.frames(c.len())).sum();
        if total < k {
            bail!("cannot fit {k} frame tokens to {total} frames of training audio");
        }
        let stride = total.div_ceil(MAX_FIT_FRAMES);
        let mut coords = Vec::new();
        let mut index = 0;
        for clip in clips {
            for frame in stft.log_magnitudes(clip).chunks_exact(bins) {
                if index % stride == 0 {
                    coords.extend_from_slice(frame);
                }
                index += 1;
            }
        }
        let points = Points {
            dim: bins,
            weights: vec![1.0; coords.len() / bins],
            coords,
        };
        let centres = kmeans::fit(&points, k, seed);
        let mut entries: Vec<Vec<f32>> = centres.chunks_exact(bins).map(<[f32]>::to_vec).collect();
        // Quietest first, so that the token order means something when read.
        entries.sort_by(|a, b| loudness(a).total_cmp(&loudness(b)));
        Self::new(window, hop, entries)
    }

    /// Samples per frame.
    pub fn window(&self) -> usize {
        self.stft.window
    }

    /// Samples per token.
    pub fn hop(&self) -> usize {
        self.stft.hop
    }

    pub fn len(&self) -> usize {
        self.entries.len() / self.stft.bins()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entry `index`'s log-magnitudes.
    pub fn entry(&self, index: u32) -> Option<&[f32]> {
        let bins = self.stft.bins();
        self.entries
            .get(index as usize * bins..(index as usize + 1) * bins)
    }

    /// Level of entry `index` in dB relative to a full-scale sine (for token labels).
    pub fn level_db(&self, index: u32) -> Option<f32> {
        self.entry(index).map(|e| {
            // A full-scale sine puts about (window / 4)^2 into each of two bins.
            let reference = 2.0 * (self.window() as f32 / 4.0).powi(2);
            10.0 * (loudness(e) / reference).log10()
        })
    }

    /// One token per hop: the entry nearest to each frame's log-magnitudes.
    pub fn encode(&self, samples: &[f32]) -> Vec<u32> {
        let bins = self.stft.bins();
        self.stft
            .log_magnitudes(samples)
            .chunks_exact(bins)
            .map(|frame| kmeans::nearest(frame, &self.entries, bins).0 as u32)
            .collect()
    }

    /// `hop` samples per token; every id must be below [`Self::len`].
    pub fn decode(&self, ids: &[u32]) -> Vec<f32> {
        let magnitudes: Vec<f32> = ids
            .iter()
            .flat_map(|&id| {
                self.entry(id)
                    .expect("decode is given codebook ids only")
                    .iter()
                    .map(|v| (v.exp() - FLOOR).max(0.0))
            })
            .collect();
        self.stft.griffin_lim(&magnitudes, PHASE_ITERATIONS)
    }

    /// Writes `codebook.json` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bins = self.stft.bins();
        let file = CodebookFile {
            window: self.window(),
            hop: self.hop(),
            entries: self
                .entries
                .chunks_exact(bins)
                .map(<[f32]>::to_vec)
                .collect(),
        };
        jielong_core::write_atomic(path, &serde_json::to_vec(&file)?)
    }

    /// Reads a codebook written by [`FrameCodebook::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read the frame codebook {}: the model folder is incomplete",
                path.display()
            )
        })?;
        let file: CodebookFile = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a frame codebook (expected {{\"window\", \"hop\", \"entries\"}})",
                path.display()
            )
        })?;
        Self::new(file.window, file.hop, file.entries)
            .with_context(|| format!("bad frame codebook in {}", path.display()))
    }
}

/// Total power of a log-magnitude spectrum (the sum of its squared magnitudes).
fn loudness(entry: &[f32]) -> f32 {
    entry.iter().map(|v| (2.0 * v).exp()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chirp(len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let t = i as f32 / 8000.0;
                0.5 * (2.0 * std::f32::consts::PI * (300.0 + 900.0 * t) * t).sin()
            })
            .collect()
    }

    #[test]
    fn overlap_add_inverts_the_transform() {
        for (window, hop) in [(256, 64), (128, 64), (64, 16)] {
            let stft = Stft::new(window, hop).unwrap();
            let x = chirp(1000); // not a multiple of the hop: the tail is zero-padded
            let y = stft.overlap_add(&stft.spectra(&x));
            assert_eq!(y.len(), stft.frames(x.len()) * hop);
            for (i, (a, b)) in x.iter().zip(&y).enumerate() {
                assert!(
                    (a - b).abs() < 1e-4,
                    "{window}/{hop}: sample {i}: {a} vs {b}"
                );
            }
            assert!(y[x.len()..].iter().all(|v| v.abs() < 1e-4));
        }
    }

    #[test]
    fn a_sine_peaks_in_its_bin() {
        let stft = Stft::new(256, 64).unwrap();
        // 1,000 Hz at 8 kHz is bin 1000 / (8000 / 256) = 32.
        let x: Vec<f32> = (0..2048)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 8000.0).sin())
            .collect();
        let frame = &stft.log_magnitudes(&x)[10 * stft.bins()..11 * stft.bins()];
        let peak = (0..frame.len())
            .max_by(|&a, &b| frame[a].total_cmp(&frame[b]))
            .unwrap();
        assert_eq!(peak, 32);
    }

    #[test]
    fn griffin_lim_finds_a_signal_with_the_magnitudes_asked_for() {
        let stft = Stft::new(256, 64).unwrap();
        let x = chirp(4000);
        let target: Vec<f32> = stft.spectra(&x).iter().map(|z| z.norm()).collect();
        let error = |iterations| {
            let y = stft.griffin_lim(&target, iterations);
            let got: Vec<f32> = stft.spectra(&y).iter().map(|z| z.norm()).collect();
            let diff: f32 = got.iter().zip(&target).map(|(a, b)| (a - b).powi(2)).sum();
            (diff / target.iter().map(|b| b * b).sum::<f32>()).sqrt()
        };
        let (start, end) = (error(0), error(PHASE_ITERATIONS));
        assert!(
            end < 0.15 && end < start / 3.0,
            "spectral convergence {start} -> {end}"
        );
        assert_eq!(stft.griffin_lim(&target, 4), stft.griffin_lim(&target, 4));
    }

    #[test]
    fn bad_frames_are_refused() {
        assert!(Stft::new(250, 50).is_err()); // not a power of two
        assert!(Stft::new(256, 0).is_err());
        assert!(Stft::new(256, 256).is_err()); // no overlap
        assert!(Stft::new(256, 48).is_err()); // does not divide the frame
        assert!(Stft::new(16, 4).is_err());
    }
}
