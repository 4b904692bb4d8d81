//! `jielong` on audio, through the real binary: a tiny spoken-digit model trained for a second
//! on the small espeak-ng set, a tiny model of a 440 Hz tone, then generation, continuation,
//! evaluation, the held-out digits, and a clear error (never a panic) for every bad input.
//!
//! Expected values are computed here from the data: WAVs are read back with `hound`, mu-law is
//! re-implemented from its definition (mu = 255, 256 levels, a level's centre decoded), the
//! frequency of a clip is measured with a DFT written here.

mod common;

use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

const RATE: u32 = 8000;

// ---------------------------------------------------------------------------------------------
// WAVs and mu-law, independently of the crates.

/// Mono 16-bit samples of a WAV and its spec.
fn read_wav(path: &Path) -> (Vec<i16>, hound::WavSpec) {
    let mut r = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("{} is not a WAV: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(
        (spec.bits_per_sample, spec.sample_format),
        (16, hound::SampleFormat::Int),
        "{}",
        path.display()
    );
    (r.samples::<i16>().map(Result::unwrap).collect(), spec)
}

fn write_wav(path: &Path, samples: &[f64], rate: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &x in samples {
        w.write_sample((x * 32767.0).round() as i16).unwrap();
    }
    w.finalize().unwrap();
}

fn sine(freq: f64, amplitude: f64, phase: f64, seconds: f64) -> Vec<f64> {
    let n = (seconds * RATE as f64).round() as usize;
    (0..n)
        .map(|i| amplitude * (2.0 * PI * freq * i as f64 / RATE as f64 + phase).sin())
        .collect()
}

/// The mu-law level (0..=255) of a sample in [-1, 1]: y = sign(x) ln(1 + 255|x|) / ln 256,
/// then 128 equal steps on each side of zero.
fn mu_law(x: f64) -> i32 {
    let y = x.signum() * (255.0 * x.abs()).ln_1p() / 256f64.ln();
    (((y + 1.0) * 128.0).floor() as i32).clamp(0, 255)
}

/// The sample a level stands for: its centre, expanded.
fn mu_law_centre(level: i32) -> f64 {
    let y = (level as f64 + 0.5) / 128.0 - 1.0;
    y.signum() * ((256f64.ln() * y.abs()).exp() - 1.0) / 255.0
}

/// A 16-bit sample as the program reads it (full scale 32768).
fn unit(s: i16) -> f64 {
    s as f64 / 32768.0
}

/// The frequency with the most power (Hann window, a DFT every 2 Hz from 20 Hz to Nyquist).
fn peak_frequency(x: &[f64]) -> f64 {
    let n = x.len();
    let windowed: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| v * (0.5 - 0.5 * (2.0 * PI * i as f64 / n as f64).cos()))
        .collect();
    let power = |f: f64| {
        let w = 2.0 * PI * f / RATE as f64;
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &v) in windowed.iter().enumerate() {
            re += v * (w * i as f64).cos();
            im += v * (w * i as f64).sin();
        }
        re * re + im * im
    };
    (10..RATE / 4)
        .map(|k| 2.0 * k as f64)
        .max_by(|&a, &b| power(a).total_cmp(&power(b)))
        .unwrap()
}

/// Frequency from the zero-crossing rate: two crossings per period.
fn zero_crossing_frequency(x: &[f64]) -> f64 {
    let crossings = x
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    crossings as f64 / 2.0 / (x.len() as f64 / RATE as f64)
}

fn rms(x: &[f64]) -> f64 {
    (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt()
}

// ---------------------------------------------------------------------------------------------
// Data and tiny models, made once per test binary.

/// The 20 clips of `datasets/espeak-digits/make.sh ... small` (22.05 kHz, named by digit).
fn espeak_digits() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch().join("espeak-digits");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/espeak-digits/make.sh");
        let o = std::process::Command::new("sh")
            .arg(&script)
            .arg(&dir)
            .arg("small")
            .output()
            .expect("sh runs");
        assert!(
            o.status.success(),
            "make.sh failed (is espeak-ng installed?): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        dir
    })
}

fn wav_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .collect();
    files.sort();
    files
}

