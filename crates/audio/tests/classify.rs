//! The spoken-digit classifier: DTW properties, errors, and how well it recognises held-out
//! digits across domains (recorded Allison digits vs espeak-ng digits).

mod common;

use std::process::Command;
use std::sync::OnceLock;

use common::{repo_root, shared_audio};
use jielong_audio::classify::{ClassifierSettings, features_with};
use jielong_audio::{DigitClassifier, LabelledClip, digit_classes, dtw_distance, open_dataset};

const RATE: u32 = 8000;

/// The ten recorded digits (Allison), labelled from their names.
fn real_digits() -> Vec<LabelledClip> {
    let ds = open_dataset(&shared_audio().join("asterisk_digits"), RATE).unwrap();
    assert_eq!(ds.clips.len(), 10);
    ds.clips
}

/// The full espeak-ng set (540 clips), made once per test run. The tests that use it are
/// ignored by default (`#[ignore = "needs espeak-ng"]`): run them with `-- --ignored`.
fn espeak_digits() -> &'static [LabelledClip] {
    static SET: OnceLock<Vec<LabelledClip>> = OnceLock::new();
    SET.get_or_init(|| {
        assert!(
            Command::new("espeak-ng").arg("--version").output().is_ok(),
            "espeak-ng is not installed (apt-get install espeak-ng): this test needs it"
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("espeak");
        let status = Command::new("sh")
            .arg(repo_root().join("datasets/espeak-digits/make.sh"))
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "make.sh failed");
        let ds = open_dataset(&out, RATE).unwrap();
        assert_eq!(ds.clips.len(), 540);
        ds.clips
    })
}

/// The espeak voice of a clip (`7_en-us_s130_p35.wav` → `en-us`).
fn voice(clip: &LabelledClip) -> String {
    let name = clip
        .source
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    name.split('_').nth(1).unwrap().to_owned()
}

fn label(clip: &LabelledClip) -> usize {
    clip.label.as_deref().unwrap().parse().unwrap()
}

/// Accuracy of `queries` classified by a classifier trained on `refs`.
fn accuracy(refs: &[LabelledClip], queries: &[LabelledClip], settings: ClassifierSettings) -> f64 {
    let classifier = DigitClassifier::train_with(refs, RATE, settings).unwrap();
    let wanted: Vec<usize> = queries
        .iter()
        .map(|c| classifier.class_index(c.label.as_deref().unwrap()).unwrap())
        .collect();
    let samples: Vec<&[f32]> = queries.iter().map(|c| c.samples.as_slice()).collect();
    let acc = classifier.evaluate(&samples, &wanted).unwrap();
    assert_eq!(acc.total, queries.len());
    acc.overall()
}

#[test]
fn dtw_is_zero_to_itself_and_symmetric() {
    let clips = real_digits();
    let s = ClassifierSettings::default();
    let f: Vec<_> = clips
        .iter()
        .map(|c| features_with(&c.samples, RATE, s).unwrap())
        .collect();
    for a in &f {
        assert!(
            a.frames() > 10,
            "a spoken digit lasts more than 100 ms: {} frames",
            a.frames()
        );
        assert_eq!(dtw_distance(a, a), 0.0);
    }
    for a in &f {
        for b in &f {
            assert_eq!(dtw_distance(a, b), dtw_distance(b, a));
        }
    }
    // Different words are apart; a time-stretched copy stays closer to its word than other words
    // are.
    let d01 = dtw_distance(&f[0], &f[1]);
    assert!(d01 > 0.1, "zero vs one: {d01}");
    let slow =
        jielong_audio::resample(&clips[7].samples, RATE, (RATE as f64 * 1.15) as u32).unwrap();
    let slow = features_with(&slow, RATE, s).unwrap();
    assert!(slow.frames() > f[7].frames());
    let to_own = dtw_distance(&slow, &f[7]);
    for (d, other) in f.iter().enumerate().filter(|&(d, _)| d != 7) {
        assert!(
            to_own < dtw_distance(&slow, other),
            "a slow seven is nearer {d} than seven"
        );
    }
}

