//! WAV files in and out: any common WAV becomes mono samples in [-1, 1] at the model's rate.

use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rubato::{FftFixedInOut, Resampler};

/// What a WAV file holds, as its header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavInfo {
    pub rate: u32,
    pub channels: u16,
    pub bits: u16,
    pub float: bool,
    /// Samples per channel.
    pub frames: u32,
}

impl WavInfo {
    pub fn seconds(&self) -> f64 {
        self.frames as f64 / self.rate as f64
    }
}

/// Reads a WAV file as mono samples in [-1, 1] resampled to `target_rate` Hz.
///
/// Accepts 8-, 16-, 24- and 32-bit integer and 32-bit float WAVs with any number of channels
/// (mixed to mono as their mean) and any sample rate. The result has
/// `round(frames * target_rate / rate)` samples.
pub fn read_wav(path: &Path, target_rate: u32) -> Result<Vec<f32>> {
    let (samples, info) = read_wav_native(path)?;
    let out = resample(&samples, info.rate, target_rate)
        .with_context(|| format!("cannot resample {}", path.display()))?;
    if out.is_empty() {
        bail!(
            "{} is too short: less than one sample at {target_rate} Hz",
            path.display()
        );
    }
    Ok(out)
}

/// Reads a WAV file as mono samples in [-1, 1] at its own rate, with its header.
pub fn read_wav_native(path: &Path) -> Result<(Vec<f32>, WavInfo)> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = hound::WavReader::new(std::io::BufReader::new(file))
        .with_context(|| format!("{} is not a readable WAV file", path.display()))?;
    let spec = reader.spec();
    let info = WavInfo {
        rate: spec.sample_rate,
        channels: spec.channels,
        bits: spec.bits_per_sample,
        float: spec.sample_format == hound::SampleFormat::Float,
        frames: reader.duration(),
    };
    if info.channels == 0 || info.rate == 0 {
        bail!(
            "{} has a broken header ({} channels at {} Hz)",
            path.display(),
            info.channels,
            info.rate
        );
    }
    if info.frames == 0 {
        bail!("{} holds no samples (an empty WAV file)", path.display());
    }
    let interleaved: Vec<f32> = if info.float {
        if info.bits != 32 {
            bail!(
                "{} has {}-bit float samples; only 32-bit float is supported",
                path.display(),
                info.bits
            );
        }
        reader
            .samples::<f32>()
            .map(|s| {
                s.map(|x| {
                    if x.is_finite() {
                        x.clamp(-1.0, 1.0)
                    } else {
                        0.0
                    }
                })
            })
            .collect::<Result<_, _>>()
    } else {
        if !(1..=32).contains(&info.bits) {
            bail!(
                "{} has {}-bit samples, which no reader supports",
                path.display(),
                info.bits
            );
        }
        // Integers are signed after reading (8-bit WAVs are unsigned on disk; hound recentres them).
        let full_scale = (1u64 << (info.bits - 1)) as f64;
        reader
            .samples::<i32>()
            .map(|s| s.map(|x| (x as f64 / full_scale) as f32))
            .collect::<Result<_, _>>()
    }
    .with_context(|| format!("{} is damaged: its samples cannot be read", path.display()))?;

    let channels = info.channels as usize;
    let mono: Vec<f32> = interleaved
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    if mono.is_empty() {
        bail!("{} holds no samples (an empty WAV file)", path.display());
    }
    Ok((mono, info))
}

/// Resamples mono `samples` from `from` Hz to `to` Hz with rubato's FFT resampler (band-limited,
/// so nothing above the new Nyquist frequency folds back as aliasing).
///
/// The resampler's delay is removed and the tail flushed with silence, so the output is aligned
/// with the input (its sample `i` is at time `i / to`, as input sample `j` is at `j / from`) and
/// has exactly `round(len * to / from)` samples.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    if from == 0 || to == 0 {
        bail!("cannot resample from {from} Hz to {to} Hz");
    }
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let wanted = ((samples.len() as u64 * to as u64 + from as u64 / 2) / from as u64) as usize;
    // The FFT resampler works in blocks of k * from/gcd input samples. Its filter is centred on
    // input sample floor(block/2), a delay of block/2 output samples only when the block length
    // is even in units of from/gcd: so k is made even, and the delay is a whole number of samples.
    let unit = (from / gcd(from, to)) as usize;
    let k = 2 * 1024usize.div_ceil(2 * unit);
    let mut resampler = FftFixedInOut::<f32>::new(from as usize, to as usize, k * unit, 1)
        .map_err(|e| anyhow::anyhow!("cannot resample from {from} Hz to {to} Hz: {e}"))?;
    let delay = resampler.output_delay();
    let mut out = Vec::with_capacity(wanted + delay + resampler.output_frames_max());
    let mut chunk = Vec::new();
    let mut pos = 0;
    // Feed the input, then silence, until the delayed output covers the whole clip.
    while out.len() < wanted + delay {
        let need = resampler.input_frames_next();
        chunk.clear();
        chunk.extend_from_slice(&samples[pos.min(samples.len())..(pos + need).min(samples.len())]);
        chunk.resize(need, 0.0);
        pos += need;
        let produced = resampler
            .process(&[&chunk], None)
            .map_err(|e| anyhow::anyhow!("resampling failed: {e}"))?;
        out.extend_from_slice(&produced[0]);
    }
    out.drain(..delay);
    out.truncate(wanted);
    Ok(out)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The bytes of a 16-bit PCM mono WAV file of `samples` (clipped to [-1, 1]).
pub fn wav_bytes(samples: &[f32], rate: u32) -> Result<Vec<u8>> {
    if rate == 0 {
        bail!("cannot write a WAV file at 0 Hz");
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut bytes = Cursor::new(Vec::with_capacity(44 + 2 * samples.len()));
    {
        let mut writer = hound::WavWriter::new(&mut bytes, spec)?;
        for &x in samples {
            let x = if x.is_finite() {
                x.clamp(-1.0, 1.0)
            } else {
                0.0
            };
            writer.write_sample((x * i16::MAX as f32).round() as i16)?;
        }
        writer.finalize()?;
    }
    Ok(bytes.into_inner())
}

/// Writes `samples` as a 16-bit PCM mono WAV file, atomically (a reader never sees half a file).
pub fn write_wav(path: &Path, samples: &[f32], rate: u32) -> Result<()> {
    let bytes =
        wav_bytes(samples, rate).with_context(|| format!("cannot encode {}", path.display()))?;
    jielong_core::write_atomic(path, &bytes)
}
