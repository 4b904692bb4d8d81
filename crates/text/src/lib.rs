//! jielong-text: text codecs (bytes, characters, BPE through Hugging Face `tokenizers`, GGUF
//! vocabularies), the corpus reader, and the text recipes: [`complete`] a prompt, and
//! [`Conversation::turn`] for a chat through a model's template.

mod bpe;
mod chat;
mod codec;
mod complete;
mod conversation;
mod dataset;
mod gguf;
mod gguf_export;
mod stream;

pub use bpe::train_bpe;
pub use chat::{ChatTemplate, Message};
pub use codec::TextCodec;
pub use complete::{
    Completion, CompletionJob, CompletionRequest, TextEvent, TextModel, TextPrompt, TextToken,
    complete,
};
pub use conversation::{ChatStyle, Conversation, Reply, ReplySettings};
pub use dataset::{TextCorpus, read_text};
pub use gguf::{GgufVocab, PRE_TOKENIZERS, TokenType, encode_like_llama_cpp, tokenizer_from_gguf};
pub use gguf_export::{gguf_vocab, gguf_vocab_metadata};
pub use stream::{TextStream, find_stop};
pub use tokenizers::Tokenizer;

/// A training text as one long token sequence (no prefix).
pub fn to_sequences(codec: &TextCodec, text: &str) -> anyhow::Result<jielong_core::Sequences> {
    Ok(jielong_core::Sequences {
        seqs: vec![codec.encode_text(text)?],
        ..Default::default()
    })
}