#[test]
fn a_clip_identical_to_a_reference_gets_its_label() {
    let clips = real_digits();
    let classifier = DigitClassifier::train(&clips, RATE).unwrap();
    assert_eq!(classifier.classes(), digit_classes());
    assert_eq!(classifier.references(), 10);
    for clip in &clips {
        let got = classifier.classify(&clip.samples).unwrap();
        assert_eq!(classifier.classes()[got], *clip.label.as_ref().unwrap());
        // Louder or quieter, it is the same word (the features are normalised per clip).
        let quiet: Vec<f32> = clip.samples.iter().map(|x| x * 0.25).collect();
        assert_eq!(classifier.classify(&quiet).unwrap(), got);
        // With silence around it too (the voiced region is what counts).
        let mut padded = vec![0.0; 3000];
        padded.extend(&clip.samples);
        padded.extend(vec![0.0; 2000]);
        assert_eq!(classifier.classify(&padded).unwrap(), got);
    }
}

#[test]
fn silent_and_empty_clips_are_errors() {
    let classifier = DigitClassifier::train(&real_digits(), RATE).unwrap();
    for (clip, why) in [
        (vec![0.0f32; 8000], "silent"),
        (vec![1e-5f32; 8000], "silent"),
        (Vec::new(), "shorter than one"),
        (vec![0.5f32; 50], "shorter than one"),
    ] {
        let err = classifier.classify(&clip).unwrap_err().to_string();
        assert!(
            err.contains("no voiced frames") && err.contains(why),
            "{err}"
        );
    }
    let err = classifier
        .classify(&[0.1, f32::NAN, 0.2])
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a finite number"), "{err}");
    // In an evaluation a silent clip is simply not recognised.
    let clips = [vec![0.0f32; 8000], real_digits()[4].samples.clone()];
    let acc = classifier.evaluate(&clips, &[3, 4]).unwrap();
    assert_eq!((acc.correct, acc.total), (1, 2));
    assert_eq!(
        (acc.per_class[3].unclassified, acc.per_class[3].total),
        (1, 1)
    );
    assert_eq!(acc.confusion[4][4], 1);
    assert!(classifier.evaluate(&clips, &[3]).is_err());
    assert!(classifier.evaluate(&clips, &[3, 10]).is_err());

    // References must be labelled and voiced.
    let mut refs = real_digits();
    refs[2].label = None;
    let err = DigitClassifier::train(&refs, RATE)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("has no label"), "{err}");
    let mut refs = real_digits();
    refs[5].samples = vec![0.0; 4000];
    let err = DigitClassifier::train(&refs, RATE)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("5.wav") && err.contains("no voiced frames"),
        "{err}"
    );
    assert!(DigitClassifier::train(&[], RATE).is_err());
}

#[test]
fn references_come_from_a_folder_labelled_by_names() {
    let dir = tempfile::tempdir().unwrap();
    for d in 0..10 {
        let from = shared_audio().join(format!("asterisk_digits/{d}.wav"));
        std::fs::copy(&from, dir.path().join(format!("{d}_allison.wav"))).unwrap();
    }
    std::fs::copy(
        shared_audio().join("asterisk_digits/3.wav"),
        dir.path().join("oh.wav"),
    )
    .unwrap();
    let classifier = DigitClassifier::from_path(dir.path(), RATE, &digit_classes()).unwrap();
    assert_eq!((classifier.references(), classifier.ignored()), (10, 1));
    let three =
        jielong_audio::read_wav(&shared_audio().join("asterisk_digits/3.wav"), RATE).unwrap();
    assert_eq!(classifier.classify(&three).unwrap(), 3);
    // A class without a reference is an error that names it.
    std::fs::remove_file(dir.path().join("6_allison.wav")).unwrap();
    let err = DigitClassifier::from_path(dir.path(), RATE, &digit_classes())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no reference clip labelled 6"), "{err}");
    let err = DigitClassifier::from_path(&dir.path().join("missing"), RATE, &digit_classes())
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("does not exist"), "{err:#}");
}

#[test]
#[ignore = "needs espeak-ng"]
fn synthetic_references_recognise_the_recorded_digits() {
    let espeak = espeak_digits();
    let acc = accuracy(espeak, &real_digits(), ClassifierSettings::default());
    println!("recorded digits recognised by espeak references: {acc}");
    assert!(acc >= 0.5, "{acc}");
}

#[test]
#[ignore = "needs espeak-ng"]
fn recorded_references_recognise_the_synthetic_digits() {
    let espeak = espeak_digits();
    let acc = accuracy(&real_digits(), espeak, ClassifierSettings::default());
    println!("espeak digits recognised by the ten recorded references: {acc}");
    assert!(acc >= 0.35, "{acc}");
}

