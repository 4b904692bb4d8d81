//! jielong-nn: the one burn transformer (Llama shape), its KV cache, and model folders.
//!
//! It implements [`jielong_core::Decoder`] and knows nothing of pixels, samples or characters.
//! Generation runs on [`Model`]: the CPU kernels ([`fast`]) or burn on a GPU.

pub mod config;
pub mod device;
pub mod fast;
pub mod folder;
pub mod fused;
pub mod gguf;
pub mod model;
mod model_decoder;
mod walk;
pub mod weights;

pub use burn;
pub use config::{Llama3RopeScaling, MAX_CONTEXT, TransformerConfig};
pub use device::select_device;
pub use fast::FastModel;
pub use folder::{FolderKind, ModelFolder, save_native};
pub use gguf::{GgufCheckpoint, config_from_gguf, write_gguf};
pub use model::{Dropout, KvCache, Transformer};
pub use model_decoder::{LoadOptions, Model, ModelCache};
pub use weights::{Checkpoint, RawTensor, Weights};
