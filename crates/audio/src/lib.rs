//! jielong-audio: short audio generated one 8-bit sample at a time (the WaveNet idea) by the
//! same transformer and sampling loop as text and images.
//!
//! - [`codec`]: samples <-> tokens (one per sample: mu-law or linear, 256 levels; or one per
//!   frame of a [`frames`] codebook), the vocabulary, config.json.
//! - [`frames`]: the frame codebook (k-means over log-magnitude spectra) and Griffin-Lim.
//! - [`wav`]: any WAV in (mono, resampled to the model's rate), 16-bit WAV out.
//! - [`datasets`]: folders, archives and manifests of clips with labels, the held-out digits,
//!   and the token sequences the trainer reads.
//! - [`prompt`]: a recording's first seconds as a prompt, the real-time factor.
//! - [`analysis`]: spectral flatness and energy (speech vs silence vs noise), unigram entropy.
//! - [`classify`]: a spoken-digit classifier (mel cepstra, dynamic time warping, nearest
//!   reference clip), to check that generated clips say the class asked for.
//! - [`plot`](mod@plot): waveform and spectrogram pictures.
//!
//! This crate knows no tensors: it depends on jielong-core only.

pub mod analysis;
pub mod classify;
pub mod codec;
pub mod datasets;
pub mod draw;
pub mod frames;
pub mod plot;
pub mod prompt;
pub mod wav;

pub use analysis::{Analysis, analyse, entropy_bits, unigram_entropy};
pub use classify::{ClassifierSettings, DigitClassifier, Features, dtw_distance};
pub use codec::{AudioCodec, AudioTokens, DEFAULT_RATE, Quantisation};
pub use datasets::{
    AudioDataset, DIGIT_WORDS, HeldOut, LabelRule, LabelledClip, Source, digit_classes, digit_word,
    held_out_digit_files, open_dataset, open_sources, to_sequences, training_sources, wav_files,
};
pub use draw::{Clip, ClipJob, ClipRequest, draw};
pub use frames::{FrameCodebook, Stft};
pub use plot::{plot, plot_size};
pub use prompt::{AudioPrompt, prompt_from_samples, prompt_from_wav, real_time_factor};
pub use wav::{WavInfo, read_wav, read_wav_native, resample, write_wav};
