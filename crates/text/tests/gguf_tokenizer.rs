//! A GGUF file's tokenizer, rebuilt as a `tokenizers::Tokenizer`, gives llama.cpp's token ids.
//!
//! The references are llama.cpp's own ids (through node-llama-cpp, see
//! tests/fixtures/gguf-tokenizer/README.md) for every string of `strings.json`: spaces of every
//! kind, newlines, digits, code, punctuation, CJK, emoji, accents, special tokens written in the
//! text. The fixtures cover both tokenizer models and every supported pre-tokenizer; SmolLM2
//! (a real chat model, fetched by scripts/fetch-smollm2.sh) is checked when it is there.

use std::path::{Path, PathBuf};

use jielong_core::{Codec, FolderCodec};
use jielong_gguf::GgufFile;
use jielong_text::{GgufVocab, Message, TextCodec, TokenType, encode_like_llama_cpp};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gguf-tokenizer")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn strings() -> Vec<String> {
    serde_json::from_value(read_json(&fixtures().join("strings.json"))).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Compares jielong with llama.cpp's reference for one GGUF file: ids with and without special
/// token parsing, ids through the text codec, prompts (BOS/EOS as llama.cpp adds them) and, when
/// `check_decoding`, the decoded text. Returns every mismatch, described.
fn compare(gguf: &Path, reference: &Value, check_decoding: bool) -> Vec<String> {
    let name = gguf.file_name().unwrap().to_string_lossy().to_string();
    let file = GgufFile::open(gguf).unwrap();
    let vocab = GgufVocab::from_file(&file).unwrap();
    let tokenizer = vocab
        .tokenizer()
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let codec = TextCodec::from_gguf(&file).unwrap();
    let mut bad = Vec::new();

    let (bos, eos) = (reference["bos"].as_u64(), reference["eos"].as_u64());
    if vocab.bos_id().map(u64::from) != bos || vocab.eos_id().map(u64::from) != eos {
        bad.push(format!(
            "{name}: BOS/EOS {:?}/{:?}, llama.cpp {bos:?}/{eos:?}",
            vocab.bos_id(),
            vocab.eos_id()
        ));
    }
    assert_eq!(codec.vocab().bos.map(u64::from), bos, "{name}: codec BOS");
    assert_eq!(codec.vocab().end.map(u64::from), eos, "{name}: codec end");
    let add_bos = reference["add_bos"].as_bool().unwrap();
    let add_eos = reference["add_eos"].as_bool().unwrap();

    for (i, text) in strings().iter().enumerate() {
        let special = ids(&reference["special"][i]);
        let plain = ids(&reference["plain"][i]);
        let got = encode_like_llama_cpp(&tokenizer, text, true).unwrap();
        if got != special {
            bad.push(format!(
                "{name}: {text:?} (special tokens parsed)\n  jielong   {got:?}\n  llama.cpp {special:?}"
            ));
        }
        let got = encode_like_llama_cpp(&tokenizer, text, false).unwrap();
        if got != plain {
            bad.push(format!(
                "{name}: {text:?} (special tokens as text)\n  jielong   {got:?}\n  llama.cpp {plain:?}"
            ));
        }
        // The codec is the same tokenizer: training text and prompts read special tokens.
        let got = codec.encode_text(text).unwrap();
        if got != special {
            bad.push(format!("{name}: {text:?} through the codec: {got:?}"));
        }
        let mut prompt = special.clone();
        if add_bos {
            prompt.insert(0, bos.unwrap() as u32);
        }
        if add_eos {
            prompt.push(eos.unwrap() as u32);
        }
        let got = codec.encode_prompt(text).unwrap();
        if got != prompt {
            bad.push(format!(
                "{name}: {text:?} as a prompt\n  jielong   {got:?}\n  llama.cpp {prompt:?}"
            ));
        }
        if check_decoding {
            let want = reference["decoded"][i].as_str().unwrap();
            let got = codec.decode_text(&special).unwrap();
            if got != want {
                bad.push(format!(
                    "{name}: {text:?} decoded\n  jielong   {got:?}\n  llama.cpp {want:?}"
                ));
            }
        }
    }
    bad
}

