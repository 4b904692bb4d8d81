//! Errors callers match on. Messages are neutral: they name fields as a config file or an API
//! request spells them (`top_p`), and each front end (the CLI's flags, the server's `param`)
//! words them its own way.

/// A setting outside the values that make sense, e.g. a temperature of 0.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{field} {message}")]
pub struct InvalidSetting {
    /// The setting, spelled as in a config file or request (`repetition_penalty`).
    pub field: &'static str,
    /// What is wrong, e.g. "must be in (0, 1] (got 1.5)".
    pub message: String,
}

impl InvalidSetting {
    /// An error for `field` (spelled as in a config file) with the reason `message`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Why a decoder cannot take a batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// The batch has no sequences at all.
    #[error("no sequences to feed")]
    EmptyBatch,
    /// A sequence brings no new tokens, so it would have no logits to return.
    #[error("nothing to feed: every sequence needs at least one token")]
    EmptyFeed,
    /// A fed id has no row in the model's embedding.
    #[error("token id {id} is outside the model's vocabulary of {vocab}")]
    UnknownToken {
        /// The offending token id.
        id: u32,
        /// The model's vocabulary size; valid ids are below it.
        vocab: usize,
    },
    /// The cached positions plus the new tokens exceed the context length.
    #[error("{tokens} tokens do not fit in the model's context of {context} tokens")]
    TooLong {
        /// Positions the sequence would hold after this feed.
        tokens: usize,
        /// The model's context length.
        context: usize,
    },
}

/// Why a prompt cannot be continued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// No prompt tokens: there is nothing to condition the first draw on.
    #[error("the prompt is empty: give at least one token")]
    Empty,
    /// A prompt id is outside the vocabulary.
    #[error("token id {id} is outside the vocabulary (ids 0..{vocab} are valid)")]
    UnknownToken {
        /// The offending token id.
        id: u32,
        /// The vocabulary size; valid ids are below it.
        vocab: usize,
    },
    /// The prompt (and, for a fixed-length job, what must be drawn after it) does not fit.
    #[error("the prompt needs {tokens} tokens but the model's context holds {context}")]
    TooLong {
        /// Tokens the job needs: the prompt plus any fixed number to draw.
        tokens: usize,
        /// The model's context length.
        context: usize,
    },
    /// A reused cache already covers every prompt token, so no logits can be computed for the
    /// first draw.
    #[error("the cache already holds the whole prompt: nothing new to feed")]
    NothingNew,
}
