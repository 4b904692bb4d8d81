//! The codec section of config.json and its side files, through a temporary model folder.

mod common;

use image::RgbImage;
use jielong_core::{Codec, FolderCodec};
use jielong_image::{Codebook, ImageCodec, Palette};
use serde_json::json;

fn digits(n: usize) -> Vec<RgbImage> {
    common::mnist().train[..n]
        .iter()
        .map(|l| l.image.clone())
        .collect()
}

/// Saves, reloads through JSON text and checks the codec and its tokens are unchanged.
fn round_trip(codec: &ImageCodec, sample: &RgbImage) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    codec.save_files(dir.path()).unwrap();
    let text = serde_json::to_string_pretty(&codec.to_json()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    for file in codec.side_files() {
        assert!(dir.path().join(file).is_file(), "{file} was written");
    }
    let back = ImageCodec::from_json(&json, dir.path()).unwrap();
    assert_eq!(&back, codec);
    assert_eq!(back.encode(sample).unwrap(), codec.encode(sample).unwrap());
    json
}

#[test]
fn every_kind_round_trips() {
    let sample = digits(100);
    let classes: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let grey = ImageCodec::grey(28, 28, 16, classes.clone()).unwrap();
    let json = round_trip(&grey, &sample[0]);
    assert_eq!(json["kind"], "grey");
    assert_eq!(json["levels"], 16);
    assert_eq!(
        (json["width"].as_u64(), json["height"].as_u64()),
        (Some(28), Some(28))
    );
    assert_eq!(json["classes"][3], "3");
    assert_eq!(json["vocab_size"], 16 + 1 + 10);

    let blocks = ImageCodec::binary_blocks(28, 28, 2, vec![]).unwrap();
    assert_eq!(round_trip(&blocks, &sample[1])["block"], 2);

    let palette = ImageCodec::palette(
        28,
        28,
        Palette::fit(&sample, 8, 3).unwrap(),
        classes.clone(),
    )
    .unwrap();
    let json = round_trip(&palette, &sample[2]);
    assert_eq!(json["palette_file"], "palette.json");
    assert_eq!(json["files"], json!(["palette.json"]));

    let patches =
        ImageCodec::patches(28, 28, Codebook::fit(&sample, 4, 1, 32, 3).unwrap(), vec![]).unwrap();
    let json = round_trip(&patches, &sample[3]);
    assert_eq!(json["codebook_file"], "codebook.json");
    assert_eq!(json["patch"], 4);
}

#[test]
fn bad_sections_and_missing_files_are_clear_errors() {
    let sample = digits(50);
    let dir = tempfile::tempdir().unwrap();
    let codec =
        ImageCodec::patches(28, 28, Codebook::fit(&sample, 4, 1, 16, 0).unwrap(), vec![]).unwrap();
    let json = codec.to_json();

    // The side file was never written.
    let err = format!(
        "{:#}",
        ImageCodec::from_json(&json, dir.path()).unwrap_err()
    );
    assert!(
        err.contains("codebook.json") && err.contains("incomplete"),
        "{err}"
    );

    // A damaged side file.
    std::fs::write(dir.path().join("codebook.json"), b"{\"patch\": 4").unwrap();
    let err = format!(
        "{:#}",
        ImageCodec::from_json(&json, dir.path()).unwrap_err()
    );
    assert!(err.contains("is not a codebook file"), "{err}");

    // A side file that disagrees with config.json.
    codec.save_files(dir.path()).unwrap();
    let mut wrong = json.clone();
    wrong["codebook_size"] = json!(999);
    let err = format!(
        "{:#}",
        ImageCodec::from_json(&wrong, dir.path()).unwrap_err()
    );
    assert!(err.contains("codebook_size"), "{err}");

    // Side files must stay inside the model folder.
    let mut escape = json.clone();
    escape["codebook_file"] = json!("../codebook.json");
    assert!(ImageCodec::from_json(&escape, dir.path()).is_err());

    let cases = [
        (
            json!({"kind": "jpeg", "width": 28, "height": 28}),
            "unknown image codec kind",
        ),
        (json!({"width": 28, "height": 28}), "has no \"kind\""),
        (
            json!({"kind": "grey", "width": 28, "height": 28}),
            "has no \"levels\"",
        ),
        (
            json!({"kind": "grey", "width": "28", "height": 28, "levels": 4}),
            "\"width\" must be a whole number",
        ),
        (
            json!({"kind": "grey", "width": 28, "height": 28, "levels": 999}),
            "2 to 256 levels",
        ),
        (
            json!({"kind": "grey", "width": 28, "height": 28, "levels": 4, "classes": "0"}),
            "list of names",
        ),
        (
            json!({"kind": "grey", "width": 28, "height": 28, "levels": 4, "vocab_size": 7}),
            "vocab_size",
        ),
        (json!([1, 2]), "not a JSON object"),
    ];
    for (section, wanted) in cases {
        let err = format!(
            "{:#}",
            ImageCodec::from_json(&section, dir.path()).unwrap_err()
        );
        assert!(err.contains(wanted), "{section}: {err}");
    }
}

#[test]
fn palette_file_is_readable_json() {
    let dir = tempfile::tempdir().unwrap();
    let palette = Palette::new(vec![[0, 0, 0], [255, 128, 1]]).unwrap();
    palette.save(&dir.path().join("palette.json")).unwrap();
    let text = std::fs::read_to_string(dir.path().join("palette.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["colours"], json!(["#000000", "#ff8001"]));
    assert_eq!(
        Palette::load(&dir.path().join("palette.json")).unwrap(),
        palette
    );
    std::fs::write(dir.path().join("bad.json"), r##"{"colours": ["#00000g"]}"##).unwrap();
    let err = format!(
        "{:#}",
        Palette::load(&dir.path().join("bad.json")).unwrap_err()
    );
    assert!(err.contains("#rrggbb"), "{err}");
}
