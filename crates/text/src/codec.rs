//! Text codecs: bytes, characters (vocabulary from a corpus) and BPE through Hugging Face
//! `tokenizers` (trained here, or any `tokenizer.json`).

use std::path::Path;

use anyhow::{Context, Result, bail};
use jielong_core::{Codec, FolderCodec, Specials, Vocab};
use serde_json::{Value, json};
use tokenizers::Tokenizer;

/// How text becomes token ids.
#[derive(Clone, Debug)]
pub enum TextCodec {
    /// UTF-8 bytes: 256 tokens, any text.
    Bytes { vocab: Vocab },
    /// One token per character of a fixed alphabet (sorted).
    Chars { vocab: Vocab, chars: Vec<char> },
    /// A Hugging Face tokenizer (BPE, SentencePiece...); `file` names it in the model folder.
    Tokenizer {
        vocab: Vocab,
        tokenizer: Box<Tokenizer>,
        file: String,
    },
}

impl TextCodec {
    pub fn bytes() -> Self {
        TextCodec::Bytes {
            vocab: Vocab::new(256, Specials::default()),
        }
    }

    /// A character codec whose alphabet is every character of `corpus`.
    pub fn chars_of(corpus: &str) -> Result<Self> {
        let mut chars: Vec<char> = corpus
            .chars()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        chars.sort_unstable();
        if chars.is_empty() {
            bail!("cannot build a character vocabulary from empty text");
        }
        Ok(TextCodec::Chars {
            vocab: Vocab::new(chars.len(), Specials::default()),
            chars,
        })
    }

    /// Wraps a loaded tokenizer. Its special tokens are part of its own vocabulary, so the
    /// vocabulary's BOS/END are looked up by the given ids (from the model's config).
    pub fn tokenizer(tokenizer: Tokenizer, file: &str, bos: Option<u32>, end: Option<u32>) -> Self {
        let size = tokenizer.get_vocab_size(true);
        let vocab = Vocab {
            content_size: size,
            bos,
            end,
            ..Vocab::new(size, Specials::default())
        };
        TextCodec::Tokenizer {
            vocab,
            tokenizer: Box::new(tokenizer),
            file: file.to_string(),
        }
    }

    /// Loads a `tokenizer.json` file.
    pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
        Tokenizer::from_file(path)
            .map_err(|e| anyhow::anyhow!("cannot load tokenizer {}: {e}", path.display()))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            TextCodec::Bytes { .. } => "bytes",
            TextCodec::Chars { .. } => "chars",
            TextCodec::Tokenizer { .. } => "tokenizer",
        }
    }

    /// The codec as a Hugging Face tokenizer with the same ids, for exporting a model: a
    /// character model becomes a BPE without merges over its alphabet, a byte model a byte-level
    /// BPE without merges; both decode by concatenation.
    pub fn to_hf_tokenizer(&self) -> Result<Tokenizer> {
        let json = match self {
            TextCodec::Tokenizer { tokenizer, .. } => return Ok((**tokenizer).clone()),
            TextCodec::Chars { chars, .. } => {
                let vocab: serde_json::Map<String, Value> = chars
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.to_string(), json!(i)))
                    .collect();
                json!({
                    "version": "1.0",
                    "model": { "type": "BPE", "vocab": vocab, "merges": [] },
                    "decoder": { "type": "Fuse" },
                })
            }
            TextCodec::Bytes { .. } => {
                // Byte-level BPE names byte b by a printable character; its alphabet is exactly
                // the 256 of them, in the order of the bytes.
                let mut vocab = serde_json::Map::new();
                for (b, c) in byte_level_chars().into_iter().enumerate() {
                    vocab.insert(c.to_string(), json!(b));
                }
                let byte_level = json!({ "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false });
                json!({
                    "version": "1.0",
                    "pre_tokenizer": byte_level,
                    "model": { "type": "BPE", "vocab": vocab, "merges": [] },
                    "decoder": byte_level,
                })
            }
        };
        json.to_string()
            .parse::<Tokenizer>()
            .map_err(|e| anyhow::anyhow!("cannot build the tokenizer: {e}"))
    }

    /// Encodes text, refusing what the vocabulary cannot express.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            TextCodec::Bytes { .. } => Ok(text.bytes().map(u32::from).collect()),
            TextCodec::Chars { chars, .. } => text
                .chars()
                .map(|c| match chars.binary_search(&c) {
                    Ok(i) => Ok(i as u32),
                    Err(_) => bail!(
                        "the character {c:?} is not in this model's vocabulary of {} characters",
                        chars.len()
                    ),
                })
                .collect(),
            TextCodec::Tokenizer { tokenizer, .. } => {
                let enc = tokenizer
                    .encode(text, false)
                    .map_err(|e| anyhow::anyhow!("cannot tokenize: {e}"))?;
                check_covered(text, enc.get_offsets())?;
                Ok(enc.get_ids().to_vec())
            }
        }
    }

    /// Encodes a generation prompt: as [`encode_text`](Self::encode_text), plus whatever the
    /// tokenizer's post-processor adds for a prompt (a Llama tokenizer's BOS).
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            TextCodec::Tokenizer { tokenizer, .. } => {
                let enc = tokenizer
                    .encode(text, true)
                    .map_err(|e| anyhow::anyhow!("cannot tokenize: {e}"))?;
                check_covered(text, enc.get_offsets())?;
                Ok(enc.get_ids().to_vec())
            }
            _ => self.encode_text(text),
        }
    }

    /// Whether `id` is a SentencePiece byte-fallback token such as `<0xE6>`.
    pub fn is_byte_token(&self, id: u32) -> bool {
        match self {
            TextCodec::Tokenizer { tokenizer, .. } => tokenizer.id_to_token(id).is_some_and(|t| {
                t.len() == 6
                    && t.starts_with("<0x")
                    && t.ends_with('>')
                    && u8::from_str_radix(&t[3..5], 16).is_ok()
            }),
            _ => false,
        }
    }

    /// Decodes ids; bytes that are not valid UTF-8 become U+FFFD.
    pub fn decode_text(&self, ids: &[u32]) -> Result<String> {
        self.vocab().check_ids(ids)?;
        match self {
            TextCodec::Bytes { .. } => {
                let bytes: Vec<u8> = ids.iter().map(|&i| i as u8).collect();
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            TextCodec::Chars { chars, .. } => Ok(ids.iter().map(|&i| chars[i as usize]).collect()),
            TextCodec::Tokenizer { tokenizer, .. } => tokenizer
                .decode(ids, false)
                .map_err(|e| anyhow::anyhow!("cannot decode: {e}")),
        }
    }
}

