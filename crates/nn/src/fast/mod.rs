//! The decode path on jielong's own CPU kernels: the same transformer as [`crate::model`], run
//! for generation without burn.
//!
//! Decoding a token is memory-bound at batch 1 (every weight is read once per step) and
//! overhead-bound for tiny models; burn's flex backend pays an allocation and a dispatch per op
//! and runs single-threaded matrix-vector products. [`FastModel`] instead holds each weight as
//! a [`jielong_kernels::MatRef`]-ready matrix in the format it is run in (f32, bf16, Q8_0, Q4_0,
//! Q4_1: borrowed from the memory-mapped checkpoint when it is stored that way, converted once
//! at load otherwise), stacks the new rows of every sequence of a ragged batch so that a step
//! reads each weight once, and reuses its buffers so that a warm step allocates nothing but the
//! logits it returns.
//!
//! - `load`: building the model from a [`crate::Checkpoint`] or a burn [`crate::Transformer`];
//! - `forward`: the forward pass and the [`jielong_core::Decoder`] impl.
//!
//! Burn's `Transformer` stays the reference (the parity tests compare the two on the same
//! weights), the training path and the wgpu path; [`crate::Model`] picks one per device.

mod forward;
mod load;

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use jielong_kernels::{Pool, WeightType};

use crate::config::TransformerConfig;
use crate::weights::Checkpoint;

pub(crate) use forward::KvSlot;
pub use forward::MAX_ROWS;
use forward::Scratch;
use load::{Layer, Mat};

/// The weight format a [`FastModel`] runs its matrices in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Weights {
    F32,
    Bf16,
    Q8_0,
    Q4_0,
    Q4_1,
    /// Each matrix as it is stored when the kernels run that format (f32, bf16, Q8_0, Q4_0,
    /// Q4_1: no conversion, no copy), f32 otherwise (f16, the K-quants). What a GGUF file or a
    /// bf16 folder is run as unless asked otherwise.
    #[default]
    Stored,
}

impl Weights {
    pub const ALL: [Weights; 6] = [
        Weights::F32,
        Weights::Bf16,
        Weights::Q8_0,
        Weights::Q4_0,
        Weights::Q4_1,
        Weights::Stored,
    ];

    /// The name used on the command line: "f32", "bf16", "q8_0", "q4_0", "q4_1", "stored".
    pub fn name(self) -> &'static str {
        match self.weight_type() {
            Some(ty) => ty.name(),
            None => "stored",
        }
    }

    /// The kernels' format asked for; `None` for [`Weights::Stored`].
    pub fn weight_type(self) -> Option<WeightType> {
        match self {
            Weights::F32 => Some(WeightType::F32),
            Weights::Bf16 => Some(WeightType::Bf16),
            Weights::Q8_0 => Some(WeightType::Q8_0),
            Weights::Q4_0 => Some(WeightType::Q4_0),
            Weights::Q4_1 => Some(WeightType::Q4_1),
            Weights::Stored => None,
        }
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Weights {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        Weights::ALL
            .into_iter()
            .find(|w| w.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown weight format {s:?}: use f32, bf16, q8_0, q4_0, q4_1 or stored"
                )
            })
    }
}

/// The transformer on the kernels: weights as kernel matrices, rotary tables for the whole
/// context, a thread [`Pool`] and reusable activation buffers. Implements
/// [`jielong_core::Decoder`] with the kernels' [`jielong_kernels::KvCache`].
pub struct FastModel {
    config: TransformerConfig,
    /// `[vocab][hidden]`; also the output layer when the embeddings are tied.
    embed: Mat,
    /// `[vocab][hidden]`: the first token's embedding added at every position
    /// (`first_token_condition`).
    condition: Option<Mat>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// `[vocab][hidden]`, `None` when tied.
    head: Option<Mat>,
    /// cos and sin of every position's rotary angles, `[context_len][head_dim / 2]`.
    cos: Vec<f32>,
    sin: Vec<f32>,
    eps: f32,
    pool: Pool,
    /// Matrices kept in f32 because their rows are not whole blocks of the format asked for.
    kept_f32: Vec<String>,
    /// Activation buffers reused by every call: `forward` takes `&self`, so one call at a time
    /// holds them (a second caller waits; a server decodes from one worker thread anyway).
    scratch: Mutex<Scratch>,
    /// The checkpoint whose memory map the borrowed matrices point into. Declared last so that
    /// it is dropped after them.
    _source: Option<Box<dyn Checkpoint + Send + Sync>>,
}

impl fmt::Debug for FastModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}
