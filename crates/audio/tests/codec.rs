//! The sample codec: quantisation error bounds, vocabulary, config.json round trips.

use std::path::Path;

use jielong_audio::{AudioCodec, Quantisation};
use jielong_core::{Codec, FolderCodec};
use serde_json::json;

fn grid() -> Vec<f32> {
    (0..=20_000).map(|i| -1.0 + i as f32 / 10_000.0).collect()
}

fn codec(q: Quantisation) -> AudioCodec {
    AudioCodec::new(q, 8000, Vec::new()).unwrap()
}

#[test]
fn linear_round_trip_error_is_at_most_half_a_step() {
    let c = codec(Quantisation::Linear);
    let xs = grid();
    let back = c.decode(&c.encode(&xs).unwrap()).unwrap();
    let half_step = 1.0 / 256.0; // 256 levels over [-1, 1]
    for (&x, &y) in xs.iter().zip(&back) {
        assert!((x - y).abs() <= half_step + 1e-6, "{x} -> {y}");
    }
}

#[test]
fn mu_law_error_grows_with_the_sample_like_mu_law_should() {
    let c = codec(Quantisation::MuLaw);
    let xs = grid();
    let back = c.decode(&c.encode(&xs).unwrap()).unwrap();
    let mu = 255.0f32;
    for (&x, &y) in xs.iter().zip(&back) {
        // d x / d y of the mu-law expansion, times half a level, at the far edge of the level.
        let bound = (x.abs() + 1.0 / mu) * (1.0 + mu).ln() / 256.0 * 1.03;
        assert!((x - y).abs() <= bound + 1e-6, "{x} -> {y}, bound {bound}");
    }
}

#[test]
fn mu_law_is_finer_than_linear_near_zero_and_coarser_at_full_scale() {
    let mu = codec(Quantisation::MuLaw);
    let lin = codec(Quantisation::Linear);
    let worst = |c: &AudioCodec, lo: f32, hi: f32| {
        grid()
            .into_iter()
            .filter(|x| x.abs() >= lo && x.abs() <= hi)
            .map(|x| (x - c.decode(&c.encode(&vec![x]).unwrap()).unwrap()[0]).abs())
            .fold(0.0f32, f32::max)
    };
    let (mu_small, lin_small) = (worst(&mu, 0.0, 0.01), worst(&lin, 0.0, 0.01));
    assert!(
        mu_small * 10.0 < lin_small,
        "near zero: mu-law {mu_small}, linear {lin_small}"
    );
    let (mu_loud, lin_loud) = (worst(&mu, 0.9, 1.0), worst(&lin, 0.9, 1.0));
    assert!(
        mu_loud > lin_loud,
        "full scale: mu-law {mu_loud}, linear {lin_loud}"
    );
    // Distinct levels used by quiet speech (|x| < 0.05): many more with mu-law.
    let quiet: Vec<f32> = (0..1000).map(|i| -0.05 + i as f32 / 10_000.0).collect();
    let distinct = |c: &AudioCodec| {
        let mut ids = c.encode(&quiet).unwrap();
        ids.dedup();
        ids.len()
    };
    assert!(distinct(&mu) > 5 * distinct(&lin));
}

#[test]
fn tokens_are_ordered_levels_and_clip_out_of_range_samples() {
    for q in [Quantisation::MuLaw, Quantisation::Linear] {
        let c = codec(q);
        let ids = c.encode(&grid()).unwrap();
        assert!(
            ids.windows(2).all(|w| w[0] <= w[1]),
            "{q}: tokens must grow with the sample"
        );
        assert_eq!((ids[0], *ids.last().unwrap()), (0, 255));
        assert_eq!(c.encode(&vec![-3.0, 7.5]).unwrap(), vec![0, 255]);
        // Every level decodes inside [-1, 1] and re-encodes to itself.
        let levels: Vec<u32> = (0..256).collect();
        let xs = c.decode(&levels).unwrap();
        assert!(xs.iter().all(|x| x.abs() <= 1.0));
        assert_eq!(c.encode(&xs).unwrap(), levels);
    }
}