fn config(context: usize, steps: usize, lr: f64, codec: &str, data: &str) -> String {
    format!(
        r#"{{"model": {{"hidden": 32, "layers": 2, "heads": 4, "context": {context}}},
            "train": {{"steps": {steps}, "batch_size": 8, "seq_len": {context}, "warmup_steps": 5,
                      "learning_rate": {lr}, "eval_every": {steps}, "checkpoint_every": {steps}}},
            "codec": {codec}, "data": {data}}}"#
    )
}

/// A spoken-digit model (classes 0..9), context 64, 30 steps.
fn speech_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let out = scratch().join("speech");
        train_with(
            "audio",
            espeak_digits(),
            &out,
            &config(64, 30, 0.003, "{}", "{}"),
        );
        out
    })
}

/// Ten half-second 440 Hz tones of different amplitudes and phases, 8 kHz.
fn tones() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch().join("tones");
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..10 {
            write_wav(
                &dir.join(format!("tone_{i}.wav")),
                &sine(440.0, 0.3 + 0.05 * i as f64, 0.6 * i as f64, 0.5),
                RATE,
            );
        }
        dir
    })
}

/// An unconditional model of the tones, context 64, 200 steps (a few seconds).
fn tone_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let out = scratch().join("tone");
        let started = std::time::Instant::now();
        train_with(
            "audio",
            tones(),
            &out,
            &config(64, 200, 0.005, r#"{"conditional": false}"#, "{}"),
        );
        eprintln!(
            "the tone model trained in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        out
    })
}

fn asterisk(digit: u32) -> PathBuf {
    shared(&format!("audio/asterisk_digits/{digit}.wav"))
}

fn temp(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// Generation.

#[test]
fn generate_writes_an_8khz_mono_wav_of_the_asked_length_and_a_plot() {
    let m = speech_model();
    let dir = temp("gen-audio");
    let run = |name: &str, seed: &str, extra: &[&str]| -> PathBuf {
        let out = dir.join(format!("{name}.wav"));
        let mut args = vec![
            "generate",
            "audio",
            "--model",
            p(m),
            "--class",
            "4",
            "--seconds",
            "0.5",
            "--seed",
            seed,
            "--out",
            p(&out),
        ];
        args.extend_from_slice(extra);
        ok(&args);
        out
    };
    let plot = dir.join("a.png");
    let a = run("a", "3", &["--plot", p(&plot)]);
    let (samples, spec) = read_wav(&a);
    assert_eq!((spec.channels, spec.sample_rate), (1, RATE));
    assert_eq!(samples.len(), 4000, "0.5 s at 8 kHz");
    let picture = image::open(&plot).unwrap();
    assert!(picture.width() > 100 && picture.height() > 100);

    // Seeds: the same gives the same file, another another clip.
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(run("b", "3", &[])).unwrap()
    );
    assert_ne!(read_wav(&a).0, read_wav(&run("c", "4", &[])).0);
    // A batch writes OUT, OUT-1...; clip i is drawn with seed + i.
    let batch = run("batch", "3", &["--count", "2"]);
    assert_eq!(read_wav(&batch).0, samples);
    assert_eq!(
        read_wav(&dir.join("batch-1.wav")).0,
        read_wav(&dir.join("c.wav")).0
    );

    // With a prompt, the plot shows the prompt too: a second panel as tall as the first.
    let plot2 = dir.join("with-prompt.png");
    run(
        "d",
        "3",
        &[
            "--prompt-audio",
            p(&asterisk(4)),
            "--keep-seconds",
            "0.1",
            "--plot",
            p(&plot2),
        ],
    );
    let picture2 = image::open(&plot2).unwrap();
    assert_eq!(
        (picture2.width(), picture2.height()),
        (picture.width(), 2 * picture.height())
    );
}

#[test]
fn the_window_slides_beyond_the_context() {
    let m = speech_model();
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(m.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architecture"]["context_len"], 64);
    let dir = temp("gen-slide");
    let out = dir.join("long.wav");
    // 0.2 s is 1600 samples, 25 contexts.
    let o = ok(&[
        "generate",
        "audio",
        "--model",
        p(m),
        "--class",
        "2",
        "--seconds",
        "0.2",
        "--count",
        "2",
        "--seed",
        "1",
        "--out",
        p(&out),
    ]);
    for f in [out.clone(), dir.join("long-1.wav")] {
        assert_eq!(read_wav(&f).0.len(), 1600);
    }
    let err = stderr(&o);
    let slid: usize = err
        .split("the window slid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no slide reported:\n{err}"));
    assert!(slid >= 1, "{err}");
}

