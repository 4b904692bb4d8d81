//! A spoken-digit classifier, to measure whether generated clips say the class that was asked for.
//!
//! Each clip becomes a sequence of feature frames: the log energies of mel bands over 25 ms
//! Hann-windowed frames every 10 ms (after a first-difference pre-emphasis), optionally turned
//! into cepstra (a DCT of the log-mel frame), cut to the clip's voiced region, and normalised per
//! clip (every coefficient to mean 0 and variance 1 over the clip's frames, which removes the
//! recording level and channel colouring). Two clips are compared by dynamic time warping, which
//! lines their frames up in time so that a fast "seven" matches a slow one, and a clip gets the
//! label of its nearest reference clip (or a vote of the `k` nearest).
//!
//! What the references should be was measured (`tests/classify.rs`, the ignored
//! `measure_reference_sets` test prints the table): the espeak-ng digits of
//! `datasets/espeak-digits/make.sh` recognise the ten recorded digits (one speaker, Allison), and
//! the ten recorded digits recognise the espeak-ng digits, both far above the 10% of chance. The
//! recorded set is small: the prompts archive holds no other clip whose transcript is a digit word
//! (its `digits/0..9.wav` are the very same ten recordings), so "real references" are ten clips,
//! one per class.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rustfft::{Fft, FftPlanner, num_complex::Complex};

use jielong_core::{Accuracy, par_map, sorted_classes};

use crate::analysis::{frame_energies, hann};
use crate::datasets::{LabelledClip, open_dataset};

/// Length of a feature frame (seconds).
pub const WINDOW_SECONDS: f64 = 0.025;
/// Hop between feature frames (seconds).
pub const HOP_SECONDS: f64 = 0.010;
/// A clip whose loudest 25 ms frame is below this level (dB relative to a full-scale square wave)
/// has no voiced frames: it is silence.
pub const SILENCE_DBFS: f64 = -60.0;

/// How clips become features and how neighbours vote.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassifierSettings {
    /// Mel bands between [`ClassifierSettings::low_hz`] and half the sample rate.
    pub bands: usize,
    /// Lowest mel band edge (Hz).
    pub low_hz: f64,
    /// Cepstral coefficients kept from a DCT of the log-mel frame (c1.., c0 is left out because
    /// the per-clip normalisation removes level anyway); 0 keeps the log-mel energies themselves.
    pub cepstra: usize,
    /// Append each frame's first differences over time (delta features).
    pub deltas: bool,
    /// The voiced region runs from the first to the last frame whose energy is within this many dB
    /// of the loudest frame's. Wider than [`crate::analysis::VOICED_BELOW_LOUDEST_DB`] (20 dB) so
    /// that the faint fricatives that tell "six" and "seven" from the rest stay in.
    pub trim_below_loudest_db: f64,
    /// Neighbours that vote (1 = nearest neighbour); ties go to the tied class with the nearest
    /// reference.
    pub k: usize,
}

impl Default for ClassifierSettings {
    fn default() -> Self {
        Self {
            bands: 16,
            low_hz: 100.0,
            cepstra: 0,
            deltas: false,
            trim_below_loudest_db: 35.0,
            k: 1,
        }
    }
}

/// A clip's normalised feature frames, `dims` numbers each.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    pub dims: usize,
    /// `frames() * dims` numbers, frame after frame.
    pub values: Vec<f32>,
}

impl Features {
    pub fn frames(&self) -> usize {
        if self.dims == 0 {
            0
        } else {
            self.values.len() / self.dims
        }
    }

    fn frame(&self, i: usize) -> &[f32] {
        &self.values[i * self.dims..(i + 1) * self.dims]
    }
}

/// Why a clip has no features.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Unvoiced {
    TooShort { samples: usize, window: usize },
    Silent { loudest_dbfs: f64 },
}

impl Unvoiced {
    fn message(self, rate: u32) -> String {
        match self {
            Unvoiced::TooShort { samples, window } => format!(
                "no voiced frames: the clip has {samples} samples, shorter than one {:.0} ms frame ({window} samples at {rate} Hz)",
                WINDOW_SECONDS * 1000.0
            ),
            Unvoiced::Silent { loudest_dbfs } => format!(
                "no voiced frames: the clip is silent (its loudest {:.0} ms frame is at {loudest_dbfs:.1} dBFS, below {SILENCE_DBFS} dBFS)",
                WINDOW_SECONDS * 1000.0
            ),
        }
    }
}

