//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::f32::consts::PI;
use std::path::{Path, PathBuf};

use rustfft::{FftPlanner, num_complex::Complex};

/// `shared/data/audio`, beside the repository (CI lays shared/ there too); the tests that read
/// real recordings need it.
pub fn shared_audio() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/audio");
    assert!(
        dir.is_dir(),
        "the shared audio data is missing: expected {}",
        dir.display()
    );
    dir
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn sine(freq: f32, rate: u32, seconds: f32, amplitude: f32) -> Vec<f32> {
    let n = (seconds * rate as f32).round() as usize;
    (0..n)
        .map(|i| amplitude * (2.0 * PI * freq * i as f32 / rate as f32).sin())
        .collect()
}

/// The frequency of the strongest peak of the spectrum, measured independently of the crate:
/// Hann window, FFT of the whole clip, then parabolic interpolation around the peak bin.
pub fn peak_frequency(samples: &[f32], rate: u32) -> f64 {
    let n = samples.len();
    let mut buf: Vec<Complex<f64>> = samples
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos();
            Complex::new(x as f64 * w, 0.0)
        })
        .collect();
    FftPlanner::new().plan_fft_forward(n).process(&mut buf);
    let mag: Vec<f64> = buf[..n / 2].iter().map(|c| c.norm()).collect();
    let k = (1..mag.len() - 1)
        .max_by(|&a, &b| mag[a].total_cmp(&mag[b]))
        .unwrap();
    let (a, b, c) = (mag[k - 1].ln(), mag[k].ln(), mag[k + 1].ln());
    let offset = 0.5 * (a - c) / (a - 2.0 * b + c);
    (k as f64 + offset) * rate as f64 / n as f64
}

pub fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64).sqrt()
}