#[test]
#[ignore = "needs espeak-ng"]
fn an_unseen_espeak_voice_is_recognised() {
    let espeak = espeak_digits();
    let held = "en-gb+f4";
    let (queries, refs): (Vec<LabelledClip>, Vec<LabelledClip>) =
        espeak.iter().cloned().partition(|c| voice(c) == held);
    assert_eq!(queries.len(), 90);
    let acc = accuracy(&refs, &queries, ClassifierSettings::default());
    println!("espeak voice {held} recognised by the other five voices: {acc}");
    assert!(acc >= 0.8, "{acc}");
}

/// Prints the accuracy table behind the classifier's defaults and the choice of references:
/// `cargo test --release -p jielong-audio --test classify -- measure_reference_sets --ignored --nocapture`.
#[test]
#[ignore = "a measurement that prints a table; needs espeak-ng"]
fn measure_reference_sets() {
    let espeak = espeak_digits();
    let real = real_digits();
    let all: Vec<&LabelledClip> = real.iter().chain(espeak.iter()).collect();
    let voices: Vec<Option<String>> = real
        .iter()
        .map(|_| None)
        .chain(espeak.iter().map(|c| Some(voice(c))))
        .collect();
    let labels: Vec<usize> = all.iter().map(|c| label(c)).collect();
    let n_real = real.len();
    let base = ClassifierSettings::default();
    let variants: Vec<(&str, ClassifierSettings)> = vec![
        ("default", base),
        ("24 bands", ClassifierSettings { bands: 24, ..base }),
        ("32 bands", ClassifierSettings { bands: 32, ..base }),
        (
            "12 cepstra of 24",
            ClassifierSettings {
                bands: 24,
                cepstra: 12,
                ..base
            },
        ),
        (
            "+ deltas",
            ClassifierSettings {
                deltas: true,
                ..base
            },
        ),
        (
            "trim 25 dB",
            ClassifierSettings {
                trim_below_loudest_db: 25.0,
                ..base
            },
        ),
        (
            "trim 45 dB",
            ClassifierSettings {
                trim_below_loudest_db: 45.0,
                ..base
            },
        ),
        ("k = 3", ClassifierSettings { k: 3, ..base }),
    ];
    println!(
        "{:<18} {:>16} {:>16} {:>16} {:>16} {:>16}",
        "settings",
        "real<-espeak",
        "real<-real+esp",
        "espeak<-real",
        "espeak LOVO",
        "espeak LOVO+real"
    );
    for (name, s) in variants {
        let f: Vec<_> = all
            .iter()
            .map(|c| features_with(&c.samples, RATE, s).unwrap())
            .collect();
        let n = f.len();
        let rows: Vec<Vec<f64>> = std::thread::scope(|scope| {
            let f = &f;
            let handles: Vec<_> = (0..2)
                .map(|t| {
                    scope.spawn(move || {
                        (t..n)
                            .step_by(2)
                            .map(|i| (i, (0..n).map(|j| dtw_distance(&f[i], &f[j])).collect()))
                            .collect::<Vec<(usize, Vec<f64>)>>()
                    })
                })
                .collect();
            let mut rows = vec![Vec::new(); n];
            for h in handles {
                for (i, r) in h.join().unwrap() {
                    rows[i] = r;
                }
            }
            rows
        });
        // k-NN over the allowed references of query i.
        let classify = |i: usize, allowed: &dyn Fn(usize) -> bool| -> usize {
            let mut order: Vec<(f64, usize)> = (0..n)
                .filter(|&j| j != i && allowed(j))
                .map(|j| (rows[i][j], j))
                .collect();
            order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            order.truncate(s.k);
            let mut votes = [0usize; 10];
            for &(_, j) in &order {
                votes[labels[j]] += 1;
            }
            let top = *votes.iter().max().unwrap();
            order
                .iter()
                .map(|&(_, j)| labels[j])
                .find(|&c| votes[c] == top)
                .unwrap()
        };
        let rate =
            |queries: std::ops::Range<usize>, allowed: &dyn Fn(usize, usize) -> bool| -> String {
                let total = queries.len();
                let correct = queries
                    .filter(|&i| classify(i, &|j| allowed(i, j)) == labels[i])
                    .count();
                format!(
                    "{correct}/{total} {:.1}%",
                    100.0 * correct as f64 / total as f64
                )
            };
        let real_from_espeak = rate(0..n_real, &|_, j| j >= n_real);
        let real_from_both = rate(0..n_real, &|_, _| true);
        let espeak_from_real = rate(n_real..n, &|_, j| j < n_real);
        let lovo = rate(n_real..n, &|i, j| j >= n_real && voices[j] != voices[i]);
        let lovo_real = rate(n_real..n, &|i, j| voices[j] != voices[i]);
        println!(
            "{name:<18} {real_from_espeak:>16} {real_from_both:>16} {espeak_from_real:>16} {lovo:>16} {lovo_real:>16}"
        );
        if name == "default" {
            let mut names: Vec<&String> = voices.iter().flatten().collect();
            names.sort();
            names.dedup();
            for v in names {
                let mine: Vec<usize> = (n_real..n)
                    .filter(|&i| voices[i].as_ref() == Some(v))
                    .collect();
                let correct = mine
                    .iter()
                    .filter(|&&i| {
                        classify(i, &|j| j >= n_real && voices[j] != voices[i]) == labels[i]
                    })
                    .count();
                println!("    leave out voice {v}: {correct}/{}", mine.len());
            }
        }
    }
}

