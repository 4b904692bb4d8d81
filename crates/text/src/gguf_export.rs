//! A text codec's vocabulary as GGUF metadata (`tokenizer.*`), for writing a model as a GGUF
//! file that llama.cpp runs with the same token ids and that reads back in jielong
//! ([`TextCodec::from_gguf`]).
//!
//! | codec | `tokenizer.ggml.model` | tokens |
//! |---|---|---|
//! | byte-level BPE (`tokenizer.json` with a ByteLevel pre-tokenizer; jielong's own BPE) | `gpt2` | the vocabulary as stored, the merges, and a `pre` llama.cpp knows that splits text as the tokenizer does: `gpt-2` (GPT-2's pattern, jielong's BPE), `llama-bpe` (Llama 3's), `qwen2`, `smollm` (digits, then GPT-2's); any other pre-tokenizer is refused |
//! | SentencePiece-style BPE (byte fallback, `▁` for spaces) | `llama` | the vocabulary, with scores from the merge order (the token the merge of rank `r` makes scores `-r`, so llama.cpp's highest-score-first merging follows the ranks), byte tokens `<0xNN>`, the unknown token, the dummy prefix if the tokenizer has one |
//! | bytes | `llama` | id `b` is byte `b`: printable ASCII as itself (space as `▁`, which llama.cpp writes for a space), every other byte as the byte token `<0xNN>`; no merges, no dummy prefix, so every text becomes its bytes |
//! | characters | `llama` | id `i` is character `i` (space as `▁`), no merges, no dummy prefix |
//!
//! Special tokens are control tokens (BOS, END, PAD, classes of a jielong vocabulary:
//! `<s>`, `</s>`, `<pad>`, `<|unconditional|>`, `<|class:NAME|>`; a tokenizer's special added
//! tokens), ids past the codec's up to the model's vocabulary size filler tokens
//! `<|unused_N|>` (llama.cpp needs one token per row of the embedding). `bos_token_id`,
//! `eos_token_id` (the codec's END), `add_bos_token` (whether a prompt starts with BOS, as the
//! codec's prompts do) and the chat template are written when there are any.
//!
//! Limits: llama.cpp aborts on text a character vocabulary cannot express (jielong refuses it
//! too); tokenizers of other kinds (WordPiece, Unigram) are refused.

use std::collections::HashMap;

use anyhow::{Context, Result, bail, ensure};
use jielong_core::Codec;
use jielong_gguf::{Array, GgufString, Value};
use serde_json::Value as Json;

use crate::{GgufVocab, TextCodec, TokenType};

impl GgufVocab {
    /// The `tokenizer.*` metadata entries that [`GgufVocab::from_file`] reads back as this
    /// vocabulary (absent fields are not written).
    pub fn to_metadata(&self) -> Vec<(String, Value)> {
        let mut md: Vec<(String, Value)> = Vec::new();
        let mut add = |k: &str, v: Value| md.push((format!("tokenizer.{k}"), v));
        add("ggml.model", Value::from(self.model.as_str()));
        if let Some(pre) = &self.pre {
            add("ggml.pre", Value::from(pre.as_str()));
        }
        add("ggml.tokens", Value::from(self.tokens.clone()));
        if let Some(s) = &self.scores {
            add("ggml.scores", Value::Array(Array::F32(s.clone())));
        }
        if let Some(t) = &self.token_types {
            add("ggml.token_type", Value::Array(Array::I32(t.clone())));
        }
        if let Some(m) = &self.merges {
            add("ggml.merges", Value::from(m.clone()));
        }
        for (k, id) in [
            ("ggml.bos_token_id", self.bos),
            ("ggml.eos_token_id", self.eos),
            ("ggml.eot_token_id", self.eot),
            ("ggml.unknown_token_id", self.unk),
            ("ggml.padding_token_id", self.pad),
        ] {
            if let Some(id) = id {
                add(k, Value::U32(id));
            }
        }
        for (k, b) in [
            ("ggml.add_bos_token", self.add_bos),
            ("ggml.add_eos_token", self.add_eos),
            ("ggml.add_space_prefix", self.add_space_prefix),
        ] {
            if let Some(b) = b {
                add(k, Value::Bool(b));
            }
        }
        if let Some(t) = &self.chat_template {
            add("chat_template", Value::String(GgufString::from(t.as_str())));
        }
        md
    }
}