/// Computes features at one sample rate: the FFT plan, window and mel filters, made once.
struct Extractor {
    rate: u32,
    window: Vec<f64>,
    hop: usize,
    fft: std::sync::Arc<dyn Fft<f64>>,
    nfft: usize,
    /// Per band: (first FFT bin, weights from that bin on).
    filters: Vec<(usize, Vec<f64>)>,
    /// `cepstra x bands` DCT-II rows (c1..), empty for log-mel features.
    dct: Vec<Vec<f64>>,
    settings: ClassifierSettings,
}

impl Extractor {
    fn new(rate: u32, settings: ClassifierSettings) -> Result<Self> {
        if rate < 1000 {
            bail!("the digit classifier needs audio at 1000 Hz or more (got {rate} Hz)");
        }
        if settings.bands < 2 {
            bail!("the digit classifier needs at least 2 mel bands");
        }
        if settings.cepstra >= settings.bands {
            bail!(
                "{} cepstra need more than {} mel bands",
                settings.cepstra,
                settings.bands
            );
        }
        if settings.k == 0 {
            bail!("the digit classifier needs k >= 1 neighbours");
        }
        let high = rate as f64 / 2.0;
        if !(settings.low_hz >= 0.0 && settings.low_hz < high) {
            bail!(
                "the lowest mel band edge {} Hz is not below {high} Hz",
                settings.low_hz
            );
        }
        let n = (WINDOW_SECONDS * rate as f64).round() as usize;
        let hop = (HOP_SECONDS * rate as f64).round() as usize;
        let nfft = n.next_power_of_two();
        let fft = FftPlanner::<f64>::new().plan_fft_forward(nfft);
        let filters = mel_filters(settings.bands, settings.low_hz, high, nfft, rate);
        let dct = (1..=settings.cepstra)
            .map(|c| {
                (0..settings.bands)
                    .map(|b| {
                        (std::f64::consts::PI * c as f64 * (b as f64 + 0.5) / settings.bands as f64)
                            .cos()
                            * (2.0 / settings.bands as f64).sqrt()
                    })
                    .collect()
            })
            .collect();
        Ok(Self {
            rate,
            window: hann(n),
            hop,
            fft,
            nfft,
            filters,
            dct,
            settings,
        })
    }

    fn features(&self, samples: &[f32]) -> Result<std::result::Result<Features, Unvoiced>> {
        if let Some(i) = samples.iter().position(|x| !x.is_finite()) {
            bail!("sample {i} of the clip is not a finite number");
        }
        let n = self.window.len();
        if samples.len() < n {
            return Ok(Err(Unvoiced::TooShort {
                samples: samples.len(),
                window: n,
            }));
        }
        let (starts, energy) = frame_energies(samples, n, self.hop);
        let loudest = energy.iter().cloned().fold(0.0, f64::max);
        let floor = db_to_power(SILENCE_DBFS);
        if loudest < floor {
            return Ok(Err(Unvoiced::Silent {
                loudest_dbfs: 10.0 * loudest.log10(),
            }));
        }
        let threshold = (loudest * db_to_power(-self.settings.trim_below_loudest_db)).max(floor);
        let first = energy
            .iter()
            .position(|&e| e >= threshold)
            .expect("the loudest frame is voiced");
        let last = energy
            .iter()
            .rposition(|&e| e >= threshold)
            .expect("the loudest frame is voiced");

        // Log-mel energies of the voiced frames (pre-emphasised: x[t] - 0.97 x[t-1]).
        let bands = self.settings.bands;
        let mut mel = Vec::with_capacity((last - first + 1) * bands);
        let mut buf = vec![Complex::new(0.0, 0.0); self.nfft];
        for &s in &starts[first..=last] {
            buf.fill(Complex::new(0.0, 0.0));
            for (i, (b, &w)) in buf.iter_mut().zip(&self.window).enumerate() {
                let t = s + i;
                let previous = if t > 0 { samples[t - 1] as f64 } else { 0.0 };
                *b = Complex::new((samples[t] as f64 - 0.97 * previous) * w, 0.0);
            }
            self.fft.process(&mut buf);
            for (start, weights) in &self.filters {
                let e: f64 = weights
                    .iter()
                    .zip(&buf[*start..])
                    .map(|(w, c)| w * c.norm_sqr())
                    .sum();
                mel.push(e);
            }
        }
        // A floor 80 dB below the clip's strongest band keeps log(0) out of digital silence.
        let strongest = mel.iter().cloned().fold(0.0, f64::max);
        let mel_floor = (strongest * 1e-8).max(1e-30);
        let log_mel: Vec<f64> = mel.iter().map(|&e| (e + mel_floor).ln()).collect();

        let mut rows: Vec<Vec<f64>> = log_mel
            .chunks_exact(bands)
            .map(|frame| {
                if self.dct.is_empty() {
                    frame.to_vec()
                } else {
                    self.dct
                        .iter()
                        .map(|row| row.iter().zip(frame).map(|(a, b)| a * b).sum())
                        .collect()
                }
            })
            .collect();
        if self.settings.deltas {
            let frames = rows.len();
            let deltas: Vec<Vec<f64>> = (0..frames)
                .map(|t| {
                    let (a, b) = (&rows[t.saturating_sub(1)], &rows[(t + 1).min(frames - 1)]);
                    a.iter().zip(b).map(|(x, y)| (y - x) / 2.0).collect()
                })
                .collect();
            for (row, d) in rows.iter_mut().zip(deltas) {
                row.extend(d);
            }
        }
        Ok(Ok(normalise(&rows)))
    }
}

