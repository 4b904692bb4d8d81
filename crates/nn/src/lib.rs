//! jielong-nn: the one burn transformer (Llama shape), its KV cache, and model folders.
//!
//! It implements [`jielong_core::Decoder`] and knows nothing of pixels, samples or characters.

pub mod config;
pub mod device;
pub mod folder;
pub mod model;
pub mod weights;

pub use burn;
pub use config::{Llama3RopeScaling, TransformerConfig};
pub use device::select_device;
pub use folder::{FolderKind, ModelFolder, save_native};
pub use model::{KvCache, Transformer};
pub use weights::Weights;
