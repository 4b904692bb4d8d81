//! Spectral flatness and energy tell speech from noise and silence; unigram entropy.

mod common;

use common::{shared_audio, sine};
use jielong_audio::analysis::{analyse, entropy_bits, unigram_entropy};
use jielong_audio::{AudioCodec, HeldOut, Quantisation, real_time_factor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn white_noise(seed: u64, n: usize, amplitude: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| rng.gen_range(-amplitude..amplitude))
        .collect()
}

#[test]
fn real_digits_are_far_less_flat_than_white_noise() {
    let digits = HeldOut::asterisk_digits(&shared_audio(), 8000).unwrap();
    let mut flat = Vec::new();
    for clip in digits.clips() {
        let a = analyse(&clip.samples, 8000).unwrap();
        let f = a.flatness.expect("a spoken digit has voiced frames");
        assert!(
            a.voiced_frames > 5 && a.voiced_frames < a.frames,
            "{:?}: {a:?}",
            clip.source
        );
        assert!(a.rms > 0.01, "{:?}: {a:?}", clip.source);
        flat.push(f);
    }
    let digits_mean = flat.iter().sum::<f64>() / flat.len() as f64;

    let noise: Vec<f64> = (0..10)
        .map(|seed| {
            analyse(&white_noise(seed, 8000, 0.5), 8000)
                .unwrap()
                .flatness
                .unwrap()
        })
        .collect();
    let noise_mean = noise.iter().sum::<f64>() / noise.len() as f64;
    println!(
        "mean spectral flatness: real digits {digits_mean:.4} (each {flat:.4?}), white noise {noise_mean:.4}"
    );
    assert!(digits_mean < 0.05, "real digits: {digits_mean}");
    assert!(flat.iter().all(|&f| f < 0.1), "{flat:?}");
    // e^-γ = 0.5615 for the periodogram of white noise.
    assert!(
        (noise_mean - 0.5615).abs() < 0.03,
        "white noise: {noise_mean}"
    );
    assert!(noise.iter().all(|&f| f > 0.45));
}

#[test]
fn a_tone_is_flatter_than_nothing_and_silence_has_no_energy() {
    let tone = analyse(&sine(440.0, 8000, 1.0, 0.5), 8000).unwrap();
    assert!(tone.flatness.unwrap() < 0.01, "{tone:?}");
    assert!((tone.rms - 0.5 / 2f64.sqrt()).abs() < 1e-3);
    assert_eq!(tone.voiced_frames, tone.frames);

    let silence = analyse(&vec![0.0; 8000], 8000).unwrap();
    assert_eq!(silence.rms, 0.0);
    assert_eq!(silence.flatness, None);
    assert_eq!(silence.voiced_frames, 0);
    // Faint hiss (-80 dBFS) is not speech either.
    let hiss = analyse(&white_noise(1, 8000, 1e-4), 8000).unwrap();
    assert!(hiss.rms < 1e-4 && hiss.flatness.is_none(), "{hiss:?}");
    // Too short for one frame, or no samples: no crash, nothing voiced.
    assert_eq!(analyse(&[0.5; 10], 8000).unwrap().flatness, None);
    assert_eq!(analyse(&[], 8000).unwrap().rms, 0.0);
    assert!(analyse(&[0.1], 0).is_err());
    // A digit with a second of silence after it keeps its flatness: silence is not voiced.
    let digits = HeldOut::asterisk_digits(&shared_audio(), 8000).unwrap();
    let seven = &digits.clips()[7].samples;
    let mut padded = seven.clone();
    padded.extend(vec![0.0; 8000]);
    let (a, b) = (
        analyse(seven, 8000).unwrap(),
        analyse(&padded, 8000).unwrap(),
    );
    assert_eq!(a.voiced_frames, b.voiced_frames);
    assert!((a.flatness.unwrap() - b.flatness.unwrap()).abs() < 1e-9);
}

#[test]
fn entropy_of_known_distributions() {
    assert!((entropy_bits(&[5, 5, 5, 5]) - 2.0).abs() < 1e-12);
    assert!((entropy_bits(&[1, 1, 2, 4, 0]) - 1.75).abs() < 1e-12);
    assert_eq!(entropy_bits(&[7]), 0.0);
    assert_eq!(entropy_bits(&[]), 0.0);

    // Clips made of level centres with known frequencies: 1/8, 1/8, 1/4, 1/2 -> 1.75 bits.
    let codec = AudioCodec::default();
    let level = |id| codec.token_to_sample(id).unwrap();
    let a: Vec<f32> = [10, 20, 30, 30].iter().map(|&id| level(id)).collect();
    let b: Vec<f32> = [40, 40, 40, 40].iter().map(|&id| level(id)).collect();
    let h = unigram_entropy(&codec, &[&a, &b]).unwrap();
    assert!((h - 1.75).abs() < 1e-12, "{h}");
    assert!(unigram_entropy(&codec, &[]).is_err());
}

#[test]
fn unigram_entropy_of_real_digits_and_noise() {
    let digits = HeldOut::asterisk_digits(&shared_audio(), 8000).unwrap();
    let clips: Vec<&[f32]> = digits
        .clips()
        .iter()
        .map(|c| c.samples.as_slice())
        .collect();
    let noise = white_noise(3, 80_000, 1.0);
    let mut report = Vec::new();
    for q in [Quantisation::MuLaw, Quantisation::Linear] {
        let codec = AudioCodec::new(q, 8000, Vec::new()).unwrap();
        let speech = unigram_entropy(&codec, &clips).unwrap();
        let hiss = unigram_entropy(&codec, &[&noise]).unwrap();
        report.push(format!(
            "{q}: digits {speech:.3} bits/sample, uniform noise {hiss:.3}"
        ));
        assert!(speech > 1.0 && speech < 8.0);
        assert!(hiss > 5.0 && hiss <= 8.0);
    }
    println!("unigram entropy: {}", report.join("; "));
    // Uniform noise over [-1, 1] fills the linear levels evenly: almost exactly 8 bits.
    let lin = AudioCodec::new(Quantisation::Linear, 8000, Vec::new()).unwrap();
    assert!(unigram_entropy(&lin, &[&noise]).unwrap() > 7.99);
    // Mu-law spends most levels near zero, so speech uses more of them than with linear levels.
    let mu = AudioCodec::default();
    assert!(unigram_entropy(&mu, &clips).unwrap() > unigram_entropy(&lin, &clips).unwrap() + 1.0);
}

#[test]
fn real_time_factor_is_audio_seconds_per_wall_second() {
    // Two seconds of 8 kHz audio made in four seconds: half real time.
    let rtf = real_time_factor(16_000, 8000, std::time::Duration::from_secs(4)).unwrap();
    assert!((rtf - 0.5).abs() < 1e-12);
    assert_eq!(
        real_time_factor(16_000, 8000, std::time::Duration::ZERO),
        None
    );
}