/// Every coefficient to mean 0 and variance 1 over the clip's frames (a constant coefficient
/// becomes 0).
fn normalise(rows: &[Vec<f64>]) -> Features {
    let dims = rows.first().map_or(0, Vec::len);
    let frames = rows.len() as f64;
    let mut values = vec![0f32; rows.len() * dims];
    for d in 0..dims {
        let mean = rows.iter().map(|r| r[d]).sum::<f64>() / frames;
        let var = rows.iter().map(|r| (r[d] - mean).powi(2)).sum::<f64>() / frames;
        let scale = if var > 1e-12 { 1.0 / var.sqrt() } else { 0.0 };
        for (t, r) in rows.iter().enumerate() {
            values[t * dims + d] = ((r[d] - mean) * scale) as f32;
        }
    }
    Features { dims, values }
}

/// Triangular filters evenly spaced on the mel scale, each as (first bin, weights).
fn mel_filters(
    bands: usize,
    low: f64,
    high: f64,
    nfft: usize,
    rate: u32,
) -> Vec<(usize, Vec<f64>)> {
    let mel = |f: f64| 2595.0 * (1.0 + f / 700.0).log10();
    let hz = |m: f64| 700.0 * (10f64.powf(m / 2595.0) - 1.0);
    let (lo, hi) = (mel(low), mel(high));
    let edges: Vec<f64> = (0..bands + 2)
        .map(|i| hz(lo + (hi - lo) * i as f64 / (bands + 1) as f64))
        .collect();
    let bin_hz = rate as f64 / nfft as f64;
    let bins = nfft / 2 + 1;
    (0..bands)
        .map(|b| {
            let (left, centre, right) = (edges[b], edges[b + 1], edges[b + 2]);
            let weights: Vec<f64> = (0..bins)
                .map(|k| {
                    let f = k as f64 * bin_hz;
                    if f <= left || f >= right {
                        0.0
                    } else if f <= centre {
                        (f - left) / (centre - left)
                    } else {
                        (right - f) / (right - centre)
                    }
                })
                .collect();
            // A band narrower than a bin still gets its nearest bin, so that no band is empty.
            let first = weights.iter().position(|&w| w > 0.0);
            let last = weights.iter().rposition(|&w| w > 0.0);
            match (first, last) {
                (Some(f), Some(l)) => (f, weights[f..=l].to_vec()),
                _ => (
                    ((centre / bin_hz).round() as usize).min(bins - 1),
                    vec![1.0],
                ),
            }
        })
        .collect()
}

fn db_to_power(db: f64) -> f64 {
    10f64.powf(db / 10.0)
}

