//! The frame codec: codebook fitting, encode/decode shapes, config.json and codebook.json round
//! trips, and the errors for broken folders.

use jielong_audio::{AudioCodec, FrameCodebook, Quantisation};
use jielong_core::{Codec, FolderCodec};

const RATE: u32 = 8000;

/// Two seconds of a tone that glides and pulses, so its frames differ.
fn clip(seed: f32) -> Vec<f32> {
    (0..2 * RATE as usize)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            let envelope = 0.5 + 0.5 * (2.0 * std::f32::consts::PI * 3.0 * t + seed).sin();
            0.4 * envelope
                * (2.0 * std::f32::consts::PI * (200.0 + 600.0 * t + 100.0 * seed) * t).sin()
        })
        .collect()
}

fn fitted(k: usize) -> FrameCodebook {
    let clips = [clip(0.0), clip(1.0), vec![0.0; 4000]];
    let refs: Vec<&[f32]> = clips.iter().map(Vec::as_slice).collect();
    FrameCodebook::fit(&refs, 256, 64, k, 7).unwrap()
}

fn digits() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

#[test]
fn fitting_is_deterministic_and_orders_entries_quietest_first() {
    let a = fitted(32);
    assert_eq!(a, fitted(32));
    assert_eq!(a.len(), 32);
    let levels: Vec<f32> = (0..32).map(|i| a.level_db(i).unwrap()).collect();
    assert!(levels.windows(2).all(|w| w[0] <= w[1]), "{levels:?}");
    // The silent clip's frames are the quietest entry, far below the tone's.
    assert!(levels[0] < levels[31] - 60.0, "{levels:?}");
}

#[test]
fn a_frame_codec_has_one_token_per_hop_and_decodes_to_hop_samples_each() {
    let codec = AudioCodec::frames(fitted(32), RATE, digits()).unwrap();
    assert_eq!(codec.vocab().content_size, 32);
    assert_eq!(codec.end(), 32);
    assert_eq!(codec.class_of("3").unwrap(), 32 + 2 + 3);
    assert_eq!(codec.samples_per_token(), 64);
    assert_eq!(codec.tokens_per_second(), 125.0);
    let x = clip(0.5);
    let ids = codec.encode(&x[..1000].to_vec()).unwrap();
    assert_eq!(ids.len(), 16); // ceil(1000 / 64)
    assert!(ids.iter().all(|&id| id < 32));
    let y = codec.decode(&ids).unwrap();
    assert_eq!(y.len(), 16 * 64);
    assert!(y.iter().all(|v| v.is_finite()));
    // The sample-level views do not exist for frames, and specials are not content.
    assert_eq!(codec.token_to_sample(ids[0]), None);
    assert_eq!(codec.sample_to_token(0.1), None);
    assert!(codec.decode(&[ids[0], codec.end()]).is_err());
    assert!(codec.token_label(ids[0]).starts_with("frame "));
}

#[test]
fn silence_decodes_quieter_than_the_tone() {
    let codec = AudioCodec::frames(fitted(32), RATE, Vec::new()).unwrap();
    let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
    let tone = codec.decode(&codec.encode(&clip(0.0)).unwrap()).unwrap();
    let quiet = codec
        .decode(&codec.encode(&vec![0.0; 4000]).unwrap())
        .unwrap();
    assert!(rms(&tone) > 0.05, "{}", rms(&tone));
    assert!(rms(&quiet) < 1e-3, "{}", rms(&quiet));
}

#[test]
fn config_and_codebook_round_trip_through_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let codec = AudioCodec::frames(fitted(16), RATE, digits()).unwrap();
    codec.save_files(dir.path()).unwrap();
    let json = codec.to_json();
    assert_eq!(json["tokens"], "frames");
    assert_eq!(json["hop"], 64);
    let back = AudioCodec::from_json(&json, dir.path()).unwrap();
    assert_eq!(back, codec);

    // A sample codec's section without "tokens" (folders written before frames) still reads.
    let mut old = AudioCodec::new(Quantisation::MuLaw, RATE, digits())
        .unwrap()
        .to_json();
    old.as_object_mut().unwrap().remove("tokens");
    assert!(AudioCodec::from_json(&old, dir.path()).is_ok());

    // Broken folders and sections are clear errors.
    let mut wrong = json.clone();
    wrong["codebook"] = 17.into();
    let e = AudioCodec::from_json(&wrong, dir.path()).unwrap_err();
    assert!(format!("{e:#}").contains("codebook"), "{e:#}");
    let mut unknown = json.clone();
    unknown["tokens"] = "wavelets".into();
    assert!(AudioCodec::from_json(&unknown, dir.path()).is_err());
    std::fs::write(dir.path().join("codebook.json"), b"{\"window\": 256}").unwrap();
    let e = AudioCodec::from_json(&json, dir.path()).unwrap_err();
    assert!(format!("{e:#}").contains("codebook"), "{e:#}");
    let empty = tempfile::tempdir().unwrap();
    let e = AudioCodec::from_json(&json, empty.path()).unwrap_err();
    assert!(format!("{e:#}").contains("incomplete"), "{e:#}");
}

#[test]
fn bad_codebooks_are_refused() {
    let clips = [clip(0.0)];
    let refs: Vec<&[f32]> = clips.iter().map(Vec::as_slice).collect();
    assert!(FrameCodebook::fit(&refs, 256, 64, 1, 0).is_err()); // too few entries
    assert!(FrameCodebook::fit(&refs, 256, 64, 5000, 0).is_err()); // too many
    assert!(FrameCodebook::fit(&refs[..0], 256, 64, 8, 0).is_err()); // no audio
    assert!(FrameCodebook::new(256, 64, vec![vec![0.0; 129]; 1]).is_err());
    assert!(FrameCodebook::new(256, 64, vec![vec![0.0; 128]; 4]).is_err());
    assert!(FrameCodebook::new(256, 64, vec![vec![f32::NAN; 129]; 4]).is_err());
}
