//! The tokenizer a GGUF file carries, rebuilt as a Hugging Face [`Tokenizer`].
//!
//! A GGUF file (llama.cpp's model format) holds its vocabulary as metadata: the token texts,
//! their types and either BPE merges (`tokenizer.ggml.model = "gpt2"`, byte-level BPE) or
//! SentencePiece scores (`"llama"`), plus the special token ids, whether a prompt starts with
//! BOS, and the chat template. jielong's text codec already runs any `tokenizers::Tokenizer`
//! ([`TextCodec::Tokenizer`]), so this module turns that metadata into one, and everything
//! downstream (prompts, streaming decode, `tokenize`, export to `tokenizer.json`) stays as is.
//!
//! The goal is the token ids llama.cpp itself gives, which is what the model was run with.
//! Every choice below mirrors llama.cpp's tokenizer (`llama-vocab.cpp`, `unicode.cpp`), and
//! `tests/gguf_tokenizer.rs` checks the ids against llama.cpp's on fixtures and SmolLM2:
//!
//! * **gpt2 (byte-level BPE).** The text is split by the regexes llama.cpp uses for the file's
//!   `tokenizer.ggml.pre`, applied one after another, each splitting the pieces of the one
//!   before and keeping both what it matches and what lies between; each piece is then mapped
//!   to GPT-2's printable byte characters and merged by merge rank. Supported: `default`,
//!   `gpt-2`, `llama-bpe`, `qwen2`, `smollm` (see [`PRE_TOKENIZERS`]).
//! * **llama (SentencePiece BPE).** No normalisation and no pre-tokenizer: spaces become `▁`, a
//!   `▁` goes in front of each stretch of text (the dummy prefix, `add_space_prefix`), and two
//!   adjacent pieces merge when their concatenation is a token, highest score first. As merge
//!   ranks, that is one merge per way of splitting each token into two tokens, ordered by the
//!   token's score. Characters without a token become byte tokens `<0xNN>`.
//! * **Special tokens.** CONTROL, USER_DEFINED and UNKNOWN tokens are added tokens, cut out of
//!   the text before anything else. CONTROL and UNKNOWN ones are "special": with
//!   [`Tokenizer::set_encode_special_tokens`] on they are read as plain text, like llama.cpp's
//!   `parse_special = false`; USER_DEFINED ones are always cut out, as in llama.cpp.
//! * **Prompts.** The post-processor adds BOS and/or EOS as `add_bos`/`add_eos` say, with
//!   llama.cpp's defaults when the file is silent (BOS for `llama` and `llama-bpe`).
//!
//! Known differences (none is hit by the fixtures or SmolLM2): llama.cpp finds special tokens
//! longest first over the whole text, `tokenizers` leftmost-longest; for two equal SentencePiece
//! scores competing for the same character, llama.cpp merges the leftmost pair and this module
//! the one whose token comes first in the vocabulary; decoding does not apply llama.cpp's
//! `clean_spaces` (dropping the space before `.,!?` for `default`, `gpt-2` and `llama-bpe`),
//! which would make decoding lossy.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail, ensure};
use jielong_gguf::GgufFile;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
    Tokenizer,
};

use crate::{ChatTemplate, TextCodec};

/// The tokenizer metadata of a GGUF file: `tokenizer.ggml.*` and `tokenizer.chat_template`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `"gpt2"` (byte-level BPE) or `"llama"` (SentencePiece BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`: how a gpt2 vocabulary splits text before merging.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: token texts, by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores`: SentencePiece merge priorities (higher merges first).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type`: see [`TokenType`].
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`: `"left right"`, highest priority first (gpt2 only).
    pub merges: Option<Vec<String>>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// `tokenizer.ggml.eot_token_id`: end of a turn, where a model has one besides EOS.
    pub eot: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    /// Whether a prompt starts with BOS (`tokenizer.ggml.add_bos_token`).
    pub add_bos: Option<bool>,
    /// Whether a prompt ends with EOS (`tokenizer.ggml.add_eos_token`).
    pub add_eos: Option<bool>,
    /// SentencePiece's dummy prefix (`tokenizer.ggml.add_space_prefix`, default true).
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.chat_template`: a Jinja template, as in `tokenizer_config.json`.
    pub chat_template: Option<String>,
}