#[test]
fn bad_samples_and_special_tokens_are_errors() {
    let c = AudioCodec::new(Quantisation::MuLaw, 8000, vec!["a".into()]).unwrap();
    let err = c.encode(&vec![0.0, f32::NAN]).unwrap_err().to_string();
    assert!(err.contains("sample 1"), "{err}");
    let end = c.vocab().end.unwrap();
    let err = c.decode(&[3, end]).unwrap_err().to_string();
    assert!(err.contains("[END]"), "{err}");
}

#[test]
fn vocabulary_has_end_then_conditioning_tokens() {
    let classes: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let c = AudioCodec::new(Quantisation::MuLaw, 8000, classes).unwrap();
    let v = c.vocab();
    assert_eq!(v.content_size, 256);
    assert_eq!(v.end, Some(256));
    assert_eq!(v.unconditional, Some(257));
    assert_eq!(v.bos, None);
    assert_eq!(v.size(), 256 + 1 + 1 + 10);
    assert_eq!(c.token_label(v.class_token("7").unwrap()), "[CLASS 7]");
    assert_eq!(c.token_label(256), "[END]");
    let label = c.token_label(200);
    assert!(label.starts_with("mu 200 (+0."), "{label}");
    assert!(
        codec(Quantisation::Linear)
            .token_label(0)
            .starts_with("lin 0 (-0.99")
    );
    // Without classes a BOS starts every sequence, so generation always has a first token.
    let plain = codec(Quantisation::MuLaw);
    assert_eq!(
        plain.vocab().start_token(None).unwrap(),
        Some(plain.unlabelled_start())
    );
}

#[test]
fn config_json_round_trips_and_explains_bad_input() {
    for q in [Quantisation::MuLaw, Quantisation::Linear] {
        let c = AudioCodec::new(q, 16_000, vec!["yes".into(), "no".into()]).unwrap();
        let j = c.to_json();
        assert_eq!(j["kind"], "audio");
        assert_eq!(j["rate"], 16_000);
        assert_eq!(j["quantisation"], q.name());
        assert_eq!(AudioCodec::from_json(&j, Path::new(".")).unwrap(), c);
        // Through text, as it goes to config.json.
        let text = serde_json::to_string_pretty(&j).unwrap();
        assert_eq!(
            AudioCodec::from_json(&serde_json::from_str(&text).unwrap(), Path::new(".")).unwrap(),
            c
        );
    }
    let cases = [
        (json!([1, 2]), "not a JSON object"),
        (
            json!({"kind": "text", "rate": 8000, "quantisation": "mu-law"}),
            "not \"audio\"",
        ),
        (json!({"kind": "audio", "rate": 8000}), "quantisation"),
        (
            json!({"kind": "audio", "rate": 8000, "quantisation": "a-law"}),
            "unknown audio quantisation",
        ),
        (json!({"kind": "audio", "quantisation": "mu-law"}), "rate"),
        (
            json!({"kind": "audio", "rate": 5, "quantisation": "mu-law"}),
            "sample rate",
        ),
        (
            json!({"kind": "audio", "rate": 8000, "quantisation": "mu-law", "levels": 65536}),
            "levels",
        ),
        (
            json!({"kind": "audio", "rate": 8000, "quantisation": "mu-law", "classes": [1]}),
            "strings",
        ),
        (
            json!({"kind": "audio", "rate": 8000, "quantisation": "mu-law", "classes": ["a", "a"]}),
            "twice",
        ),
    ];
    for (value, expected) in cases {
        let err = format!(
            "{:#}",
            AudioCodec::from_json(&value, Path::new(".")).unwrap_err()
        );
        assert!(err.contains(expected), "{value}: {err}");
    }
}