fn assert_none(bad: Vec<String>) {
    assert!(
        bad.is_empty(),
        "{} mismatches with llama.cpp:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// llama.cpp's detokenizer drops the space before `.,!?` and around some apostrophes for the
/// `default`, `gpt-2` and `llama-bpe` pre-tokenizers (`clean_spaces`); jielong decodes exactly,
/// so those three are not compared.
fn decodes_like_llama_cpp(file: &str) -> bool {
    !matches!(
        file,
        "bpe-default.gguf" | "bpe-gpt-2.gguf" | "bpe-llama-bpe.gguf"
    )
}

#[test]
fn fixtures_give_llama_cpp_ids_for_every_string() {
    let refs = read_json(&fixtures().join("refs.json"));
    let files = refs["files"].as_object().unwrap();
    // Both tokenizer models and every supported pre-tokenizer have a fixture.
    for name in [
        "bpe-default.gguf",
        "bpe-gpt-2.gguf",
        "bpe-llama-bpe.gguf",
        "bpe-qwen2.gguf",
        "bpe-smollm.gguf",
        "spm.gguf",
        "spm-noprefix.gguf",
    ] {
        assert!(files.contains_key(name), "no reference for {name}");
    }
    let mut bad = Vec::new();
    for (name, reference) in files {
        bad.extend(compare(
            &fixtures().join(name),
            reference,
            decodes_like_llama_cpp(name),
        ));
    }
    assert_none(bad);
}

#[test]
fn pre_tokenizers_really_differ_on_the_fixtures() {
    // A guard on the references themselves: were every pre-tokenizer the same, the test above
    // could not tell them apart.
    let refs = read_json(&fixtures().join("refs.json"));
    let of = |file: &str| refs["files"][file]["special"].clone();
    let names = [
        "bpe-default.gguf",
        "bpe-gpt-2.gguf",
        "bpe-llama-bpe.gguf",
        "bpe-qwen2.gguf",
        "bpe-smollm.gguf",
    ];
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            assert_ne!(of(a), of(b), "{a} and {b} tokenize every string alike");
        }
    }
}

/// The SmolLM2 GGUF: `$JIELONG_SMOLLM2`, or where scripts/fetch-smollm2.sh puts it.
fn smollm2() -> PathBuf {
    std::env::var_os("JIELONG_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../.cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        })
}

#[test]
#[ignore = "needs SmolLM2"]
fn smollm2_gives_llama_cpp_ids_for_every_string() {
    let path = smollm2();
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-smollm2.sh",
        path.display()
    );
    let refs = read_json(&fixtures().join("smollm2-refs.json"));
    let reference = &refs["files"]["SmolLM2-135M-Instruct.Q4_1.gguf"];
    assert_none(compare(&path, reference, true));
}