/// llama.cpp's token types, the values of `tokenizer.ggml.token_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum TokenType {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

impl TokenType {
    /// The type a stored value stands for; llama.cpp reads unknown values as undefined.
    pub fn from_i32(value: i32) -> Self {
        match value {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Undefined,
        }
    }
}

/// The `tokenizer.ggml.pre` values jielong supports, as named in the error for any other.
pub const PRE_TOKENIZERS: &str = "default, gpt2, llama-bpe, qwen2, smollm";

// The regexes llama.cpp splits text with, per pre-tokenizer (`llm_tokenizer_bpe` in
// llama-vocab.cpp). GPT-2's own pattern (with its final `\s+`, which llama.cpp's hand-written
// matcher for it also has).
const GPT2_SPLIT: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
// Llama 3's pattern, with the case-insensitive contractions spelled out as llama.cpp does: a
// `(?i:...)` group would also match look-alikes such as the long s 'ſ' under Unicode case folding.
const LLAMA3_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
// Qwen2: Llama 3's pattern with single digits.
const QWEN2_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a byte-level BPE vocabulary cuts text before merging, per `tokenizer.ggml.pre`.
struct PreTokenization {
    /// Applied in order, each to the pieces the previous one made.
    regexes: &'static [&'static str],
    /// A piece that is a token as a whole is taken as is, without merging (Llama 3).
    ignore_merges: bool,
    /// llama.cpp's default for `add_bos_token` when the file does not say.
    add_bos: bool,
}

fn pre_tokenization(pre: Option<&str>) -> Result<PreTokenization> {
    let plain = |regexes| PreTokenization {
        regexes,
        ignore_merges: false,
        add_bos: false,
    };
    // A file without `pre` gets llama.cpp's default (it warns that quality may suffer).
    Ok(match pre.unwrap_or("default") {
        // Punctuation runs, then GPT-2's pattern, then number runs, then groups of three ASCII
        // digits.
        "default" => plain(&[
            r"[\p{P}\$\+<=>\^~\|]+",
            GPT2_SPLIT,
            r"\p{N}+",
            r"[0-9][0-9][0-9]",
        ]),
        "gpt-2" | "gpt2" => plain(&[GPT2_SPLIT]),
        "llama-bpe" | "llama3" | "llama-v3" => PreTokenization {
            regexes: &[LLAMA3_SPLIT],
            ignore_merges: true,
            add_bos: true,
        },
        "qwen2" => plain(&[QWEN2_SPLIT]),
        // SmolLM (StarCoder's scheme): every digit alone, then GPT-2's pattern.
        "smollm" => plain(&[r"\p{N}", GPT2_SPLIT]),
        other => bail!(
            "the GGUF tokenizer pre-processing '{other}' is not supported: jielong knows {PRE_TOKENIZERS}"
        ),
    })
}

impl GgufVocab {
    /// Reads the tokenizer metadata of an open GGUF file.
    pub fn from_file(file: &GgufFile) -> Result<Self> {
        let strings = |key: &str| -> Result<Option<Vec<String>>> {
            Ok(file
                .opt_array_str(key)?
                .map(|v| v.into_iter().map(str::to_string).collect()))
        };
        Ok(Self {
            model: file.get_str("tokenizer.ggml.model")?.to_string(),
            pre: file.opt_str("tokenizer.ggml.pre")?.map(str::to_string),
            tokens: strings("tokenizer.ggml.tokens")?
                .context("the GGUF file has no vocabulary (tokenizer.ggml.tokens)")?,
            scores: file.opt_array_f32("tokenizer.ggml.scores")?,
            token_types: file.opt_array_i32("tokenizer.ggml.token_type")?,
            merges: strings("tokenizer.ggml.merges")?,
            bos: file.opt_u32("tokenizer.ggml.bos_token_id")?,
            eos: file.opt_u32("tokenizer.ggml.eos_token_id")?,
            eot: file.opt_u32("tokenizer.ggml.eot_token_id")?,
            unk: file.opt_u32("tokenizer.ggml.unknown_token_id")?,
            pad: file.opt_u32("tokenizer.ggml.padding_token_id")?,
            add_bos: file.opt_bool("tokenizer.ggml.add_bos_token")?,
            add_eos: file.opt_bool("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: file.opt_bool("tokenizer.ggml.add_space_prefix")?,
            chat_template: file.opt_str("tokenizer.chat_template")?.map(str::to_string),
        })
    }

    /// Opens a GGUF file and reads its tokenizer metadata.
    pub fn open(path: &Path) -> Result<Self> {
        GgufFile::open(path)
            .map_err(anyhow::Error::from)
            .and_then(|file| Self::from_file(&file))
            .with_context(|| path.display().to_string())
    }

    /// The vocabulary as a Hugging Face tokenizer: see [`tokenizer_from_gguf`].
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        tokenizer_from_gguf(self)
    }

