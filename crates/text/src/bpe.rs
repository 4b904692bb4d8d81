//! Training a byte-level BPE tokenizer on a corpus with Hugging Face `tokenizers`.

use std::collections::HashSet;

use anyhow::{Result, bail};
use tokenizers::Tokenizer;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

/// A byte-level BPE with `vocab_size` tokens learnt from `corpus`. Every byte is in the initial
/// alphabet, so any text encodes; no prefix space is added, so decoding round-trips exactly.
pub fn train_bpe(corpus: &str, vocab_size: usize) -> Result<Tokenizer> {
    if vocab_size < 256 {
        bail!("a byte-level BPE needs at least 256 tokens (got {vocab_size})");
    }
    let byte_level = ByteLevel::default().add_prefix_space(false);
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(byte_level));
    tokenizer.with_decoder(Some(byte_level));
    let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .initial_alphabet(alphabet)
        .show_progress(false)
        .build()
        .into();
    // Train on lines so that merges never cross a line break.
    tokenizer
        .train(&mut trainer, corpus.split_inclusive('\n'))
        .map_err(|e| anyhow::anyhow!("BPE training failed: {e}"))?;
    Ok(tokenizer)
}