#[test]
fn continuation_keeps_the_mu_law_prompt() {
    let m = speech_model();
    let dir = temp("gen-continue");
    let out = dir.join("four.wav");
    // The recorded "four" is 8 kHz already: no resampling between it and the prompt.
    let (prompt, spec) = read_wav(&asterisk(4));
    assert_eq!((spec.sample_rate, spec.channels), (RATE, 1));
    ok(&[
        "generate",
        "audio",
        "--model",
        p(m),
        "--class",
        "4",
        "--prompt-audio",
        p(&asterisk(4)),
        "--keep-seconds",
        "0.1",
        "--seconds",
        "0.3",
        "--count",
        "2",
        "--seed",
        "2",
        "--out",
        p(&out),
    ]);
    for f in [out.clone(), dir.join("four-1.wav")] {
        let (clip, _) = read_wav(&f);
        assert_eq!(clip.len(), 2400);
        // The first 0.1 s is the prompt after a mu-law round trip: the centre of each sample's
        // level, written as 16-bit (one LSB of rounding allowed).
        for i in 0..800 {
            let expected = (mu_law_centre(mu_law(unit(prompt[i]))) * 32767.0).round();
            assert!(
                (clip[i] as f64 - expected).abs() <= 1.0,
                "{}: sample {i} is {} but the prompt's level centre is {expected} (prompt {})",
                f.display(),
                clip[i],
                prompt[i]
            );
        }
        // What follows is drawn by the model, not the rest of the recording.
        let same = (800..2400)
            .filter(|&i| mu_law(unit(clip[i])) == mu_law(unit(prompt[i])))
            .count();
        assert!(
            same < 800,
            "{same} of 1600 continued samples are the recording's own"
        );
    }
    // A prompt at another rate (espeak's 22.05 kHz) is resampled to the model's.
    let other = wav_files(espeak_digits())[0].clone();
    assert_eq!(read_wav(&other).1.sample_rate, 22050);
    let out2 = dir.join("resampled.wav");
    ok(&[
        "generate",
        "audio",
        "--model",
        p(m),
        "--prompt-audio",
        p(&other),
        "--keep-seconds",
        "0.05",
        "--seconds",
        "0.1",
        "--out",
        p(&out2),
    ]);
    let (clip, spec) = read_wav(&out2);
    assert_eq!((spec.sample_rate, clip.len()), (RATE, 800));
}

