//! A picture of clips: for each, its waveform above its spectrogram, to see at a glance whether
//! generated audio has the bursts, harmonics and formants of speech or is silence or noise.

use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use plotters::prelude::*;
use plotters::style::FontStyle;
use rustfft::{FftPlanner, num_complex::Complex};

use crate::analysis::hann;

/// Picture width in pixels.
pub const WIDTH: u32 = 1000;
/// Height of one clip's panel (title, waveform, spectrogram) in pixels.
pub const CLIP_HEIGHT: u32 = 400;
/// The spectrograms show this many dB below the loudest cell of all clips; quieter is black.
const DYNAMIC_RANGE_DB: f64 = 80.0;
/// At most this many spectrogram columns (longer clips use a longer hop).
const MAX_COLUMNS: usize = 450;

/// The vendored DejaVu Sans (see assets/DejaVu-LICENSE), so pictures never need system fonts.
static FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// The size of the picture [`plot`] draws for `clips` clips.
pub fn plot_size(clips: usize) -> (u32, u32) {
    (WIDTH, CLIP_HEIGHT * clips.max(1) as u32)
}

/// Writes a PNG with, for each `(title, samples)` clip at `rate` Hz, its waveform and its
/// spectrogram (STFT magnitude in dB, 32 ms Hann windows); written atomically.
pub fn plot(path: &Path, clips: &[(&str, &[f32])], rate: u32) -> Result<()> {
    let png = plot_png(clips, rate)?;
    jielong_core::write_atomic(path, &png)
}

/// The PNG bytes [`plot`] writes.
pub fn plot_png(clips: &[(&str, &[f32])], rate: u32) -> Result<Vec<u8>> {
    if clips.is_empty() {
        bail!("nothing to plot: no clips given");
    }
    if rate == 0 {
        bail!("cannot plot audio at 0 Hz");
    }
    register_font()?;
    let (width, height) = plot_size(clips.len());
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        // One dB scale for all clips, so that a quiet clip looks quiet beside its loud prompt.
        let spectrograms: Vec<Spectrogram> = clips
            .iter()
            .map(|(_, samples)| Spectrogram::new(samples, rate))
            .collect();
        let loudest = spectrograms
            .iter()
            .flat_map(|s| s.db.iter().flatten())
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max);
        for ((area, (title, samples)), stft) in root
            .split_evenly((clips.len(), 1))
            .iter()
            .zip(clips)
            .zip(&spectrograms)
        {
            draw_clip(area, title, samples, stft, loudest, rate)?;
        }
        root.present().map_err(draw_error)?;
    }
    let image = image::RgbImage::from_raw(width, height, pixels)
        .context("the picture buffer has the wrong size")?;
    let mut png = Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .context("cannot encode the picture as PNG")?;
    Ok(png.into_inner())
}

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        bail!("the built-in font could not be loaded")
    }
}