/// The GGUF vocabulary of a text codec with `vocab_size` tokens (the model's; ids past the
/// codec's become filler). See the module docs.
pub fn gguf_vocab(codec: &TextCodec, vocab_size: usize) -> Result<GgufVocab> {
    let mut v = match codec {
        TextCodec::Bytes { .. } => plain_vocab(codec, &byte_texts())?,
        TextCodec::Chars { chars, .. } => {
            ensure!(
                !(chars.contains(&' ') && chars.contains(&'▁')),
                "the character vocabulary holds both ' ' and '▁', which llama.cpp cannot tell \
                 apart"
            );
            let texts: Vec<String> = chars
                .iter()
                .map(|&c| {
                    if c == ' ' {
                        "▁".into()
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            plain_vocab(codec, &texts)?
        }
        TextCodec::Tokenizer { tokenizer, .. } => tokenizer_vocab(codec, tokenizer)?,
    };
    let n = v.tokens.len();
    ensure!(
        n <= vocab_size,
        "the codec has {n} tokens but the model only {vocab_size}"
    );
    let taken: std::collections::HashSet<String> = v.tokens.iter().cloned().collect();
    let mut k = 0;
    while v.tokens.len() < vocab_size {
        let filler = format!("<|unused_{k}|>");
        k += 1;
        if taken.contains(&filler) {
            continue;
        }
        v.tokens.push(filler);
        if let Some(s) = &mut v.scores {
            s.push(0.0);
        }
        if let Some(t) = &mut v.token_types {
            t.push(TokenType::Unused as i32);
        }
    }
    Ok(v)
}

/// [`gguf_vocab`] as metadata entries, with a chat template if one is given.
pub fn gguf_vocab_metadata(
    codec: &TextCodec,
    vocab_size: usize,
    chat_template: Option<&str>,
) -> Result<Vec<(String, Value)>> {
    let mut v = gguf_vocab(codec, vocab_size)?;
    v.chat_template = chat_template.map(str::to_string);
    Ok(v.to_metadata())
}

/// Token texts of the byte codec: printable ASCII as itself, space as `▁`, others `<0xNN>`.
fn byte_texts() -> Vec<String> {
    (0..=255u8)
        .map(|b| match b {
            b' ' => "▁".to_string(),
            0x21..=0x7e => (b as char).to_string(),
            _ => format!("<0x{b:02X}>"),
        })
        .collect()
}

/// The names of a jielong vocabulary's special tokens, by id.
fn special_texts(codec: &TextCodec) -> Vec<(u32, String)> {
    let v = codec.vocab();
    let mut out = Vec::new();
    for (id, name) in [
        (v.bos, "<s>"),
        (v.end, "</s>"),
        (v.pad, "<pad>"),
        (v.unconditional, "<|unconditional|>"),
    ] {
        if let Some(id) = id {
            out.push((id, name.to_string()));
        }
    }
    for (i, c) in v.classes.iter().enumerate() {
        out.push((v.first_class + i as u32, format!("<|class:{c}|>")));
    }
    out
}

/// A byte or character codec: the content tokens, then the special ones; no merges.
fn plain_vocab(codec: &TextCodec, content: &[String]) -> Result<GgufVocab> {
    let v = codec.vocab();
    ensure!(
        content.len() == v.content_size,
        "the codec's content size changed"
    );
    let mut tokens = content.to_vec();
    let mut types: Vec<i32> = content
        .iter()
        .map(|t| {
            if t.len() == 6 && t.starts_with("<0x") {
                TokenType::Byte as i32
            } else {
                TokenType::Normal as i32
            }
        })
        .collect();
    tokens.resize(v.size(), String::new());
    types.resize(v.size(), TokenType::Unused as i32);
    for (id, name) in special_texts(codec) {
        tokens[id as usize] = name;
        types[id as usize] = TokenType::Control as i32;
    }
    for (i, t) in tokens.iter_mut().enumerate() {
        if t.is_empty() {
            *t = format!("<|unused_id_{i}|>");
        }
    }
    let n = tokens.len();
    Ok(GgufVocab {
        model: "llama".into(),
        pre: Some("default".into()),
        tokens,
        scores: Some(vec![0.0; n]),
        token_types: Some(types),
        merges: None,
        // Without a BOS id, llama.cpp (and jielong reading the file) would take id 1, a content
        // token here, for BOS; END stands in, never added since add_bos is false.
        bos: v.bos.or(v.end),
        eos: v.end,
        eot: None,
        unk: None,
        pad: v.pad,
        add_bos: Some(false),
        add_eos: Some(false),
        add_space_prefix: Some(false),
        chat_template: None,
    })
}

// The pre-tokenizers llama.cpp knows, as Hugging Face `tokenizer.json` files and jielong's GGUF
// tokenizer write their split patterns.
const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3_PATTERNS: [&str; 2] = [
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const QWEN2_PATTERNS: [&str; 2] = [
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
const DEFAULT_PATTERNS: [&str; 4] = [
    r"[\p{P}\$\+<=>\^~\|]+",
    GPT2_PATTERN,
    r"\p{N}+",
    r"[0-9][0-9][0-9]",
];

/// The steps of a pre-tokenizer: a Sequence's parts, or the one.
fn steps(pre: &Json) -> Vec<&Json> {
    match pre["type"].as_str() {
        Some("Sequence") => pre["pretokenizers"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        Some(_) => vec![pre],
        None => Vec::new(),
    }
}

/// llama.cpp's name for how a byte-level tokenizer splits text, if it knows one.
fn byte_level_pre(pre: &Json) -> Option<&'static str> {
    let steps = steps(pre);
    let (last, rest) = steps.split_last()?;
    if last["type"] != "ByteLevel" {
        return None;
    }
    let uses_regex = last["use_regex"].as_bool().unwrap_or(true);
    let split = |s: &Json| -> Option<String> {
        (s["type"] == "Split")
            .then(|| s["pattern"]["Regex"].as_str().map(str::to_string))
            .flatten()
    };
    let patterns: Option<Vec<String>> = rest.iter().map(|s| split(s)).collect();
    let is_digits = |s: &Json| s["type"] == "Digits" && s["individual_digits"] == true;
    match (rest, uses_regex) {
        ([], true) => Some("gpt-2"),
        ([d], true) if is_digits(d) => Some("smollm"),
        _ if !uses_regex => {
            let p = patterns?;
            let p: Vec<&str> = p.iter().map(String::as_str).collect();
            match p.as_slice() {
                [x] if *x == GPT2_PATTERN => Some("gpt-2"),
                [x] if LLAMA3_PATTERNS.contains(x) => Some("llama-bpe"),
                [x] if QWEN2_PATTERNS.contains(x) => Some("qwen2"),
                [d, x] if *d == r"\p{N}" && *x == GPT2_PATTERN => Some("smollm"),
                _ if p == DEFAULT_PATTERNS => Some("default"),
                _ => None,
            }
        }
        _ => None,
    }
}

fn is_sentencepiece_like(json: &Json) -> bool {
    let replaces_space =
        |n: &Json| n["type"] == "Replace" && n["pattern"]["String"] == " " && n["content"] == "▁";
    let normalizers: Vec<&Json> = match json["normalizer"]["type"].as_str() {
        Some("Sequence") => json["normalizer"]["normalizers"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        Some(_) => vec![&json["normalizer"]],
        None => Vec::new(),
    };
    json["model"]["byte_fallback"] == true
        || normalizers.iter().any(|n| replaces_space(n))
        || steps(&json["pre_tokenizer"])
            .iter()
            .any(|s| s["type"] == "Metaspace")
}

fn has_dummy_prefix(json: &Json) -> bool {
    let normalizers: Vec<&Json> = match json["normalizer"]["type"].as_str() {
        Some("Sequence") => json["normalizer"]["normalizers"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        Some(_) => vec![&json["normalizer"]],
        None => Vec::new(),
    };
    normalizers
        .iter()
        .any(|n| n["type"] == "Prepend" && n["prepend"] == "▁")
        || steps(&json["pre_tokenizer"]).iter().any(|s| {
            s["type"] == "Metaspace"
                && s["prepend_scheme"].as_str().unwrap_or("always") != "never"
                && s["add_prefix_space"].as_bool().unwrap_or(true)
        })
}

/// The merges of a BPE model as `"left right"` lines (files store strings or pairs).
fn merge_lines(model: &Json) -> Result<Vec<String>> {
    let merges = match model["merges"].as_array() {
        Some(m) => m,
        None => return Ok(Vec::new()),
    };
    merges
        .iter()
        .enumerate()
        .map(|(i, m)| match m {
            Json::String(s) => Ok(s.clone()),
            Json::Array(p) if p.len() == 2 => Ok(format!(
                "{} {}",
                p[0].as_str().unwrap_or_default(),
                p[1].as_str().unwrap_or_default()
            )),
            other => bail!("merge #{i} of the tokenizer is neither \"a b\" nor a pair: {other}"),
        })
        .collect()
}

fn tokenizer_vocab(codec: &TextCodec, tokenizer: &tokenizers::Tokenizer) -> Result<GgufVocab> {
    let json: Json = serde_json::from_str(
        &tokenizer
            .to_string(false)
            .map_err(|e| anyhow::anyhow!("cannot serialise the tokenizer: {e}"))?,
    )
    .context("the tokenizer's JSON")?;
    let kind = json["model"]["type"].as_str().unwrap_or("?");
    ensure!(
        kind == "BPE",
        "a {kind} tokenizer cannot be written as a llama.cpp vocabulary (BPE only)"
    );
    let size = tokenizer.get_vocab_size(true);
    let mut tokens = Vec::with_capacity(size);
    for i in 0..size as u32 {
        tokens.push(
            tokenizer
                .id_to_token(i)
                .unwrap_or_else(|| format!("<|unused_id_{i}|>")),
        );
    }
    let added = tokenizer.get_added_tokens_decoder();
    let mut types: Vec<i32> = vec![TokenType::Normal as i32; size];
    for (id, t) in &added {
        if let Some(ty) = types.get_mut(*id as usize) {
            *ty = if t.special {
                TokenType::Control as i32
            } else {
                TokenType::UserDefined as i32
            };
        }
    }
    let merges = merge_lines(&json["model"])?;
    let v = codec.vocab();
    // Whether a prompt gets BOS / EOS: ask the tokenizer.
    let with = tokenizer
        .encode("a", true)
        .map_err(|e| anyhow::anyhow!("cannot tokenize: {e}"))?;
    let plain = tokenizer
        .encode("a", false)
        .map_err(|e| anyhow::anyhow!("cannot tokenize: {e}"))?;
    let (w, p) = (with.get_ids(), plain.get_ids());
    let add_bos = w.len() > p.len() && v.bos.is_some() && w.first() == v.bos.as_ref();
    let add_eos = w.len() > p.len() && v.end.is_some() && w.last() == v.end.as_ref();

    let byte_level = steps(&json["pre_tokenizer"])
        .iter()
        .any(|s| s["type"] == "ByteLevel")
        || json["decoder"]["type"] == "ByteLevel";
    if byte_level {
        let pre = byte_level_pre(&json["pre_tokenizer"]).with_context(|| {
            format!(
                "this byte-level tokenizer splits text in a way llama.cpp has no name for \
                 (pre-tokenizer {}); llama.cpp knows gpt-2, llama-bpe, qwen2, smollm, default",
                json["pre_tokenizer"]
            )
        })?;
        return Ok(GgufVocab {
            model: "gpt2".into(),
            pre: Some(pre.into()),
            tokens,
            scores: None,
            token_types: Some(types),
            merges: Some(merges),
            bos: v.bos,
            eos: v.end,
            eot: None,
            unk: None,
            pad: v.pad,
            add_bos: Some(add_bos),
            add_eos: Some(add_eos),
            add_space_prefix: None,
            chat_template: None,
        });
    }
    ensure!(
        is_sentencepiece_like(&json),
        "this tokenizer is neither byte-level BPE nor SentencePiece-style BPE (byte fallback, \
         '▁' for spaces), the two kinds llama.cpp runs"
    );
    let mut rank: HashMap<String, usize> = HashMap::new();
    for (r, line) in merges.iter().enumerate() {
        let (a, b) = line
            .split_once(' ')
            .with_context(|| format!("merge #{r} {line:?} is not two tokens"))?;
        rank.entry(format!("{a}{b}")).or_insert(r);
    }
    let scores: Vec<f32> = tokens
        .iter()
        .map(|t| rank.get(t).map_or(0.0, |&r| -((r + 1) as f32)))
        .collect();
    let unk = json["model"]["unk_token"]
        .as_str()
        .and_then(|t| tokenizer.token_to_id(t));
    for (i, t) in tokens.iter().enumerate() {
        if t.len() == 6
            && t.starts_with("<0x")
            && t.ends_with('>')
            && u8::from_str_radix(&t[3..5], 16).is_ok()
        {
            types[i] = TokenType::Byte as i32;
        }
    }
    if let Some(u) = unk {
        types[u as usize] = TokenType::Unknown as i32;
    }
    Ok(GgufVocab {
        model: "llama".into(),
        pre: Some("default".into()),
        tokens,
        scores: Some(scores),
        token_types: Some(types),
        merges: None,
        bos: v.bos,
        eos: v.end,
        eot: None,
        unk,
        pad: v.pad,
        add_bos: Some(add_bos),
        add_eos: Some(add_eos),
        add_space_prefix: Some(has_dummy_prefix(&json)),
        chat_template: None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use jielong_gguf::{GgufFile, GgufWriter};

    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// Writes the metadata as a tensor-less GGUF file and reads the codec back.
    fn round_trip(md: &[(String, Value)]) -> (GgufVocab, TextCodec) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.gguf");
        let mut w = GgufWriter::new();
        w.add("general.architecture", "llama");
        for (k, v) in md {
            w.add(k.clone(), v.clone());
        }
        w.create(&path).unwrap().finish().unwrap();
        let file = GgufFile::open(&path).unwrap();
        (
            GgufVocab::from_file(&file).unwrap(),
            TextCodec::from_gguf(&file).unwrap(),
        )
    }

    const TEXTS: [&str; 6] = [
        "Once upon a time, there was a little girl.",
        "  two  spaces\nand a line; digits 12345 and ÉTÉ été",
        "emoji 🦀 and 中文 and tabs\t!",
        "",
        "a",
        "<s> looks special",
    ];

    fn same_ids(a: &TextCodec, b: &TextCodec, prompts: bool) {
        for t in TEXTS {
            let (x, y) = if prompts {
                (a.encode_prompt(t), b.encode_prompt(t))
            } else {
                (a.encode_text(t), b.encode_text(t))
            };
            match (x, y) {
                (Ok(x), Ok(y)) => {
                    assert_eq!(x, y, "{t:?}");
                    assert_eq!(
                        a.decode_text(&x).unwrap(),
                        b.decode_text(&y).unwrap(),
                        "{t:?}"
                    );
                }
                (Err(_), Err(_)) => {}
                (x, y) => panic!("{t:?}: {x:?} vs {y:?}"),
            }
        }
    }

    #[test]
    fn bytes_keep_their_ids() {
        let codec = TextCodec::bytes();
        let md = gguf_vocab_metadata(&codec, 260, Some("{{ messages }}")).unwrap();
        let (v, back) = round_trip(&md);
        assert_eq!(v.tokens.len(), 260);
        assert_eq!(v.tokens[32], "▁");
        assert_eq!(v.tokens[65], "A");
        assert_eq!(v.tokens[10], "<0x0A>");
        assert_eq!(v.tokens[200], "<0xC8>");
        assert_eq!(v.chat_template.as_deref(), Some("{{ messages }}"));
        for t in TEXTS {
            let ids = back.encode_prompt(t).unwrap();
            let want: Vec<u32> = t.bytes().map(u32::from).collect();
            assert_eq!(ids, want, "{t:?}");
            assert_eq!(back.decode_text(&ids).unwrap(), t);
        }
    }

    #[test]
    fn characters_keep_their_ids() {
        let corpus = "hello world\nHELLO, WORLD! 0123";
        let codec = TextCodec::chars_of(corpus).unwrap();
        let md = gguf_vocab_metadata(&codec, codec.vocab().size() + 3, None).unwrap();
        let (v, back) = round_trip(&md);
        assert_eq!(v.tokens.len(), codec.vocab().size() + 3);
        for t in ["hello world", "WORLD, hello!\n0 1 2 3"] {
            assert_eq!(
                back.encode_prompt(t).unwrap(),
                codec.encode_text(t).unwrap(),
                "{t:?}"
            );
        }
        let with_specials = TextCodec::Chars {
            vocab: jielong_core::Vocab::new(
                3,
                jielong_core::Specials {
                    bos: true,
                    end: true,
                    ..Default::default()
                },
            ),
            chars: vec![' ', 'a', 'b'],
        };
        let md = gguf_vocab_metadata(&with_specials, 5, None).unwrap();
        let (v, back) = round_trip(&md);
        assert_eq!(v.tokens, ["▁", "a", "b", "<s>", "</s>"]);
        assert_eq!((v.bos, v.eos), (Some(3), Some(4)));
        assert_eq!(back.encode_prompt("ab a").unwrap(), [1, 2, 0, 1]);
        assert_eq!(back.decode_text(&[1, 0, 2]).unwrap(), "a b");
        assert!(gguf_vocab(&with_specials, 4).is_err());
    }

    /// The SentencePiece-style tokenizer of the reference models: the same ids, prompts (BOS)
    /// and decoded texts through the GGUF vocabulary.
    #[test]
    fn sentencepiece_tokenizer_round_trips() {
        let dir = root().join("../shared/reference/tiny-llama-gqa");
        let tok = TextCodec::load_tokenizer(&dir.join("tokenizer.json")).unwrap();
        let codec = TextCodec::tokenizer(tok, "tokenizer.json", Some(1), Some(2));
        let md = gguf_vocab_metadata(&codec, 512, None).unwrap();
        let (v, back) = round_trip(&md);
        assert_eq!(v.model, "llama");
        assert_eq!(v.unk, Some(0));
        assert_eq!(v.add_bos, Some(true));
        assert_eq!(v.add_space_prefix, Some(true));
        same_ids(&codec, &back, false);
        same_ids(&codec, &back, true);
    }

    /// jielong's own byte-level BPE (GPT-2's split): the same ids through a gpt2 vocabulary.
    #[test]
    fn byte_level_bpe_round_trips() {
        let corpus = "the cat sat on the mat. the dog sat on the log! 123 456\n".repeat(20);
        let tok = crate::train_bpe(&corpus, 300).unwrap();
        let codec = TextCodec::tokenizer(tok, "tokenizer.json", None, None);
        let md = gguf_vocab_metadata(&codec, 310, None).unwrap();
        let (v, back) = round_trip(&md);
        assert_eq!(
            (v.model.as_str(), v.pre.as_deref()),
            ("gpt2", Some("gpt-2"))
        );
        assert_eq!(v.tokens.len(), 310);
        same_ids(&codec, &back, false);
    }

    /// The model fixtures carry the reference tokenizer as a llama vocabulary: the codec read
    /// from one gives the reference prompt ids.
    #[test]
    fn fixture_vocabulary_gives_the_reference_ids() {
        let file =
            GgufFile::open(root().join("tests/fixtures/gguf-models/llama-w32.q5_0.gguf")).unwrap();
        let codec = TextCodec::from_gguf(&file).unwrap();
        let reference: Json = serde_json::from_str(
            &std::fs::read_to_string(
                root().join("../shared/reference/tiny-llama-gqa/reference.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let ids: Vec<u32> = serde_json::from_value(reference["prompt_ids"].clone()).unwrap();
        assert_eq!(
            codec
                .encode_prompt(reference["prompt_text"].as_str().unwrap())
                .unwrap(),
            ids
        );
        // ... and writing it again gives the same metadata.
        let v = GgufVocab::from_file(&file).unwrap();
        let (again, _) = round_trip(&v.to_metadata());
        assert_eq!(again, v);
    }
}