    /// The BOS id: the file's, or llama.cpp's default for a SentencePiece vocabulary (1).
    pub fn bos_id(&self) -> Option<u32> {
        self.bos.or(self.default_id(1))
    }

    /// The EOS id: the file's, or llama.cpp's default for a SentencePiece vocabulary (2).
    pub fn eos_id(&self) -> Option<u32> {
        self.eos.or(self.default_id(2))
    }

    /// The unknown token's id: the file's, or llama.cpp's SentencePiece default (0).
    pub fn unk_id(&self) -> Option<u32> {
        self.unk.or(self.default_id(0))
    }

    // llama.cpp assumes Llama 2's layout (<unk>, <s>, </s>) for SentencePiece vocabularies that
    // do not name their special tokens. (Its gpt2 default, id 11 for both, is not carried over:
    // it fits no modern vocabulary.) A token typed as plain text (or a byte) at that id is
    // content, as in a character vocabulary exported without specials, not a stand-in BOS.
    fn default_id(&self, id: u32) -> Option<u32> {
        let content = self.token_types.as_ref().is_some_and(|t| {
            t.get(id as usize)
                .is_some_and(|ty| [TokenType::Normal as i32, TokenType::Byte as i32].contains(ty))
        });
        (self.model == "llama" && (id as usize) < self.tokens.len() && !content).then_some(id)
    }

    /// The text of a token, if the id exists.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The chat template, with the texts of BOS and EOS for the template's `bos_token` and
    /// `eos_token`; `None` when the file has none.
    pub fn chat_template(&self) -> Result<Option<ChatTemplate>> {
        let Some(source) = &self.chat_template else {
            return Ok(None);
        };
        let text = |id: Option<u32>| id.and_then(|i| self.token_text(i)).unwrap_or_default();
        ChatTemplate::from_source(source, text(self.bos_id()), text(self.eos_id()))
            .context("the GGUF file's chat template (tokenizer.chat_template)")
            .map(Some)
    }
}

/// Builds the tokenizer a GGUF vocabulary describes, giving llama.cpp's token ids.
///
/// `encode(text, false)` is llama.cpp's `llama_tokenize(text, add_special = false,
/// parse_special = true)`; `encode(text, true)` adds BOS/EOS as the file says a prompt should
/// have them. Errors name what is wrong: an unknown model or pre-tokenizer, arrays whose
/// lengths differ from the token list's, a gpt2 vocabulary without merges or with merges that do
/// not fit its tokens, special ids out of range, duplicate tokens.
pub fn tokenizer_from_gguf(v: &GgufVocab) -> Result<Tokenizer> {
    let texts = token_texts(v)?;
    let types = token_types(v, &texts);
    check_special_ids(v)?;
    let (mut tokenizer, add_bos_default) = match v.model.as_str() {
        "gpt2" => {
            let pre = pre_tokenization(v.pre.as_deref())?;
            (byte_level_bpe(v, &texts, &pre)?, pre.add_bos)
        }
        "llama" => (sentencepiece_bpe(v, &texts)?, true),
        other => bail!(
            "the GGUF tokenizer model '{other}' is not supported: jielong knows gpt2 \
             (byte-level BPE) and llama (SentencePiece BPE)"
        ),
    };
    add_special_tokens(&mut tokenizer, &texts, &types)?;
    let add_bos = v.add_bos.unwrap_or(add_bos_default);
    let add_eos = v.add_eos.unwrap_or(false);
    let post = prompt_template(v, &texts, add_bos, add_eos)?;
    tokenizer.with_post_processor(post);
    Ok(tokenizer)
}