/// The features of one clip at `rate` Hz with the default [`ClassifierSettings`]; an error for a clip with
/// no voiced frames (silence, or shorter than one frame).
pub fn features(samples: &[f32], rate: u32) -> Result<Features> {
    features_with(samples, rate, ClassifierSettings::default())
}

/// [`features`] with other settings.
pub fn features_with(samples: &[f32], rate: u32, settings: ClassifierSettings) -> Result<Features> {
    Extractor::new(rate, settings)?
        .features(samples)?
        .map_err(|why| anyhow::anyhow!(why.message(rate)))
}

/// The dynamic time warping distance between two feature sequences: the cheapest alignment of
/// their frames (each step moves on in one or both, every frame matched at least once), with the
/// Euclidean distance between matched frames, a diagonal step counting twice, divided by the
/// total number of frames. It is 0 between a sequence and itself and symmetric, exactly.
pub fn dtw_distance(a: &Features, b: &Features) -> f64 {
    assert_eq!(a.dims, b.dims, "DTW between features of different sizes");
    let (n, m) = (a.frames(), b.frames());
    if n == 0 || m == 0 {
        return if n == m { 0.0 } else { f64::INFINITY };
    }
    let mut previous = vec![f64::INFINITY; m + 1];
    let mut current = vec![f64::INFINITY; m + 1];
    previous[0] = 0.0;
    for i in 1..=n {
        current[0] = f64::INFINITY;
        let x = a.frame(i - 1);
        for j in 1..=m {
            let y = b.frame(j - 1);
            let cost = x
                .iter()
                .zip(y)
                .map(|(p, q)| {
                    let d = (p - q) as f64;
                    d * d
                })
                .sum::<f64>()
                .sqrt();
            current[j] = (previous[j] + cost)
                .min(current[j - 1] + cost)
                .min(previous[j - 1] + 2.0 * cost);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[m] / (n + m) as f64
}

struct Reference {
    features: Features,
    label: usize,
    source: PathBuf,
}

/// Nearest-neighbour (DTW) classifier of short clips against labelled reference clips.
pub struct DigitClassifier {
    extractor: Extractor,
    references: Vec<Reference>,
    classes: Vec<String>,
    ignored: usize,
}

impl DigitClassifier {
    /// Keeps `clips` (all labelled, at `rate` Hz) as the references, with the default
    /// [`ClassifierSettings`]. The classes are the distinct labels, numbers in numeric order first.
    pub fn train(clips: &[LabelledClip], rate: u32) -> Result<Self> {
        Self::train_with(clips, rate, ClassifierSettings::default())
    }

    /// [`DigitClassifier::train`] with other settings.
    pub fn train_with(
        clips: &[LabelledClip],
        rate: u32,
        settings: ClassifierSettings,
    ) -> Result<Self> {
        if clips.is_empty() {
            bail!("the digit classifier needs reference clips");
        }
        if let Some(c) = clips.iter().find(|c| c.label.is_none()) {
            bail!(
                "the reference clip {} has no label: the digit classifier needs labelled clips",
                c.source.display()
            );
        }
        let classes = sorted_classes(clips.iter().filter_map(|c| c.label.as_deref()));
        let extractor = Extractor::new(rate, settings)?;
        let references = clips
            .iter()
            .map(|c| {
                let label = c.label.as_deref().expect("checked above");
                let features = extractor
                    .features(&c.samples)
                    .with_context(|| format!("reference clip {}", c.source.display()))?
                    .map_err(|why| {
                        anyhow::anyhow!(
                            "reference clip {}: {}",
                            c.source.display(),
                            why.message(rate)
                        )
                    })?;
                Ok(Reference {
                    features,
                    label: classes
                        .iter()
                        .position(|k| k == label)
                        .expect("a known label"),
                    source: c.source.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            extractor,
            references,
            classes,
            ignored: 0,
        })
    }

    /// References read with [`open_dataset`] (a folder of WAVs labelled by their names, a
    /// manifest...) at `rate` Hz, keeping the clips labelled with one of `classes` (the others,
    /// unlabelled ones included, are ignored: [`DigitClassifier::ignored`] counts them). Every one
    /// of `classes` needs at least one clip.
    pub fn from_path(path: &Path, rate: u32, classes: &[String]) -> Result<Self> {
        let dataset = open_dataset(path, rate).with_context(|| {
            format!(
                "cannot read the classifier's reference clips from {}",
                path.display()
            )
        })?;
        let total = dataset.clips.len();
        let kept: Vec<LabelledClip> = dataset
            .clips
            .into_iter()
            .filter(|c| c.label.as_ref().is_some_and(|l| classes.contains(l)))
            .collect();
        let missing: Vec<&str> = classes
            .iter()
            .filter(|k| !kept.iter().any(|c| c.label.as_ref() == Some(*k)))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} has no reference clip labelled {} (labels come from file names such as 4.wav or 4_anything.wav)",
                path.display(),
                missing.join(", ")
            );
        }
        let mut out = Self::train(&kept, rate)?;
        out.ignored = total - kept.len();
        Ok(out)
    }

    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The index of a class name in [`DigitClassifier::classes`].
    pub fn class_index(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c == name)
    }

    pub fn rate(&self) -> u32 {
        self.extractor.rate
    }

    /// Number of reference clips.
    pub fn references(&self) -> usize {
        self.references.len()
    }

    /// Clips [`DigitClassifier::from_path`] read but left out (no label, or not a wanted class).
    pub fn ignored(&self) -> usize {
        self.ignored
    }

    /// Where reference `i` came from.
    pub fn reference_source(&self, i: usize) -> &Path {
        &self.references[i].source
    }

    /// The features of a clip as this classifier computes them.
    pub fn features(&self, samples: &[f32]) -> Result<Features> {
        self.extractor
            .features(samples)?
            .map_err(|why| anyhow::anyhow!(why.message(self.rate())))
    }

    /// The class index of a clip at [`DigitClassifier::rate`] Hz: its nearest reference's label
    /// (or a vote of the `k` nearest). An error for a clip with no voiced frames.
    pub fn classify(&self, samples: &[f32]) -> Result<usize> {
        self.classify_some(samples)?
            .map_err(|why| anyhow::anyhow!(why.message(self.rate())))
    }

    /// The DTW distance from a clip to every reference, in reference order.
    pub fn distances(&self, samples: &[f32]) -> Result<Vec<f64>> {
        let query = self.features(samples)?;
        Ok(self
            .references
            .iter()
            .map(|r| dtw_distance(&query, &r.features))
            .collect())
    }

    fn classify_some(&self, samples: &[f32]) -> Result<std::result::Result<usize, Unvoiced>> {
        let query = match self.extractor.features(samples)? {
            Ok(f) => f,
            Err(why) => return Ok(Err(why)),
        };
        let mut order: Vec<(f64, usize)> = self
            .references
            .iter()
            .enumerate()
            .map(|(i, r)| (dtw_distance(&query, &r.features), i))
            .collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        order.truncate(self.extractor.settings.k);
        let mut votes = vec![0usize; self.classes.len()];
        for &(_, r) in &order {
            votes[self.references[r].label] += 1;
        }
        let top = votes.iter().copied().max().unwrap_or(0);
        // `order` is nearest first, so the first tied class met is the one with the nearest clip.
        let winner = order
            .iter()
            .map(|&(_, r)| self.references[r].label)
            .find(|&c| votes[c] == top);
        Ok(Ok(winner.expect("the classifier has reference clips")))
    }

    /// Classifies many clips on all cores; `None` for a clip with no voiced frames.
    pub fn classify_many<S: AsRef<[f32]> + Sync>(&self, clips: &[S]) -> Result<Vec<Option<usize>>> {
        par_map(clips, |_, c| self.classify_some(c.as_ref()).map(|r| r.ok()))
    }

    /// How many of `clips` are recognised as their `wanted` class (indices into
    /// [`DigitClassifier::classes`]), per class and overall. A clip with no voiced frames (a
    /// model that drew silence) counts as not recognised, in `unclassified`.
    pub fn evaluate<S: AsRef<[f32]> + Sync>(
        &self,
        clips: &[S],
        wanted: &[usize],
    ) -> Result<Accuracy> {
        if clips.len() != wanted.len() {
            bail!("{} clips but {} wanted classes", clips.len(), wanted.len());
        }
        let got = self.classify_many(clips)?;
        Accuracy::tally(&self.classes, wanted, &got)
    }
}
