//! WAV input of many rates and formats, resampling, WAV output, bad inputs.

mod common;

use std::path::Path;

use common::{peak_frequency, rms, sine};
use hound::{SampleFormat, WavSpec, WavWriter};
use jielong_audio::{read_wav, read_wav_native, write_wav};

/// Writes a sine (left channel at `amplitude`, other channels at half of it) in the given format.
fn write_test_wav(
    path: &Path,
    rate: u32,
    channels: u16,
    bits: u16,
    float: bool,
    seconds: f32,
    amplitude: f32,
) {
    let format = if float {
        SampleFormat::Float
    } else {
        SampleFormat::Int
    };
    let spec = WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: format,
    };
    let mut w = WavWriter::create(path, spec).unwrap();
    let full = ((1i64 << (bits - 1)) - 1) as f32;
    for x in sine(440.0, rate, seconds, amplitude) {
        for ch in 0..channels {
            let v = if ch == 0 { x } else { x * 0.5 };
            if float {
                w.write_sample(v).unwrap();
            } else if bits == 8 {
                w.write_sample((v * full).round() as i8).unwrap();
            } else if bits == 16 {
                w.write_sample((v * full).round() as i16).unwrap();
            } else {
                w.write_sample((v * full).round() as i32).unwrap();
            }
        }
    }
    w.finalize().unwrap();
}

#[test]
fn odd_rates_and_formats_become_8_khz_mono_at_the_right_pitch_length_and_level() {
    let dir = tempfile::tempdir().unwrap();
    // (rate, channels, bits, float, max error against the ideal sine: 8-bit is coarse)
    let cases = [
        (11_025, 2, 8, false, 0.02),
        (44_100, 1, 24, false, 0.003),
        (48_000, 1, 32, true, 0.003),
        (22_050, 1, 16, false, 0.003),
        (16_000, 3, 32, false, 0.003),
        (8_000, 1, 16, false, 0.003),
        (8_001, 2, 16, false, 0.003), // rates without a common factor
        (6_000, 1, 16, false, 0.003), // upsampling
    ];
    for (rate, channels, bits, float, tolerance) in cases {
        let path = dir
            .path()
            .join(format!("sine_{rate}_{channels}ch_{bits}bit.wav"));
        let seconds = 1.3;
        write_test_wav(&path, rate, channels, bits, float, seconds, 0.6);
        let input_len = (seconds * rate as f32).round() as f64;
        let out = read_wav(&path, 8000).unwrap();
        let expected_len = input_len * 8000.0 / rate as f64;
        assert!(
            (out.len() as f64 - expected_len).abs() <= 1.0,
            "{rate} Hz: {} samples, expected {expected_len}",
            out.len()
        );

        let freq = peak_frequency(&out, 8000);
        assert!(
            (freq - 440.0).abs() < 1.0,
            "{rate} Hz: the sine is at {freq} Hz"
        );

        // Mono is the mean of the channels: left at 0.6, the others at 0.3.
        let amplitude = (0.6 + 0.3 * (channels - 1) as f32) / channels as f32;
        // Aligned with the input (delay removed) and nothing lost at the tail: compare every
        // sample away from the two edges (where the band-limited resampler rings) with the ideal.
        let ideal = sine(440.0, 8000, seconds, amplitude);
        let edge = 40;
        let worst = (edge..out.len() - edge)
            .map(|i| (out[i] - ideal[i]).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < tolerance,
            "{rate} Hz {bits}-bit: worst error {worst}"
        );
        let tail = &out[out.len() - 200..out.len() - edge];
        assert!(
            (rms(tail) - amplitude as f64 / 2f64.sqrt()).abs() < 0.02,
            "{rate} Hz: the tail lost its level"
        );
    }
}

#[test]
fn native_reading_reports_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.wav");
    write_test_wav(&path, 11_025, 2, 8, false, 0.5, 0.5);
    let (samples, info) = read_wav_native(&path).unwrap();
    assert_eq!(
        (info.rate, info.channels, info.bits, info.float),
        (11_025, 2, 8, false)
    );
    assert_eq!(samples.len() as u32, info.frames);
    assert!(samples.iter().all(|x| x.abs() <= 1.0));
}

#[test]
fn written_wavs_read_back_within_16_bit_precision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.wav");
    let mut x = sine(300.0, 8000, 0.25, 0.9);
    x.push(2.0); // clipped, not wrapped
    write_wav(&path, &x, 8000).unwrap();
    let reader = hound::WavReader::open(&path).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 8000, 16)
    );
    let back = read_wav(&path, 8000).unwrap();
    assert_eq!(back.len(), x.len());
    for (a, b) in x.iter().zip(&back) {
        assert!((a.clamp(-1.0, 1.0) - b).abs() < 1.0 / 16_000.0, "{a} {b}");
    }
    // No temporary file left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn bad_inputs_give_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();

    let text = dir.path().join("notes.wav");
    std::fs::write(&text, "this is not audio").unwrap();
    let err = format!("{:#}", read_wav(&text, 8000).unwrap_err());
    assert!(
        err.contains("notes.wav") && err.contains("not a readable WAV"),
        "{err}"
    );

    let empty = dir.path().join("empty.wav");
    let spec = WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: SampleFormat::Int,
    };
    WavWriter::create(&empty, spec).unwrap().finalize().unwrap();
    let err = format!("{:#}", read_wav(&empty, 8000).unwrap_err());
    assert!(
        err.contains("empty.wav") && err.contains("no samples"),
        "{err}"
    );

    let missing = dir.path().join("missing.wav");
    let err = format!("{:#}", read_wav(&missing, 8000).unwrap_err());
    assert!(
        err.contains("missing.wav") && err.contains("cannot open"),
        "{err}"
    );

    // A WAV cut short in its data: its header promises more samples than there are.
    let cut = dir.path().join("cut.wav");
    write_test_wav(&cut, 8000, 1, 16, false, 0.5, 0.5);
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2 + 1]).unwrap();
    let err = format!("{:#}", read_wav(&cut, 8000).unwrap_err());
    assert!(err.contains("cut.wav"), "{err}");

    // Two samples at 48 kHz are a third of a sample at 8 kHz.
    let tiny = dir.path().join("tiny.wav");
    let spec = WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: SampleFormat::Int,
    };
    let mut w = WavWriter::create(&tiny, spec).unwrap();
    w.write_sample(1000i16).unwrap();
    w.write_sample(1000i16).unwrap();
    w.finalize().unwrap();
    let err = format!("{:#}", read_wav(&tiny, 8000).unwrap_err());
    assert!(
        err.contains("tiny.wav") && err.contains("too short"),
        "{err}"
    );

    let err = format!(
        "{:#}",
        write_wav(&dir.path().join("no/such/dir/x.wav"), &[0.0], 8000).unwrap_err()
    );
    assert!(err.contains("x.wav"), "{err}");
}