#[test]
#[ignore = "needs SmolLM2"]
fn smollm2_chat_template_renders_chatml_that_tokenizes_to_its_control_tokens() {
    let file = GgufFile::open(smollm2()).unwrap();
    let vocab = GgufVocab::from_file(&file).unwrap();
    assert_eq!(
        (vocab.model.as_str(), vocab.pre.as_deref()),
        ("gpt2", Some("smollm"))
    );
    let template = vocab
        .chat_template()
        .unwrap()
        .expect("SmolLM2 has a template");
    assert_eq!(
        (template.bos_token.as_str(), template.eos_token.as_str()),
        ("<|im_start|>", "<|im_end|>")
    );
    let text = template
        .render(
            &[
                Message::new("system", "Be brief."),
                Message::new("user", "hi"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
    let codec = TextCodec::from_gguf(&file).unwrap();
    let ids = codec.encode_prompt(&text).unwrap();
    // add_bos_token is false: the prompt starts with the template's own <|im_start|> (1).
    assert_eq!(ids[0], 1);
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 3);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 2);
    assert_eq!(codec.decode_text(&ids).unwrap(), text);
}

#[test]
fn the_tokenizer_survives_tokenizer_json_and_the_codec_section() {
    // A model converted from GGUF is saved as a folder with tokenizer.json: the saved tokenizer
    // must give the same ids.
    let strings = strings();
    for name in ["bpe-llama-bpe.gguf", "bpe-smollm.gguf", "spm.gguf"] {
        let codec = TextCodec::from_gguf(&GgufFile::open(fixtures().join(name)).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        codec.save_files(dir.path()).unwrap();
        let back = TextCodec::from_json(&codec.to_json(), dir.path()).unwrap();
        for text in &strings {
            assert_eq!(
                back.encode_prompt(text).unwrap(),
                codec.encode_prompt(text).unwrap(),
                "{name}: {text:?}"
            );
        }
    }
}

#[test]
fn fixture_chat_templates_render_with_the_bos_and_eos_texts() {
    let spm = GgufVocab::open(&fixtures().join("spm.gguf")).unwrap();
    let t = spm.chat_template().unwrap().unwrap();
    assert_eq!(
        t.render(&[Message::new("user", "hi")], true).unwrap(),
        "<s>[user] hi</s>"
    );
    let bpe = GgufVocab::open(&fixtures().join("bpe-qwen2.gguf")).unwrap();
    let t = bpe.chat_template().unwrap().unwrap();
    assert_eq!(
        t.render(&[Message::new("user", "hi")], true).unwrap(),
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
    assert!(
        GgufVocab {
            chat_template: None,
            ..spm.clone()
        }
        .chat_template()
        .unwrap()
        .is_none()
    );
    let broken = GgufVocab {
        chat_template: Some("{% for m in messages %}".into()),
        ..spm
    };
    let err = format!("{:#}", broken.chat_template().unwrap_err());
    assert!(err.contains("tokenizer.chat_template"), "{err}");
}

/// A small valid vocabulary of each model to break in the tests below.
fn small(model: &str) -> GgufVocab {
    match model {
        // Bytes 'a', 'b', 'Ġ' (space) and the merges that make "ab" and "Ġab".
        "gpt2" => GgufVocab {
            model: "gpt2".into(),
            pre: Some("gpt-2".into()),
            tokens: ["a", "b", "Ġ", "ab", "Ġab", "<|end|>"]
                .map(String::from)
                .to_vec(),
            token_types: Some(vec![1, 1, 1, 1, 1, 3]),
            merges: Some(vec!["a b".into(), "Ġ ab".into()]),
            eos: Some(5),
            ..Default::default()
        },
        _ => GgufVocab {
            model: "llama".into(),
            tokens: ["<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "▁ab"]
                .map(String::from)
                .to_vec(),
            scores: Some(vec![0.0, 0.0, 0.0, -5.0, -6.0, -7.0, -1.0, -2.0]),
            token_types: Some(vec![2, 3, 3, 1, 1, 1, 1, 1]),
            ..Default::default()
        },
    }
}

fn error_of(v: GgufVocab) -> String {
    format!("{:#}", v.tokenizer().expect_err("should be refused"))
}

#[test]
fn small_vocabularies_tokenize_as_built() {
    let gpt2 = small("gpt2").tokenizer().unwrap();
    assert_eq!(
        encode_like_llama_cpp(&gpt2, "ab ab<|end|>", true).unwrap(),
        [3, 4, 5]
    );
    // As plain text, "<|end|>" has no tokens for its characters: they are dropped, as in
    // llama.cpp (and the codec's encode_text refuses such text).
    assert_eq!(
        encode_like_llama_cpp(&gpt2, "ab<|end|>", false).unwrap(),
        [3]
    );
    // gpt2's default is no BOS; llama's is BOS (id 1 when the file names none).
    assert_eq!(gpt2.encode("ab", true).unwrap().get_ids(), [3]);
    let llama = small("llama").tokenizer().unwrap();
    assert_eq!(llama.encode("ab a", true).unwrap().get_ids(), [1, 7, 6]);
    assert_eq!(encode_like_llama_cpp(&llama, "ab a", true).unwrap(), [7, 6]);
    // Without the dummy prefix the first 'a' has no '▁' to merge with.
    let no_prefix = GgufVocab {
        add_space_prefix: Some(false),
        add_bos: Some(false),
        add_eos: Some(true),
        ..small("llama")
    };
    let t = no_prefix.tokenizer().unwrap();
    assert_eq!(t.encode("ab a", true).unwrap().get_ids(), [4, 5, 6, 2]);
    assert_eq!(TokenType::from_i32(3), TokenType::Control);
    assert_eq!(TokenType::from_i32(99), TokenType::Undefined);
}

#[test]
fn bad_vocabularies_are_clear_errors() {
    let e = error_of(GgufVocab {
        pre: Some("xyz".into()),
        ..small("gpt2")
    });
    assert!(
        e.contains("pre-processing 'xyz' is not supported")
            && e.contains("default, gpt2, llama-bpe, qwen2, smollm"),
        "{e}"
    );
    let e = error_of(GgufVocab {
        model: "t5".into(),
        ..small("llama")
    });
    assert!(e.contains("tokenizer model 't5' is not supported"), "{e}");
    let e = error_of(GgufVocab {
        scores: Some(vec![0.0; 7]),
        ..small("llama")
    });
    assert!(e.contains("8 tokens") && e.contains("7 scores"), "{e}");
    let e = error_of(GgufVocab {
        token_types: Some(vec![1; 9]),
        ..small("llama")
    });
    assert!(e.contains("9 token types"), "{e}");
    let e = error_of(GgufVocab {
        scores: None,
        ..small("llama")
    });
    assert!(e.contains("no scores"), "{e}");
    let e = error_of(GgufVocab {
        merges: None,
        ..small("gpt2")
    });
    assert!(
        e.contains("no merges") && e.contains("tokenizer.ggml.merges"),
        "{e}"
    );
    let e = error_of(GgufVocab {
        merges: Some(vec!["a b".into(), "ab".into()]),
        ..small("gpt2")
    });
    assert!(e.contains("merge #1") && e.contains("space"), "{e}");
    let e = error_of(GgufVocab {
        merges: Some(vec!["b a".into()]),
        ..small("gpt2")
    });
    assert!(
        e.contains("merge #0") && e.contains("\"ba\" is not a token"),
        "{e}"
    );
    let mut twice = small("gpt2");
    twice.tokens[4] = "ab".into();
    let e = error_of(twice);
    assert!(e.contains("\"ab\" twice (ids 3 and 4)"), "{e}");
    let e = error_of(GgufVocab {
        tokens: vec![],
        token_types: None,
        ..small("gpt2")
    });
    assert!(e.contains("empty"), "{e}");
    let e = error_of(GgufVocab {
        bos: Some(99),
        ..small("gpt2")
    });
    assert!(e.contains("bos_token_id is 99"), "{e}");
    let e = error_of(GgufVocab {
        add_bos: Some(true),
        ..small("gpt2")
    });
    assert!(e.contains("names no BOS token"), "{e}");
}

#[test]
fn a_gguf_without_a_tokenizer_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.gguf");
    let mut w = jielong_gguf::GgufWriter::new();
    w.add("general.architecture", "llama");
    w.create(&path).unwrap().finish().unwrap();
    let e = format!("{:#}", GgufVocab::open(&path).unwrap_err());
    assert!(e.contains("tokenizer.ggml.model"), "{e}");
}
