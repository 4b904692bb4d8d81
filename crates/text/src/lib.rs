//! jielong-text: text codecs (bytes, characters, BPE through Hugging Face `tokenizers`), the
//! corpus reader and streaming helpers.

mod bpe;
mod chat;
mod codec;
mod dataset;
mod stream;

pub use bpe::train_bpe;
pub use chat::{ChatTemplate, Message};
pub use codec::TextCodec;
pub use dataset::{TextCorpus, read_text};
pub use stream::{TextStream, find_stop};
pub use tokenizers::Tokenizer;

/// A training text as one long token sequence (no prefix).
pub fn to_sequences(codec: &TextCodec, text: &str) -> anyhow::Result<jielong_core::Sequences> {
    Ok(jielong_core::Sequences {
        seqs: vec![codec.encode_text(text)?],
        ..Default::default()
    })
}