#[test]
fn a_tone_model_continues_a_440_hz_prompt_at_440_hz() {
    let m = tone_model();
    let dir = temp("gen-tone");
    // A prompt the model never saw (another amplitude and phase than the training tones).
    let prompt = dir.join("tone.wav");
    let tone = sine(440.0, 0.5, 0.5, 0.1);
    assert!(
        (peak_frequency(&tone) - 440.0).abs() <= 8.0,
        "the frequency measure works on the prompt itself"
    );
    write_wav(&prompt, &tone, RATE);
    for (name, dice) in [
        ("greedy", vec!["--greedy"]),
        ("cool", vec!["--temperature", "0.3", "--seed", "1"]),
    ] {
        let out = dir.join(format!("{name}.wav"));
        let mut args = vec![
            "generate",
            "audio",
            "--model",
            p(m),
            "--prompt-audio",
            p(&prompt),
            "--keep-seconds",
            "0.05",
            "--seconds",
            "0.3",
            "--out",
            p(&out),
        ];
        args.extend(dice);
        ok(&args);
        let (clip, _) = read_wav(&out);
        assert_eq!(clip.len(), 2400);
        // The 0.25 s the model drew.
        let drawn: Vec<f64> = clip[400..].iter().map(|&s| unit(s)).collect();
        let (peak, zc, level) = (
            peak_frequency(&drawn),
            zero_crossing_frequency(&drawn),
            rms(&drawn),
        );
        eprintln!("{name}: peak {peak:.0} Hz, zero crossings {zc:.0} Hz, RMS {level:.3}");
        assert!(
            level > 0.1,
            "{name}: the continuation is (nearly) silent: RMS {level:.3}"
        );
        assert!(
            (peak - 440.0).abs() <= 44.0,
            "{name}: the continuation's strongest frequency is {peak} Hz, not about 440"
        );
        assert!(
            (zc - 440.0).abs() <= 44.0,
            "{name}: the continuation crosses zero at {zc} Hz, not about 440"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation and the held-out digits.

#[test]
fn eval_reports_bits_per_sample_and_the_unigram_entropy_of_the_data() {
    let m = speech_model();
    let data = shared("audio/asterisk_digits");
    let v = ok_json(&[
        "eval",
        "audio",
        "--model",
        p(m),
        "--data",
        p(&data),
        "--format",
        "json",
    ]);

    let mut total = 0usize;
    let mut counts = [0u64; 256];
    for d in 0..10 {
        let (samples, spec) = read_wav(&asterisk(d));
        assert_eq!((spec.sample_rate, spec.channels), (RATE, 1));
        total += samples.len();
        for s in samples {
            counts[mu_law(unit(s)) as usize] += 1;
        }
    }
    let n = total as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| -(c as f64 / n) * (c as f64 / n).log2())
        .sum();
    assert!(
        (entropy - 6.94).abs() < 0.05,
        "the recorded digits' mu-law entropy is about 6.94 bits, measured {entropy}"
    );

    assert_eq!(v["clips"], 10, "{v}");
    assert_eq!(
        v["tokens"], total,
        "every sample of the ten clips is scored once: {v}"
    );
    let unigram = v["unigram_entropy_bits"].as_f64().unwrap();
    assert!(
        (unigram - entropy).abs() < 1e-3,
        "unigram entropy {unigram}, measured here {entropy}"
    );
    let nats = v["nats_per_token"].as_f64().unwrap();
    let bits = v["bits_per_sample"].as_f64().unwrap();
    assert!(bits > 0.0 && bits < 10.0, "{v}");
    assert!((bits - nats / std::f64::consts::LN_2).abs() < 1e-9);
    assert!((v["bits_per_token"].as_f64().unwrap() - bits).abs() < 1e-12);
    assert!((v["bits_below_unigram"].as_f64().unwrap() - (unigram - bits)).abs() < 1e-9);
    // The files are named 0..9, the model's classes: each is scored given its class.
    assert_eq!(v["conditioned_on_labels"], true);
}

#[test]
fn eval_checks_drawn_clips_against_the_recorded_digits() {
    let m = speech_model();
    let data = shared("audio/asterisk_digits");
    let v = ok_json(&[
        "eval",
        "audio",
        "--model",
        p(m),
        "--data",
        p(&data),
        "--check-classes",
        "2",
        "--format",
        "json",
    ]);
    let check = &v["class_check"];
    assert_eq!(check["samples_per_class"], 2, "{v}");
    assert_eq!(
        check["references"], 10,
        "the ten recorded digits are the references: {v}"
    );
    assert!(
        (check["chance"].as_f64().unwrap() - 0.1).abs() < 1e-12,
        "{v}"
    );
    let rows = check["per_class"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["class"].as_str().unwrap()).collect();
    assert_eq!(names, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    let mut correct = 0;
    for r in rows {
        assert_eq!(r["total"], 2, "{r}");
        let (c, u) = (
            r["correct"].as_u64().unwrap(),
            r["unclassified"].as_u64().unwrap(),
        );
        assert!(c + u <= 2, "{r}");
        correct += c;
    }
    assert!(
        (check["recognised"].as_f64().unwrap() - correct as f64 / 20.0).abs() < 1e-12,
        "{v}"
    );

    fails(
        &[
            "eval",
            "audio",
            "--model",
            p(m),
            "--data",
            p(&data),
            "--check-classes",
            "0",
        ],
        "at least 1",
    );
    fails(
        &[
            "eval",
            "audio",
            "--model",
            p(tone_model()),
            "--data",
            p(tones()),
            "--check-classes",
            "1",
        ],
        "class-conditional",
    );
    // Guided draws: the setting is echoed, and a clip is drawn for every request.
    let g = ok_json(&[
        "eval",
        "audio",
        "--model",
        p(m),
        "--data",
        p(&data),
        "--check-classes",
        "1",
        "--guidance",
        "2",
        "--format",
        "json",
    ]);
    assert_eq!(g["class_check"]["guidance"], 2.0, "{g}");
    let rows = g["class_check"]["per_class"].as_array().unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r["total"].as_u64().unwrap())
            .sum::<u64>(),
        10
    );
    let wav = temp("guided").join("g.wav");
    fails(
        &[
            "generate",
            "audio",
            "--model",
            p(m),
            "--guidance",
            "2",
            "--out",
            p(&wav),
        ],
        "--class",
    );
    fails(
        &[
            "generate",
            "audio",
            "--model",
            p(tone_model()),
            "--class",
            "1",
            "--guidance",
            "2",
            "--out",
            p(&wav),
        ],
        "class",
    );
    assert!(!wav.exists());

    // References must cover every class the model can be asked for.
    let few = temp("few-references");
    for d in 0..3 {
        std::fs::copy(asterisk(d), few.join(format!("{d}.wav"))).unwrap();
    }
    fails(
        &[
            "eval",
            "audio",
            "--model",
            p(m),
            "--data",
            p(&few),
            "--check-classes",
            "1",
        ],
        "no clip of class \"3\"",
    );
}

/// Samples of a WAV read at 8 kHz, by the documented length rule round(frames * 8000 / rate).
fn samples_at_8k(path: &Path) -> usize {
    let r = hound::WavReader::open(path).unwrap();
    let (frames, rate) = (r.duration() as u64, r.spec().sample_rate as u64);
    ((frames * RATE as u64 + rate / 2) / rate) as usize
}

#[test]
fn training_drops_copies_of_the_held_out_digits() {
    // A training folder with the espeak digits and a copy of the held-out recording of "three"
    // under another name (so only its content gives it away).
    let data = temp("with-a-held-out-copy");
    for f in wav_files(espeak_digits()) {
        std::fs::copy(&f, data.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::copy(asterisk(3), data.join("three.wav")).unwrap();
    let heldout = shared("audio/asterisk_digits");
    let out = scratch().join("speech-heldout");
    let data_section = format!(r#"{{"heldout": {}}}"#, Value::from(p(&heldout)));
    let o = train_with(
        "audio",
        &data,
        &out,
        &config(64, 5, 0.003, "{}", &data_section),
    );

    // The copy is gone: its label "three" is no class, and it is no training token.
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let classes: Vec<String> = serde_json::from_value(config["codec"]["classes"].clone()).unwrap();
    assert_eq!(classes, (0..10).map(|d| d.to_string()).collect::<Vec<_>>());
    // Each clip is its samples and an END token.
    let espeak: usize = wav_files(espeak_digits())
        .iter()
        .map(|f| samples_at_8k(f) + 1)
        .sum();
    let held: usize = (0..10).map(|d| samples_at_8k(&asterisk(d)) + 1).sum();
    let err = stderr(&o);
    assert!(
        err.contains(&format!("on {espeak} tokens ({held} held out)")),
        "expected {espeak} training and {held} held-out tokens:\n{err}"
    );
    let card = std::fs::read_to_string(out.join("MODEL.md")).unwrap();
    assert!(
        card.contains("asterisk_digits") && card.contains("1 copies"),
        "MODEL.md says nothing of the removed copy:\n{card}"
    );
}

#[test]
fn training_on_the_held_out_digits_themselves_is_refused() {
    let heldout = shared("audio/asterisk_digits");
    let out = scratch().join("never-trained-on-heldout");
    let config_path = scratch().join("heldout-itself.json");
    std::fs::write(
        &config_path,
        config(
            64,
            2,
            0.003,
            "{}",
            &format!(r#"{{"heldout": {}}}"#, Value::from(p(&heldout))),
        ),
    )
    .unwrap();
    fails(
        &[
            "train",
            "audio",
            "--data",
            p(&heldout),
            "--out",
            p(&out),
            "--config",
            p(&config_path),
        ],
        "no training clips left",
    );
    assert!(!out.join("model.safetensors").exists());
}

#[test]

fn unknown_audio_config_keys_are_refused() {
    let out = scratch().join("never-typo");
    let path = scratch().join("typo.json");
    let heldout = Value::from(p(&shared("audio/asterisk_digits"))).to_string();
    std::fs::write(
        &path,
        config(64, 2, 0.003, "{}", &format!(r#"{{"held_out": {heldout}}}"#)),
    )
    .unwrap();
    fails(
        &[
            "train",
            "audio",
            "--data",
            p(espeak_digits()),
            "--out",
            p(&out),
            "--config",
            p(&path),
        ],
        "held_out",
    );
    std::fs::write(
        &path,
        config(64, 2, 0.003, r#"{"quantization": "linear"}"#, "{}"),
    )
    .unwrap();
    fails(
        &[
            "train",
            "audio",
            "--data",
            p(espeak_digits()),
            "--out",
            p(&out),
            "--config",
            p(&path),
        ],
        "quantization",
    );
}

#[test]

fn a_small_folder_without_a_held_out_set_trains() {
    let data = temp("four-tones");
    for i in 0..4 {
        write_wav(
            &data.join(format!("tone_{i}.wav")),
            &sine(440.0, 0.5, i as f64, 0.25),
            RATE,
        );
    }
    let out = scratch().join("four-tones-model");
    train_with(
        "audio",
        &data,
        &out,
        &config(64, 2, 0.003, r#"{"conditional": false}"#, "{}"),
    );
}

// ---------------------------------------------------------------------------------------------
// Bad inputs.

#[test]

fn seconds_shorter_than_one_sample_name_the_seconds() {
    let out = scratch().join("too-short.wav");
    fails(
        &[
            "generate",
            "audio",
            "--model",
            p(speech_model()),
            "--seconds",
            "0.00001",
            "--out",
            p(&out),
        ],
        "--seconds",
    );
}

#[test]
fn bad_generate_inputs_get_clear_errors() {
    let m = p(speech_model()).to_string();
    let dir = temp("bad-generate");
    let out = dir.join("x.wav");
    let o = p(&out);
    let tone = dir.join("tone.wav");
    write_wav(&tone, &sine(440.0, 0.5, 0.0, 0.1), RATE);
    let bad = |extra: &[&str], needle: &str| {
        let mut args = vec!["generate", "audio", "--model", m.as_str(), "--out", o];
        args.extend_from_slice(extra);
        fails(&args, needle);
    };

    // Prompt clips: not a WAV, an empty WAV, a missing file.
    let text = dir.join("text.wav");
    std::fs::write(&text, "RIFF? no, just text").unwrap();
    bad(
        &["--prompt-audio", p(&text), "--keep-seconds", "0.05"],
        "not a readable WAV",
    );
    let png = dir.join("picture.wav");
    std::fs::copy(m.clone() + "/loss.png", &png).unwrap();
    bad(
        &["--prompt-audio", p(&png), "--keep-seconds", "0.05"],
        "not a readable WAV",
    );
    let empty = dir.join("empty.wav");
    write_wav(&empty, &[], RATE);
    bad(
        &["--prompt-audio", p(&empty), "--keep-seconds", "0.05"],
        "no samples",
    );
    bad(
        &[
            "--prompt-audio",
            p(&dir.join("missing.wav")),
            "--keep-seconds",
            "0.05",
        ],
        "cannot open",
    );
    // How much to keep: longer than the clip, as long as the output, zero or negative, alone.
    bad(
        &[
            "--prompt-audio",
            p(&tone),
            "--keep-seconds",
            "0.2",
            "--seconds",
            "1",
        ],
        "shorter than the 0.2 s to keep",
    );
    bad(
        &[
            "--prompt-audio",
            p(&tone),
            "--keep-seconds",
            "0.1",
            "--seconds",
            "0.1",
        ],
        "already as long",
    );
    bad(
        &["--prompt-audio", p(&tone), "--keep-seconds", "0"],
        "positive",
    );
    bad(
        &["--prompt-audio", p(&tone), "--keep-seconds", "-0.1"],
        "positive",
    );
    bad(&["--keep-seconds", "0.05"], "--prompt-audio");
    bad(&["--prompt-audio", p(&tone)], "--keep-seconds");
    // Lengths, counts, classes, dice.
    for seconds in ["0", "-1", "nan", "601"] {
        bad(&["--seconds", seconds], "--seconds");
    }
    bad(&["--count", "0"], "--count");
    for class in ["12", "four", ""] {
        bad(&["--class", class], "unknown class");
    }
    bad(&["--class", "1", "--temperature", "-1"], "temperature");
    bad(&["--class", "1", "--top-p", "0"], "top-p");
    fails(
        &[
            "generate",
            "audio",
            "--model",
            p(tone_model()),
            "--class",
            "4",
            "--out",
            o,
        ],
        "no class labels",
    );
    fails(
        &[
            "generate",
            "audio",
            "--model",
            &m,
            "--out",
            p(&dir.join("no/such/folder/x.wav")),
        ],
        "cannot write",
    );
    assert!(!out.exists(), "no failed run wrote a clip");

    // An audio model is not an image or text model.
    fails(
        &[
            "generate",
            "image",
            "--model",
            &m,
            "--out",
            p(&dir.join("x.png")),
        ],
        "audio model",
    );
    fails(
        &["generate", "text", "--model", &m, "--prompt", "seven"],
        "audio model",
    );
    fails(
        &[
            "eval",
            "image",
            "--model",
            &m,
            "--data",
            p(&shared("images/sklearn_digits.csv.gz")),
        ],
        "audio model",
    );
    fails(
        &[
            "generate",
            "audio",
            "--model",
            p(&dir.join("no-model")),
            "--out",
            o,
        ],
        "does not exist",
    );
}

#[test]
fn bad_training_and_eval_data_get_clear_errors() {
    let dir = temp("bad-data");
    let never = dir.join("never-written");
    let train = |data: &Path, config_text: &str, needle: &str| {
        let path = dir.join("config.json");
        std::fs::write(&path, config_text).unwrap();
        fails(
            &[
                "train",
                "audio",
                "--data",
                p(data),
                "--out",
                p(&never),
                "--config",
                p(&path),
                "--steps",
                "1",
            ],
            needle,
        );
    };
    let plain = config(64, 1, 0.003, "{}", "{}");

    // A folder without WAVs, a missing path, a file that is no audio.
    let no_wavs = dir.join("no-wavs");
    std::fs::create_dir_all(&no_wavs).unwrap();
    std::fs::write(no_wavs.join("readme.txt"), "nothing to hear").unwrap();
    train(&no_wavs, &plain, "no .wav files");
    train(&dir.join("missing"), &plain, "does not exist");
    train(
        &shared("images/sklearn_digits.csv.gz"),
        &plain,
        "cannot read",
    );
    // A folder with a WAV that is not a WAV, or an empty one.
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(asterisk(1), broken.join("1.wav")).unwrap();
    std::fs::write(broken.join("2.wav"), "not a wav").unwrap();
    train(&broken, &plain, "not a readable WAV");
    std::fs::remove_file(broken.join("2.wav")).unwrap();
    write_wav(&broken.join("2.wav"), &[], RATE);
    train(&broken, &plain, "no samples");
    // A held-out folder that is missing or holds no WAVs.
    let tones = tones();
    train(
        tones,
        &config(
            64,
            1,
            0.003,
            "{}",
            &format!(r#"{{"heldout": {}}}"#, Value::from(p(&dir.join("nowhere")))),
        ),
        "held-out folder",
    );
    train(
        tones,
        &config(
            64,
            1,
            0.003,
            "{}",
            &format!(r#"{{"heldout": {}}}"#, Value::from(p(&no_wavs))),
        ),
        "no WAV files",
    );
    // Codec choices that make no sense.
    train(
        tones,
        &config(64, 1, 0.003, r#"{"quantisation": "a-law"}"#, "{}"),
        "quantisation",
    );
    train(
        tones,
        &config(64, 1, 0.003, r#"{"rate": 500}"#, "{}"),
        "sample rate",
    );
    train(
        tones,
        &config(64, 1, 0.003, r#"{"piece_seconds": 0}"#, "{}"),
        "too short",
    );
    assert!(
        !never.join("model.safetensors").exists(),
        "no failed run wrote a model"
    );

    // Evaluation data.
    let m = p(speech_model());
    fails(
        &["eval", "audio", "--model", m, "--data", p(&no_wavs)],
        "no .wav files",
    );
    fails(
        &[
            "eval",
            "audio",
            "--model",
            m,
            "--data",
            p(&dir.join("missing")),
        ],
        "does not exist",
    );
    fails(
        &["eval", "audio", "--model", m, "--data", p(&broken)],
        "no samples",
    );
}
