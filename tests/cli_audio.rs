//! `jielong` on audio, through the real binary: a tiny spoken-digit model trained for a second
//! on the small espeak-ng set (20 clips, committed at 8 kHz in `tests/fixtures/espeak-digits`,
//! so no espeak-ng is needed), a tiny model of a 440 Hz tone, then generation, continuation, evaluation, the
//! held-out digits, and a clear error (never a panic) for every bad input.
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

/// The 20 committed espeak-ng digits, two voices per class, 8 kHz
/// (`tests/fixtures/espeak-digits`: its README says how `make.sh` beside them made them). Every
/// tenth clip is held out when training on them, and each class keeps a training clip.
fn espeak_digits() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/espeak-digits");
        let files = wav_files(&dir);
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let expected: Vec<String> = (0..10)
            .flat_map(|d| ["en-gb+f4", "en-us"].map(|v| format!("{d}_{v}_s160_p50.wav")))
            .collect();
        assert_eq!(names, expected, "the clips of {}", dir.display());
        for f in &files {
            let (samples, spec) = read_wav(f);
            assert_eq!(
                (spec.sample_rate, spec.channels),
                (RATE, 1),
                "{}",
                f.display()
            );
            assert!(
                samples.len() > RATE as usize / 2,
                "{} is short",
                f.display()
            );
        }
        dir
    })
}