fn draw_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("cannot draw the picture: {e:?}")
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn draw_clip(
    area: &Area,
    title: &str,
    samples: &[f32],
    stft: &Spectrogram,
    max_db: f64,
    rate: u32,
) -> Result<()> {
    let seconds = (samples.len() as f64 / rate as f64).max(1.0 / rate as f64);
    let (top, bottom) = area.split_vertically(150);

    // Waveform: the min and max of the samples under each pixel column, so that long clips
    // draw as fast as short ones and no peak is lost.
    let mut wave = ChartBuilder::on(&top)
        .caption(
            format!("{title}  ({:.2} s)", samples.len() as f64 / rate as f64),
            (FAMILY, 18),
        )
        .margin(6)
        .margin_right(20)
        .x_label_area_size(0)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..seconds, -1.0f64..1.0)
        .map_err(draw_error)?;
    wave.configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(3)
        .y_label_formatter(&|v| format!("{v:.1}"))
        .y_desc("amplitude")
        .label_style((FAMILY, 12))
        .draw()
        .map_err(draw_error)?;
    let columns = (WIDTH as usize).min(samples.len().max(1));
    let per_column = samples.len().div_ceil(columns).max(1);
    let blue = RGBColor(30, 90, 170);
    wave.draw_series(samples.chunks(per_column).enumerate().map(|(i, chunk)| {
        let t = (i * per_column) as f64 / rate as f64;
        let lo = chunk.iter().cloned().fold(f32::INFINITY, f32::min) as f64;
        let hi = chunk.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        PathElement::new(vec![(t, lo), (t, hi)], blue)
    }))
    .map_err(draw_error)?;

    // Spectrogram.
    let nyquist = rate as f64 / 2.0;
    let mut spec = ChartBuilder::on(&bottom)
        .margin(6)
        .margin_right(20)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..seconds, 0.0..nyquist)
        .map_err(draw_error)?;
    spec.configure_mesh()
        .disable_mesh()
        .x_desc("seconds")
        .y_desc("Hz")
        .y_labels(5)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FAMILY, 12))
        .draw()
        .map_err(draw_error)?;
    let bin_hz = nyquist / (stft.bins() as f64 - 0.5).max(1.0);
    let frame_s = stft.hop as f64 / rate as f64;
    spec.draw_series(stft.db.iter().enumerate().flat_map(|(f, column)| {
        let t0 = stft.starts[f] as f64 / rate as f64;
        column.iter().enumerate().map(move |(k, &db)| {
            let level = ((db - (max_db - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB).clamp(0.0, 1.0);
            let y0 = (k as f64 - 0.5).max(0.0) * bin_hz;
            let y1 = ((k as f64 + 0.5) * bin_hz).min(nyquist);
            Rectangle::new(
                [(t0, y0), ((t0 + frame_s).min(seconds), y1)],
                colour(level).filled(),
            )
        })
    }))
    .map_err(draw_error)?;
    Ok(())
}

/// Short-time magnitude spectra in dB, one column per hop.
struct Spectrogram {
    hop: usize,
    /// First sample of each column's window, centred on its hop (so columns line up with time).
    starts: Vec<usize>,
    db: Vec<Vec<f64>>,
}

impl Spectrogram {
    fn new(samples: &[f32], rate: u32) -> Self {
        let n = ((0.032 * rate as f64) as usize).next_power_of_two().max(16);
        let hop = (n / 4).max(samples.len().div_ceil(MAX_COLUMNS)).max(1);
        let window = hann(n);
        let fft = FftPlanner::<f64>::new().plan_fft_forward(n);
        let mut buf = vec![Complex::new(0.0, 0.0); n];
        let mut starts = Vec::new();
        let mut db = Vec::new();
        let mut start = 0;
        while start < samples.len() {
            // The window is centred on the hop it describes; outside the clip is silence.
            let centre = start + hop / 2;
            for (i, b) in buf.iter_mut().enumerate() {
                let j = (centre + i).checked_sub(n / 2);
                let x = j.and_then(|j| samples.get(j)).copied().unwrap_or(0.0);
                *b = Complex::new(x as f64 * window[i], 0.0);
            }
            fft.process(&mut buf);
            db.push(
                buf[..=n / 2]
                    .iter()
                    .map(|c| 20.0 * (c.norm() + 1e-9).log10())
                    .collect(),
            );
            starts.push(start);
            start += hop;
        }
        Self { hop, starts, db }
    }

    fn bins(&self) -> usize {
        self.db.first().map_or(1, Vec::len)
    }
}

/// A dark-to-bright colour map (black, purple, red, orange, pale yellow): loud is bright.
fn colour(level: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (0.0, 0.0, 4.0),
        (85.0, 15.0, 110.0),
        (190.0, 55.0, 85.0),
        (250.0, 140.0, 10.0),
        (252.0, 255.0, 165.0),
    ];
    let x = level.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}
