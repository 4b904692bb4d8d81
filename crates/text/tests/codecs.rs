//! Text codecs round-trip real text, refuse what they cannot express, and stream safely.

use jielong_core::{Codec, FolderCodec};
use jielong_text::{TextCodec, TextCorpus, TextStream, find_stop, read_text, train_bpe};

fn botchan() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/text/botchan.txt");
    read_text(&path).unwrap()
}

#[test]
fn bytes_and_chars_round_trip() {
    let text = "Hello, 接龍!\nÇa va?";
    let bytes = TextCodec::bytes();
    let ids = bytes.encode_text(text).unwrap();
    assert_eq!(ids.len(), text.len());
    assert_eq!(bytes.decode_text(&ids).unwrap(), text);

    let chars = TextCodec::chars_of(text).unwrap();
    let ids = chars.encode_text(text).unwrap();
    assert_eq!(ids.len(), text.chars().count());
    assert_eq!(chars.decode_text(&ids).unwrap(), text);
    assert!(ids.iter().all(|&i| (i as usize) < chars.vocab().size()));
    let err = chars.encode_text("xyz").unwrap_err().to_string();
    assert!(err.contains("'x'") && err.contains("vocabulary"), "{err}");
    assert!(chars.decode_text(&[999]).is_err());
}

#[test]
fn trained_bpe_round_trips_and_reloads_to_the_same_ids() {
    let corpus = botchan();
    let sample = &corpus[..200_000];
    let tok = train_bpe(sample, 512).unwrap();
    let codec = TextCodec::tokenizer(tok, "tokenizer.json", None, None);
    assert_eq!(codec.vocab().size(), 512);
    let held = &corpus[250_000..252_000];
    let ids = codec.encode_text(held).unwrap();
    assert!(
        ids.len() < held.len() / 2,
        "BPE should compress English text: {} ids for {} bytes",
        ids.len(),
        held.len()
    );
    assert_eq!(codec.decode_text(&ids).unwrap(), held);
    // Unicode never seen in training still encodes through the byte alphabet.
    let odd = "接龍 — ünïcödé";
    assert_eq!(
        codec.decode_text(&codec.encode_text(odd).unwrap()).unwrap(),
        odd
    );

    let dir = tempfile::tempdir().unwrap();
    codec.save_files(dir.path()).unwrap();
    let back = TextCodec::from_json(&codec.to_json(), dir.path()).unwrap();
    assert_eq!(back.encode_text(held).unwrap(), ids);
}

#[test]
fn codec_sections_round_trip_and_bad_ones_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let chars = TextCodec::chars_of("abc\n").unwrap();
    let back = TextCodec::from_json(&chars.to_json(), dir.path()).unwrap();
    assert_eq!(
        back.encode_text("cab\n").unwrap(),
        chars.encode_text("cab\n").unwrap()
    );
    assert!(TextCodec::from_json(&serde_json::json!({"kind": "nope"}), dir.path()).is_err());
    let err = TextCodec::from_json(
        &serde_json::json!({"kind": "tokenizer", "file": "missing.json"}),
        dir.path(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("missing.json"), "{err}");
}

#[test]
fn streaming_holds_back_partial_characters() {
    let codec = TextCodec::bytes();
    let mut stream = TextStream::new(&codec);
    let mut out = String::new();
    for id in codec.encode_text("a接b").unwrap() {
        let piece = stream.push(id).unwrap();
        assert!(!piece.contains('\u{FFFD}'));
        out += &piece;
    }
    out += &stream.finish().unwrap();
    assert_eq!(out, "a接b");
}

#[test]
fn stop_strings_and_splits() {
    assert_eq!(
        find_stop("hello\n\nworld", &["\n\n".into(), "wor".into()]),
        Some(5)
    );
    assert_eq!(find_stop("hello", &["x".into()]), None);
    let c = TextCorpus::split("0123456789".into(), 0.1).unwrap();
    assert_eq!((c.train.as_str(), c.heldout.as_str()), ("012345678", "9"));
    assert!(TextCorpus::split("abc".into(), 1.5).is_err());
}