/// Remakes the committed clips with their script (espeak-ng and sox) and compares.
#[test]
#[ignore = "needs espeak-ng"]
fn the_shipped_digit_clips_are_what_their_script_makes() {
    let committed = espeak_digits();
    let again = temp("espeak-digits-again");
    let o = std::process::Command::new("sh")
        .arg(committed.join("make.sh"))
        .arg(&again)
        .output()
        .expect("sh runs");
    assert!(
        o.status.success(),
        "make.sh failed (are espeak-ng and sox installed?): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let made = wav_files(&again);
    let names = |files: &[PathBuf]| -> Vec<String> {
        files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let shipped = wav_files(committed);
    assert_eq!(names(&made), names(&shipped));
    // Other versions of espeak-ng may say a word a little differently: the same format and
    // nearly the same length. The versions that made the committed clips make them exactly.
    let version = std::process::Command::new("espeak-ng")
        .arg("--version")
        .output()
        .expect("espeak-ng runs");
    let same_version =
        String::from_utf8_lossy(&version.stdout).contains("NG text-to-speech: 1.51 ");
    for (a, b) in made.iter().zip(&shipped) {
        let ((x, sx), (y, sy)) = (read_wav(a), read_wav(b));
        assert_eq!((sx.sample_rate, sx.channels), (sy.sample_rate, sy.channels));
        let ratio = x.len() as f64 / y.len() as f64;
        assert!(
            (0.95..=1.05).contains(&ratio),
            "{}: {} samples made, {} committed",
            a.display(),
            x.len(),
            y.len()
        );
        if same_version {
            assert!(
                std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
                "{} differs from the committed clip made by the same espeak-ng version",
                a.display()
            );
        }
    }
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
    // A prompt at another rate (22.05 kHz, espeak-ng's) is resampled to the model's: a 440 Hz
    // tone written at that rate is kept as a 440 Hz tone at 8 kHz.
    let other = dir.join("tone-22050.wav");
    let tone: Vec<f64> = (0..22050 / 5)
        .map(|i| 0.5 * (2.0 * PI * 440.0 * i as f64 / 22050.0).sin())
        .collect();
    write_wav(&other, &tone, 22050);
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
    let kept: Vec<f64> = clip[..400].iter().map(|&s| unit(s)).collect();
    let zc = zero_crossing_frequency(&kept);
    assert!(
        (zc - 440.0).abs() <= 44.0,
        "the kept 0.05 s of the resampled tone crosses zero at {zc} Hz, not about 440"
    );
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

/// `jielong eval audio --model MODEL --data DATA --check-classes` followed by `extra`.
fn check_args<'a>(model: &'a str, data: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "eval",
        "audio",
        "--model",
        model,
        "--data",
        data,
        "--check-classes",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn eval_checks_drawn_clips_against_the_recorded_digits() {
    let m = speech_model();
    let data = shared("audio/asterisk_digits");
    let v = ok_json(&check_args(p(m), p(&data), &["2", "--format", "json"]));
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

    // Guided draws: the setting is echoed, and a clip is drawn for every request.
    let g = ok_json(&check_args(
        p(m),
        p(&data),
        &[
            "1",
            "--guidance",
            "2",
            "--temperature",
            "0.75",
            "--format",
            "json",
        ],
    ));
    assert_eq!(g["class_check"]["guidance"], 2.0, "{g}");
    assert_eq!(g["class_check"]["temperature"], 0.75, "{g}");
    assert_eq!(v["class_check"]["temperature"], 1.0, "{v}");
    let rows = g["class_check"]["per_class"].as_array().unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r["total"].as_u64().unwrap())
            .sum::<u64>(),
        10
    );

    // References must cover every class the model can be asked for.
    let few = temp("few-references");
    for d in 0..3 {
        std::fs::copy(asterisk(d), few.join(format!("{d}.wav"))).unwrap();
    }
    let wav = temp("guided").join("g.wav");
    all_fail(vec![
        bad(&check_args(p(m), p(&data), &["0"]), "at least 1"),
        bad(
            &check_args(p(m), p(&data), &["1", "--temperature", "0"]),
            "temperature",
        ),
        bad(
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
        ),
        bad(
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
        ),
        bad(
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
        ),
        bad(&check_args(p(m), p(&few), &["1"]), "no clip of class \"3\""),
    ]);
    assert!(!wav.exists());
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
    let heldout = Value::from(p(&shared("audio/asterisk_digits"))).to_string();
    let data_typo = scratch().join("typo-data.json");
    std::fs::write(
        &data_typo,
        config(64, 2, 0.003, "{}", &format!(r#"{{"held_out": {heldout}}}"#)),
    )
    .unwrap();
    let codec_typo = scratch().join("typo-codec.json");
    std::fs::write(
        &codec_typo,
        config(64, 2, 0.003, r#"{"quantization": "linear"}"#, "{}"),
    )
    .unwrap();
    let train = |config: &Path, needle: &str| {
        bad(
            &[
                "train",
                "audio",
                "--data",
                p(espeak_digits()),
                "--out",
                p(&out),
                "--config",
                p(config),
            ],
            needle,
        )
    };
    all_fail(vec![
        train(&data_typo, "held_out"),
        train(&codec_typo, "quantization"),
    ]);
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
    // `generate audio --model M --out X`, then `extra`.
    let gen_ = |extra: &[&str], needle: &str| {
        let mut args = vec!["generate", "audio", "--model", m.as_str(), "--out", o];
        args.extend_from_slice(extra);
        bad(&args, needle)
    };

    // Prompt clips: not a WAV, an empty WAV, a missing file.
    let text = dir.join("text.wav");
    std::fs::write(&text, "RIFF? no, just text").unwrap();
    let png = dir.join("picture.wav");
    std::fs::copy(m.clone() + "/loss.png", &png).unwrap();
    let empty = dir.join("empty.wav");
    write_wav(&empty, &[], RATE);
    let mut cases = vec![
        gen_(
            &["--prompt-audio", p(&text), "--keep-seconds", "0.05"],
            "not a readable WAV",
        ),
        gen_(
            &["--prompt-audio", p(&png), "--keep-seconds", "0.05"],
            "not a readable WAV",
        ),
        gen_(
            &["--prompt-audio", p(&empty), "--keep-seconds", "0.05"],
            "no samples",
        ),
        gen_(
            &[
                "--prompt-audio",
                p(&dir.join("missing.wav")),
                "--keep-seconds",
                "0.05",
            ],
            "cannot open",
        ),
        // How much to keep: longer than the clip, as long as the output, zero or negative,
        // alone.
        gen_(
            &[
                "--prompt-audio",
                p(&tone),
                "--keep-seconds",
                "0.2",
                "--seconds",
                "1",
            ],
            "shorter than the 0.2 s to keep",
        ),
        gen_(
            &[
                "--prompt-audio",
                p(&tone),
                "--keep-seconds",
                "0.1",
                "--seconds",
                "0.1",
            ],
            "already as long",
        ),
        gen_(
            &["--prompt-audio", p(&tone), "--keep-seconds", "0"],
            "positive",
        ),
        gen_(
            &["--prompt-audio", p(&tone), "--keep-seconds", "-0.1"],
            "positive",
        ),
        gen_(&["--keep-seconds", "0.05"], "--prompt-audio"),
        gen_(&["--prompt-audio", p(&tone)], "--keep-seconds"),
    ];
    // Lengths, counts, classes, dice.
    for seconds in ["0", "-1", "nan", "601"] {
        cases.push(gen_(&["--seconds", seconds], "--seconds"));
    }
    cases.push(gen_(&["--count", "0"], "--count"));
    cases.push(gen_(&["--count", "1025"], "at most 1024"));
    for class in ["12", "four", ""] {
        cases.push(gen_(&["--class", class], "unknown class"));
    }
    cases.extend([
        gen_(&["--class", "1", "--temperature", "-1"], "temperature"),
        gen_(&["--class", "1", "--top-p", "0"], "top-p"),
        bad(
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
        ),
        bad(
            &[
                "generate",
                "audio",
                "--model",
                &m,
                "--out",
                p(&dir.join("no/such/folder/x.wav")),
            ],
            "cannot write",
        ),
        // An audio model is not an image or text model.
        bad(
            &[
                "generate",
                "image",
                "--model",
                &m,
                "--out",
                p(&dir.join("x.png")),
            ],
            "audio model",
        ),
        bad(
            &["generate", "text", "--model", &m, "--prompt", "seven"],
            "audio model",
        ),
        bad(
            &[
                "eval",
                "image",
                "--model",
                &m,
                "--data",
                p(&shared("images/sklearn_digits.csv.gz")),
            ],
            "audio model",
        ),
        bad(
            &[
                "generate",
                "audio",
                "--model",
                p(&dir.join("no-model")),
                "--out",
                o,
            ],
            "does not exist",
        ),
    ]);
    all_fail(cases);
    assert!(!out.exists(), "no failed run wrote a clip");
}

#[test]
fn bad_training_and_eval_data_get_clear_errors() {
    let dir = temp("bad-data");
    let never = dir.join("never-written");
    let configs = std::sync::atomic::AtomicUsize::new(0);
    // `train audio` on `data` with the training config `config_text` (a file of its own).
    let train = |data: &Path, config_text: &str, needle: &str| {
        let n = configs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!("config-{n}.json"));
        std::fs::write(&path, config_text).unwrap();
        bad(
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
        )
    };
    let plain = config(64, 1, 0.003, "{}", "{}");
    let heldout = |folder: &Path| {
        config(
            64,
            1,
            0.003,
            "{}",
            &format!(r#"{{"heldout": {}}}"#, Value::from(p(folder))),
        )
    };

    // A folder without WAVs; a folder with a WAV that is not a WAV, or an empty one.
    let no_wavs = dir.join("no-wavs");
    std::fs::create_dir_all(&no_wavs).unwrap();
    std::fs::write(no_wavs.join("readme.txt"), "nothing to hear").unwrap();
    let (broken, empty) = (dir.join("broken"), dir.join("broken-empty"));
    for folder in [&broken, &empty] {
        std::fs::create_dir_all(folder).unwrap();
        std::fs::copy(asterisk(1), folder.join("1.wav")).unwrap();
    }
    std::fs::write(broken.join("2.wav"), "not a wav").unwrap();
    write_wav(&empty.join("2.wav"), &[], RATE);
    let tones = tones();
    let m = p(speech_model());
    let cases = vec![
        // A folder without WAVs, a missing path, a file that is no audio.
        train(&no_wavs, &plain, "no .wav files"),
        train(&dir.join("missing"), &plain, "does not exist"),
        train(
            &shared("images/sklearn_digits.csv.gz"),
            &plain,
            "cannot read",
        ),
        train(&broken, &plain, "not a readable WAV"),
        train(&empty, &plain, "no samples"),
        // A held-out folder that is missing or holds no WAVs.
        train(tones, &heldout(&dir.join("nowhere")), "held-out folder"),
        train(tones, &heldout(&no_wavs), "no WAV files"),
        // Codec choices that make no sense.
        train(
            tones,
            &config(64, 1, 0.003, r#"{"quantisation": "a-law"}"#, "{}"),
            "quantisation",
        ),
        train(
            tones,
            &config(64, 1, 0.003, r#"{"rate": 500}"#, "{}"),
            "sample rate",
        ),
        train(
            tones,
            &config(64, 1, 0.003, r#"{"piece_seconds": 0}"#, "{}"),
            "too short",
        ),
        // Evaluation data.
        bad(
            &["eval", "audio", "--model", m, "--data", p(&no_wavs)],
            "no .wav files",
        ),
        bad(
            &[
                "eval",
                "audio",
                "--model",
                m,
                "--data",
                p(&dir.join("missing")),
            ],
            "does not exist",
        ),
        bad(
            &["eval", "audio", "--model", m, "--data", p(&empty)],
            "no samples",
        ),
    ];
    all_fail(cases);
    assert!(
        !never.join("model.safetensors").exists(),
        "no failed run wrote a model"
    );
}

/// `first_token_condition` and `clip_start_share` from the config to the card: the class
/// embedded at every position trains, generates the same clip for the same seed across window
/// slides, and is refused for a codec without a class token; a share outside 0..1 is refused.
#[test]
fn a_model_conditioned_at_every_position_trains_and_generates() {
    let dir = temp("first-token-condition");
    let out = dir.join("model");
    let conditioned = config(64, 20, 0.003, "{}", r#"{"clip_start_share": 0.5}"#).replace(
        r#""context": 64}"#,
        r#""context": 64, "first_token_condition": true}"#,
    );
    train_with("audio", espeak_digits(), &out, &conditioned);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved["architecture"]["first_token_condition"], true);
    let card = std::fs::read_to_string(out.join("MODEL.md")).unwrap();
    assert!(
        card.contains("embedding of its window's first token"),
        "{card}"
    );
    assert!(
        card.contains("50% of the training windows start at their clip's first sample"),
        "{card}"
    );
    let bad_share = dir.join("bad-share.json");
    std::fs::write(
        &bad_share,
        conditioned.replace(r#""clip_start_share": 0.5"#, r#""clip_start_share": 1.5"#),
    )
    .unwrap();
    fails(
        &[
            "train",
            "audio",
            "--data",
            p(espeak_digits()),
            "--out",
            p(&dir.join("bad")),
            "--config",
            p(&bad_share),
        ],
        "clip_start_share must be between 0 and 1",
    );

    // 0.05 s is 400 samples: the 64-sample window slides several times.
    let clip = |name: &str| {
        let wav = dir.join(name);
        ok(&[
            "generate",
            "audio",
            "--model",
            p(&out),
            "--class",
            "3",
            "--seconds",
            "0.05",
            "--seed",
            "4",
            "--out",
            p(&wav),
        ]);
        read_wav(&wav).0
    };
    let (a, b) = (clip("a.wav"), clip("b.wav"));
    assert_eq!(a.len(), 400);
    assert_eq!(a, b);

    let text = dir.join("text.txt");
    std::fs::write(
        &text,
        "to be or not to be, that is the question. ".repeat(20),
    )
    .unwrap();
    let text_config = dir.join("text.json");
    std::fs::write(
        &text_config,
        r#"{"model": {"hidden": 32, "layers": 1, "heads": 4, "context": 32, "first_token_condition": true},
            "train": {"steps": 2, "batch_size": 2, "seq_len": 32}}"#,
    )
    .unwrap();
    fails(
        &[
            "train",
            "text",
            "--data",
            p(&text),
            "--out",
            p(&dir.join("text")),
            "--config",
            p(&text_config),
        ],
        "needs a conditional codec",
    );
}

// ---------------------------------------------------------------------------------------------
// Frame tokens.

/// A spoken-digit model of frame tokens (16 codebook entries, 256-sample frames every 64
/// samples), context 32, 20 steps.
fn frame_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let out = scratch().join("speech-frames");
        train_with(
            "audio",
            espeak_digits(),
            &out,
            &config(
                32,
                20,
                0.003,
                r#"{"tokens": "frames", "codebook": 16, "window": 256, "hop": 64}"#,
                "{}",
            ),
        );
        out
    })
}

#[test]
fn a_frame_model_trains_generates_and_scores_one_token_per_hop() {
    let m = frame_model();
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(m.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["codec"]["tokens"], "frames", "{config}");
    assert_eq!(config["codec"]["hop"], 64, "{config}");
    let codebook: Value =
        serde_json::from_str(&std::fs::read_to_string(m.join("codebook.json")).unwrap()).unwrap();
    let entries = codebook["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 16);
    assert!(entries.iter().all(|e| e.as_array().unwrap().len() == 129));

    // 0.3 s is 2,400 samples: 38 frames of 64 (the last one cut), and exactly 2,400 samples out.
    let dir = temp("gen-frames");
    let seven = |name: &str| -> PathBuf {
        let out = dir.join(name);
        ok(&[
            "generate",
            "audio",
            "--model",
            p(m),
            "--class",
            "7",
            "--seconds",
            "0.3",
            "--seed",
            "3",
            "--out",
            p(&out),
        ]);
        out
    };
    let (samples, spec) = read_wav(&seven("seven.wav"));
    assert_eq!((spec.sample_rate, spec.channels), (RATE, 1));
    assert_eq!(samples.len(), 2400);
    assert_eq!(
        read_wav(&seven("again.wav")).0,
        samples,
        "the same seed gives the same clip"
    );

    // Held-out scoring counts one token per started hop of every clip.
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
    let frames: usize = (0..10)
        .map(|d| read_wav(&asterisk(d)).0.len().div_ceil(64))
        .sum();
    assert_eq!(v["tokenisation"], "frames", "{v}");
    assert_eq!(v["tokens"], frames, "{v}");
    let bits = v["bits_per_token"].as_f64().unwrap();
    assert!(bits > 0.0 && bits < 8.0, "{v}");
    assert!(
        (v["bits_per_second"].as_f64().unwrap() - bits * 125.0).abs() < 1e-9,
        "{v}"
    );
    assert!(
        (v["bits_per_sample"].as_f64().unwrap() - bits / 64.0).abs() < 1e-12,
        "{v}"
    );

    // A continuation prompt is cut into frames too; a clip shorter than its prompt is refused.
    let cont = dir.join("cont.wav");
    ok(&[
        "generate",
        "audio",
        "--model",
        p(m),
        "--class",
        "3",
        "--prompt-audio",
        p(&asterisk(3)),
        "--keep-seconds",
        "0.2",
        "--seconds",
        "0.5",
        "--out",
        p(&cont),
    ]);
    assert_eq!(read_wav(&cont).0.len(), 4000);
    fails(
        &[
            "generate",
            "audio",
            "--model",
            p(m),
            "--class",
            "3",
            "--prompt-audio",
            p(&asterisk(3)),
            "--keep-seconds",
            "0.5",
            "--seconds",
            "0.4",
            "--out",
            p(&cont),
        ],
        "too short",
    );
}

#[test]
fn a_frame_model_folder_without_its_codebook_is_a_clear_error() {
    let m = frame_model();
    let broken = temp("frames-no-codebook");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(m.join(f), broken.join(f)).unwrap();
    }
    let out = broken.join("x.wav");
    fails(
        &[
            "generate",
            "audio",
            "--model",
            p(&broken),
            "--class",
            "1",
            "--out",
            p(&out),
        ],
        "codebook.json",
    );
    assert!(!out.exists());

    // A codebook of another size than the model's vocabulary (config.json edited to match it).
    let trimmed = temp("frames-other-codebook");
    for f in ["config.json", "model.safetensors", "codebook.json"] {
        std::fs::copy(m.join(f), trimmed.join(f)).unwrap();
    }
    let mut codebook: Value =
        serde_json::from_str(&std::fs::read_to_string(m.join("codebook.json")).unwrap()).unwrap();
    codebook["entries"].as_array_mut().unwrap().truncate(8);
    std::fs::write(trimmed.join("codebook.json"), codebook.to_string()).unwrap();
    let mut folder_config: Value =
        serde_json::from_str(&std::fs::read_to_string(m.join("config.json")).unwrap()).unwrap();
    folder_config["codec"]["codebook"] = 8.into();
    std::fs::write(trimmed.join("config.json"), folder_config.to_string()).unwrap();
    fails(
        &[
            "generate",
            "audio",
            "--model",
            p(&trimmed),
            "--class",
            "1",
            "--out",
            p(&out),
        ],
        "do not belong together",
    );
    assert!(!out.exists());

    let bad = temp("frames-bad-config").join("cfg.json");
    std::fs::write(
        &bad,
        config(32, 2, 0.003, r#"{"tokens": "frames", "window": 250}"#, "{}"),
    )
    .unwrap();
    fails(
        &[
            "train",
            "audio",
            "--data",
            p(espeak_digits()),
            "--out",
            p(&temp("frames-bad-window").join("m")),
            "--config",
            p(&bad),
        ],
        "power of two",
    );
}

#[test]
fn a_model_folder_s_default_temperature_applies_when_none_is_asked_for() {
    let dir = temp("default-temperature");
    let folder = dir.join("model");
    copy_files(frame_model(), &folder, &[]);
    let config_path = folder.join("config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["generation"] = serde_json::json!({"temperature": 0.5});
    std::fs::write(&config_path, config.to_string()).unwrap();

    let draw = |name: &str, extra: &[&str]| -> Vec<i16> {
        let out = dir.join(name);
        let mut args = vec![
            "generate",
            "audio",
            "--model",
            p(&folder),
            "--class",
            "2",
            "--seconds",
            "0.5",
            "--seed",
            "4",
            "--out",
            p(&out),
        ];
        args.extend_from_slice(extra);
        ok(&args);
        read_wav(&out).0
    };
    let by_default = draw("default.wav", &[]);
    assert_eq!(by_default, draw("half.wav", &["--temperature", "0.5"]));
    assert_ne!(by_default, draw("one.wav", &["--temperature", "1"]));

    // The class check draws at the default too, and says so.
    let data = shared("audio/asterisk_digits");
    let v = ok_json(&check_args(
        p(&folder),
        p(&data),
        &["1", "--format", "json"],
    ));
    assert_eq!(v["class_check"]["temperature"], 0.5, "{v}");
    let v = ok_json(&check_args(
        p(&folder),
        p(&data),
        &["1", "--temperature", "1", "--format", "json"],
    ));
    assert_eq!(v["class_check"]["temperature"], 1.0, "{v}");

    for bad_value in [
        serde_json::json!("hot"),
        serde_json::json!(-1.0),
        serde_json::json!(0),
    ] {
        config["generation"] = serde_json::json!({"temperature": bad_value});
        std::fs::write(&config_path, config.to_string()).unwrap();
        fails(
            &[
                "generate",
                "audio",
                "--model",
                p(&folder),
                "--class",
                "2",
                "--out",
                p(&dir.join("never.wav")),
            ],
            "generation.temperature must be a positive number",
        );
    }
    assert!(!dir.join("never.wav").exists());
}

#[test]
fn an_interrupted_frame_model_resumes_to_identical_weights_and_codebook() {
    let dir = temp("frames-resume");
    let config = dir.join("cfg.json");
    std::fs::write(
        &config,
        r#"{"model": {"hidden": 16, "layers": 1, "heads": 2, "context": 32},
            "train": {"steps": 300, "batch_size": 4, "seq_len": 32, "warmup_steps": 5,
                      "eval_every": 150, "eval_tokens": 256, "checkpoint_every": 5,
                      "ema_decay": 0.99},
            "codec": {"tokens": "frames", "codebook": 16}, "data": {}}"#,
    )
    .unwrap();
    let args = |out: &Path| -> Vec<String> {
        [
            "train",
            "audio",
            "--data",
            p(espeak_digits()),
            "--out",
            p(out),
            "--config",
            p(&config),
        ]
        .map(String::from)
        .to_vec()
    };
    let straight = dir.join("straight");
    ok(&args(&straight));

    // A second run, interrupted (as Ctrl-C would) once its first checkpoint exists.
    let broken = dir.join("broken");
    let out = interrupt_at_first_checkpoint(&args(&broken), &broken);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut resume = args(&broken);
    resume.push("--resume".into());
    ok(&resume);
    for file in ["model.safetensors", "codebook.json"] {
        assert!(
            std::fs::read(straight.join(file)).unwrap()
                == std::fs::read(broken.join(file)).unwrap(),
            "the resumed run's {file} differs from the uninterrupted run's"
        );
    }
}