/// Token ids as llama.cpp's `llama_tokenize(text, add_special = false, parse_special)` gives
/// them — what `jielong tokenize --tokenizer FILE.gguf` prints: no BOS, and, with
/// `parse_special`, special tokens written in the text (`<|im_start|>`) read as those tokens.
/// Without it they are read as plain text (this clones the tokenizer once per call).
pub fn encode_like_llama_cpp(
    tokenizer: &Tokenizer,
    text: &str,
    parse_special: bool,
) -> Result<Vec<u32>> {
    let encode = |t: &Tokenizer| {
        t.encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| anyhow!("cannot tokenize: {e}"))
    };
    // `tokenizers` calls reading special tokens as plain text "encoding" them.
    let as_text = !parse_special;
    if tokenizer.get_encode_special_tokens() == as_text {
        encode(tokenizer)
    } else {
        let mut t = tokenizer.clone();
        t.set_encode_special_tokens(as_text);
        encode(&t)
    }
}

impl TextCodec {
    /// The text codec of a GGUF file: its tokenizer, with BOS and EOS ids (EOS, or the
    /// end-of-turn token when there is no EOS, ends generation).
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        Self::from_gguf_vocab(&GgufVocab::from_file(file)?)
    }

    /// As [`from_gguf`](Self::from_gguf), from metadata already read.
    pub fn from_gguf_vocab(v: &GgufVocab) -> Result<Self> {
        let tokenizer = tokenizer_from_gguf(v)?;
        // Saved as tokenizer.json when a model converted from GGUF is written as a folder.
        Ok(Self::tokenizer(
            tokenizer,
            "tokenizer.json",
            v.bos_id(),
            v.eos_id().or(v.eot),
        ))
    }
}

/// The token texts, checked: the arrays beside them have the same length, no text appears
/// twice. Empty texts get llama.cpp's stand-in `[EMPTY_<id>]` (a vocabulary cannot map "").
fn token_texts(v: &GgufVocab) -> Result<Vec<String>> {
    let n = v.tokens.len();
    ensure!(
        n > 0,
        "the GGUF vocabulary is empty (tokenizer.ggml.tokens)"
    );
    ensure!(
        u32::try_from(n).is_ok(),
        "the GGUF vocabulary has {n} tokens, more than token ids can number"
    );
    let same_length = |what: &str, len: Option<usize>| match len {
        Some(len) if len != n => bail!(
            "the GGUF vocabulary has {n} tokens (tokenizer.ggml.tokens) but {len} {what}: the two \
             arrays must have the same length"
        ),
        _ => Ok(()),
    };
    same_length(
        "scores (tokenizer.ggml.scores)",
        v.scores.as_ref().map(Vec::len),
    )?;
    same_length(
        "token types (tokenizer.ggml.token_type)",
        v.token_types.as_ref().map(Vec::len),
    )?;

    let texts: Vec<String> = v
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                t.clone()
            }
        })
        .collect();
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(n);
    for (i, t) in texts.iter().enumerate() {
        if let Some(first) = seen.insert(t, i) {
            bail!("the GGUF vocabulary has the token {t:?} twice (ids {first} and {i})");
        }
    }
    Ok(texts)
}

// Texts llama.cpp treats as control tokens whatever their stored type (end-of-turn,
// end-of-generation and fill-in-the-middle markers), because converters have typed some of them
// as normal text.
const CONTROL_BY_TEXT: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|calls|>",
    "<|flush|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "</s>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<eos>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<reponame>",
    "<|file_sep|>",
];

/// Each token's type: the stored one (normal when the file has none), with the control-looking
/// texts above raised to control as llama.cpp does.
fn token_types(v: &GgufVocab, texts: &[String]) -> Vec<TokenType> {
    let stored = |i: usize| {
        v.token_types
            .as_ref()
            .map_or(TokenType::Normal, |t| TokenType::from_i32(t[i]))
    };
    (0..texts.len())
        .map(|i| match stored(i) {
            TokenType::Normal
            | TokenType::Undefined
            | TokenType::Unused
            | TokenType::UserDefined
                if CONTROL_BY_TEXT.contains(&texts[i].as_str()) =>
            {
                TokenType::Control
            }
            ty => ty,
        })
        .collect()
}