/// What frame tokens keep of a word, for `models/spoken-digits/MODEL.md`: the classifier's
/// recognition of the 540 espeak-ng digits (against the ten recorded ones) as they are, after
/// Griffin-Lim from their own magnitudes (only the phase lost), through codebooks fitted on
/// the espeak-ng digits, and through the shipped model's own codebook, per class.
#[test]
#[ignore = "needs espeak-ng; prints a table (about two minutes)"]
fn measure_frame_tokens() {
    use jielong_audio::{AudioCodec, FrameCodebook};
    use jielong_core::{Codec, FolderCodec};

    let espeak = espeak_digits();
    let classifier = DigitClassifier::train(&real_digits(), RATE).unwrap();
    let wanted: Vec<usize> = espeak
        .iter()
        .map(|c| classifier.class_index(c.label.as_deref().unwrap()).unwrap())
        .collect();
    let report = |name: &str, clips: &[Vec<f32>]| {
        let acc = classifier.evaluate(clips, &wanted).unwrap();
        let per: Vec<usize> = acc.per_class.iter().map(|c| c.correct).collect();
        println!(
            "{name:<40} {:>6.1}%  per class of 54: {per:?}",
            100.0 * acc.overall()
        );
    };
    let originals: Vec<Vec<f32>> = espeak.iter().map(|c| c.samples.clone()).collect();
    report("as recorded", &originals);
    let clips: Vec<&[f32]> = originals.iter().map(Vec::as_slice).collect();
    for (window, hop) in [(256, 64), (256, 128)] {
        let stft = jielong_audio::Stft::new(window, hop).unwrap();
        let phase_only: Vec<Vec<f32>> = originals
            .iter()
            .map(|x| {
                let m: Vec<f32> = stft
                    .log_magnitudes(x)
                    .iter()
                    .map(|v| v.exp() - 1e-4)
                    .collect();
                stft.griffin_lim(&m, 48)
            })
            .collect();
        report(
            &format!("{window}/{hop}: Griffin-Lim, own magnitudes"),
            &phase_only,
        );
        for k in [256, 512, 1024] {
            let codec = AudioCodec::frames(
                FrameCodebook::fit(&clips, window, hop, k, 0).unwrap(),
                RATE,
                Vec::new(),
            )
            .unwrap();
            let coded: Vec<Vec<f32>> = originals
                .iter()
                .map(|x| codec.decode(&codec.encode(x).unwrap()).unwrap())
                .collect();
            report(&format!("{window}/{hop}: {k} entries"), &coded);
        }
    }
    let shipped = repo_root().join("models/spoken-digits");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shipped.join("config.json")).unwrap()).unwrap();
    let codec = AudioCodec::from_json(&config["codec"], &shipped).unwrap();
    if codec.samples_per_token() > 1 {
        let coded: Vec<Vec<f32>> = originals
            .iter()
            .map(|x| codec.decode(&codec.encode(x).unwrap()).unwrap())
            .collect();
        report("the shipped model's codebook", &coded);
    }
}
