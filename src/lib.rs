//! jielong (接龍, "word chain"): autoregressive token generation for text, images and audio
//! with one transformer and one sampling loop. This facade re-exports the workspace crates.

pub use jielong_audio as audio;
pub use jielong_core as core;
pub use jielong_image as image;
pub use jielong_nn as nn;
pub use jielong_text as text;
pub use jielong_train as train;