fn check_special_ids(v: &GgufVocab) -> Result<()> {
    let n = v.tokens.len();
    for (key, id) in [
        ("bos_token_id", v.bos),
        ("eos_token_id", v.eos),
        ("eot_token_id", v.eot),
        ("unknown_token_id", v.unk),
        ("padding_token_id", v.pad),
    ] {
        if let Some(id) = id {
            ensure!(
                (id as usize) < n,
                "tokenizer.ggml.{key} is {id}, but the vocabulary has only {n} tokens"
            );
        }
    }
    Ok(())
}

/// The token ids by text, as `tokenizers`' BPE wants them.
fn vocab_map(texts: &[String]) -> Vocab {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect()
}

/// A gpt2 vocabulary: byte-level BPE over the file's merges, after the pre-tokenizer's splits.
fn byte_level_bpe(v: &GgufVocab, texts: &[String], pre: &PreTokenization) -> Result<Tokenizer> {
    let merges = v.merges.as_ref().context(
        "the GGUF vocabulary is byte-level BPE (tokenizer.ggml.model = gpt2) but has no merges \
         (tokenizer.ggml.merges)",
    )?;
    let vocab = vocab_map(texts);
    let pairs = parse_merges(merges, &vocab)?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, pairs)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|e| anyhow!("cannot build the BPE model: {e}"))?;

    let mut steps = Vec::with_capacity(pre.regexes.len() + 1);
    for regex in pre.regexes {
        // Isolated: both the matches and the text between them become pieces, as in llama.cpp.
        let split = Split::new(
            SplitPattern::Regex(regex.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| anyhow!("cannot compile the pre-tokenizer regex {regex:?}: {e}"))?;
        steps.push(PreTokenizerWrapper::Split(split));
    }
    // The splitting is done; ByteLevel only maps bytes to GPT-2's characters, adding no space.
    let bytes = ByteLevel::default()
        .add_prefix_space(false)
        .use_regex(false);
    steps.push(PreTokenizerWrapper::ByteLevel(bytes));

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer
        .with_pre_tokenizer(Some(PreTokenizerSequence::new(steps)))
        .with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
    Ok(tokenizer)
}

/// `"left right"` merge lines as pairs, split at the first space after the first byte as
/// llama.cpp does; each part and their concatenation must be tokens.
fn parse_merges(merges: &[String], vocab: &Vocab) -> Result<Vec<(String, String)>> {
    merges
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let cut = line
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(at, _)| at)
                .with_context(|| {
                    format!("GGUF merge #{i} {line:?} is not two tokens separated by a space")
                })?;
            let (left, right) = (&line[..cut], &line[cut + 1..]);
            for part in [left, right, &format!("{left}{right}")] {
                ensure!(
                    vocab.contains_key(part),
                    "GGUF merge #{i} {line:?} does not fit the vocabulary: {part:?} is not a token"
                );
            }
            Ok((left.to_string(), right.to_string()))
        })
        .collect()
}