/// A tokenizer without an unknown token or byte fallback silently drops characters it cannot
/// express; this finds them (any non-space character no token's span covers) and says so.
fn check_covered(text: &str, offsets: &[(usize, usize)]) -> Result<()> {
    let mut covered = vec![false; text.len()];
    for &(a, b) in offsets {
        covered[a.min(text.len())..b.min(text.len())]
            .iter_mut()
            .for_each(|c| *c = true);
    }
    match text
        .char_indices()
        .find(|&(i, c)| !c.is_whitespace() && !covered[i])
    {
        Some((_, c)) => bail!("the character {c:?} is not in this tokenizer's vocabulary"),
        None => Ok(()),
    }
}

/// GPT-2's printable stand-ins for the 256 byte values, in byte order.
fn byte_level_chars() -> Vec<char> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).expect("a valid code point")
            } else {
                extra += 1;
                char::from_u32(255 + extra).expect("a valid code point")
            }
        })
        .collect()
}

impl FolderCodec for TextCodec {
    /// The codec section of a model folder's `config.json`.
    fn to_json(&self) -> Value {
        match self {
            TextCodec::Bytes { .. } => json!({ "kind": "bytes" }),
            TextCodec::Chars { chars, .. } => {
                json!({ "kind": "chars", "chars": chars.iter().collect::<String>() })
            }
            TextCodec::Tokenizer { file, vocab, .. } => {
                json!({ "kind": "tokenizer", "file": file, "bos": vocab.bos, "end": vocab.end })
            }
        }
    }

    /// Writes side files (the tokenizer) into a model folder.
    fn save_files(&self, dir: &Path) -> Result<()> {
        if let TextCodec::Tokenizer {
            tokenizer, file, ..
        } = self
        {
            let text = tokenizer
                .to_string(true)
                .map_err(|e| anyhow::anyhow!("cannot serialise the tokenizer: {e}"))?;
            jielong_core::write_atomic(&dir.join(file), text.as_bytes())?;
        }
        Ok(())
    }

    /// Reads a codec section (`dir` holds its side files).
    fn from_json(section: &Value, dir: &Path) -> Result<Self> {
        match section["kind"].as_str() {
            Some("bytes") => Ok(Self::bytes()),
            Some("chars") => {
                let chars = section["chars"]
                    .as_str()
                    .context("codec section: chars codec without \"chars\"")?;
                let codec = Self::chars_of(chars)?;
                if codec.vocab().size() != chars.chars().count() {
                    bail!("codec section: the character list has duplicates");
                }
                Ok(codec)
            }
            Some("tokenizer") => {
                let file = section["file"].as_str().unwrap_or("tokenizer.json");
                let id = |k: &str| section[k].as_u64().map(|v| v as u32);
                Ok(Self::tokenizer(
                    Self::load_tokenizer(&dir.join(file))?,
                    file,
                    id("bos"),
                    id("end"),
                ))
            }
            other => {
                bail!("codec section: unknown text codec {other:?} (bytes, chars or tokenizer)")
            }
        }
    }
}

impl Codec for TextCodec {
    type Content = String;

    fn vocab(&self) -> &Vocab {
        match self {
            TextCodec::Bytes { vocab }
            | TextCodec::Chars { vocab, .. }
            | TextCodec::Tokenizer { vocab, .. } => vocab,
        }
    }

    fn encode(&self, content: &String) -> Result<Vec<u32>> {
        self.encode_text(content)
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_text(ids)
    }

    fn token_label(&self, id: u32) -> String {
        if let Some(special) = self.vocab().special_label(id) {
            return special;
        }
        let text = match self {
            TextCodec::Bytes { .. } if id >= 128 => return format!("0x{id:02x}"),
            TextCodec::Tokenizer { tokenizer, .. } => match tokenizer.id_to_token(id) {
                // Byte-level BPE shows spaces as 'Ġ' and newlines as 'Ċ'; SentencePiece as '▁'.
                Some(t) => t.replace(['Ġ', '▁'], " ").replace('Ċ', "\n"),
                None => return format!("#{id}"),
            },
            _ => self.decode_text(&[id]).unwrap_or_else(|_| format!("#{id}")),
        };
        format!("{:?}", text)
    }
}