/// A llama vocabulary: SentencePiece BPE, with merge ranks derived from the scores.
fn sentencepiece_bpe(v: &GgufVocab, texts: &[String]) -> Result<Tokenizer> {
    let scores = v.scores.as_ref().context(
        "the GGUF vocabulary is SentencePiece BPE (tokenizer.ggml.model = llama) but has no \
         scores (tokenizer.ggml.scores), which give its merge order",
    )?;
    let vocab = vocab_map(texts);
    let merges = merges_from_scores(texts, scores, &vocab);
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true);
    if let Some(unk) = v.unk_id() {
        builder = builder.unk_token(texts[unk as usize].clone());
    }
    let bpe = builder
        .build()
        .map_err(|e| anyhow!("cannot build the BPE model: {e}"))?;

    // llama.cpp puts a space before every stretch of text (the first, and each after a special
    // token) and writes spaces as '▁'; nothing else is normalised.
    let prefix = v.add_space_prefix.unwrap_or(true);
    let mut normalizers = Vec::new();
    if prefix {
        normalizers.push(NormalizerWrapper::Prepend(Prepend::new("▁".into())));
    }
    normalizers.push(NormalizerWrapper::Replace(
        Replace::new(" ", "▁").map_err(|e| anyhow!("{e}"))?,
    ));
    let mut decoders = vec![
        DecoderWrapper::Replace(Replace::new("▁", " ").map_err(|e| anyhow!("{e}"))?),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    if prefix {
        // The dummy prefix is not part of the text: drop it again when decoding.
        decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
    }

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer
        .with_normalizer(Some(NormalizerSequence::new(normalizers)))
        .map_err(|e| anyhow!("{e}"))?
        .with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// SentencePiece BPE as merge ranks: two adjacent pieces merge when their concatenation is a
/// token, the token with the highest score first. So every split of a token into two tokens is
/// a merge, ranked by the token's score (ties by id).
fn merges_from_scores(texts: &[String], scores: &[f32], vocab: &Vocab) -> Vec<(String, String)> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut merges = Vec::new();
    for i in order {
        let text = &texts[i];
        for (cut, _) in text.char_indices().skip(1) {
            let (left, right) = text.split_at(cut);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                merges.push((left.to_string(), right.to_string()));
            }
        }
    }
    merges
}

/// Control, unknown and user-defined tokens are cut out of text before anything else; the
/// first two are "special" (read as text when special-token parsing is off), user-defined ones
/// never are, as in llama.cpp. All match the raw text (not normalised), as llama.cpp does.
fn add_special_tokens(
    tokenizer: &mut Tokenizer,
    texts: &[String],
    types: &[TokenType],
) -> Result<()> {
    let token = |i: usize, special: bool| {
        AddedToken::from(texts[i].clone(), special)
            .normalized(false)
            .single_word(false)
            .lstrip(false)
            .rstrip(false)
    };
    let (mut special, mut user) = (Vec::new(), Vec::new());
    for (i, ty) in types.iter().enumerate() {
        match ty {
            TokenType::Control | TokenType::Unknown => special.push(token(i, true)),
            TokenType::UserDefined => user.push(token(i, false)),
            _ => {}
        }
    }
    let fail = |e| anyhow!("cannot add the special tokens: {e}");
    tokenizer.add_special_tokens(special).map_err(fail)?;
    tokenizer.add_tokens(user).map_err(fail)?;
    Ok(())
}

/// The post-processor that puts BOS before and EOS after a prompt, as the file asks.
fn prompt_template(
    v: &GgufVocab,
    texts: &[String],
    add_bos: bool,
    add_eos: bool,
) -> Result<Option<TemplateProcessing>> {
    if !add_bos && !add_eos {
        return Ok(None);
    }
    let mut specials = Vec::new();
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut name = |key: &str, id: Option<u32>, what: &str| -> Result<()> {
        let id = id.with_context(|| {
            format!(
                "the GGUF file says a prompt gets {what} (tokenizer.ggml.add_{}_token) but names \
                 no {what} token",
                key
            )
        })?;
        specials.push(
            SpecialToken::new(key.to_string(), vec![id], vec![texts[id as usize].clone()])
                .map_err(|e| anyhow!("{e}"))?,
        );
        Ok(())
    };
    // Template pieces refer to special tokens by these names, not by their texts, which may
    // hold spaces.
    if add_bos {
        name("bos", v.bos_id(), "BOS")?;
    }
    if add_eos {
        name("eos", v.eos_id(), "EOS")?;
    }
    for (sequence, type_id) in [("$A", 0), ("$B", 1)] {
        let target = if type_id == 0 { &mut single } else { &mut pair };
        if add_bos {
            target.push(format!("bos:{type_id}"));
        }
        target.push(format!("{sequence}:{type_id}"));
        if add_eos {
            target.push(format!("eos:{type_id}"));
        }
    }
    let pair = [single.clone(), pair].concat();
    TemplateProcessing::builder()
        .try_single(single.join(" "))
        .map_err(|e| anyhow!("{e}"))?
        .try_pair(pair.join(" "))
        .map_err(|e| anyhow!("{e}"))?
        .special_tokens(specials)
        .build()
        .map(Some)
        .map_err(|e| anyhow!("cannot build the prompt template: {e}"))
}
