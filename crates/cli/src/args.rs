//! Every flag of every subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "jielong",
    version,
    about = "接龍: generate text, images and audio one token at a time"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model on a dataset (or resume an interrupted run).
    Train(TrainArgs),
    /// Generate text, images or audio from a model folder.
    Generate(GenerateArgs),
    /// Score a model on held-out data (nats and bits per token).
    Eval(EvalArgs),
    /// Measure generation and training speed and peak memory.
    Bench(BenchArgs),
    /// Chat with a text model, many turns, keeping the KV cache between them.
    Chat(ChatArgs),
    /// Print the token ids of a text (no special tokens added).
    Tokenize(TokenizeArgs),
    /// Write the next-token logits after every prefix of a prompt to a JSON file.
    Logits(LogitsArgs),
    /// Write a native text model as a Hugging Face (Llama) folder.
    Export(ExportArgs),
    /// Serve models over HTTP: OpenAI-shaped API, metrics and a playground page at `/`.
    Serve(ServeArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modality {
    Text,
    Image,
    Audio,
}

impl Modality {
    pub fn name(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Image => "image",
            Modality::Audio => "audio",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Where the model runs: flex (CPU) or wgpu (GPU; builds with --features wgpu).
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// Where and how a model runs to generate or score: the same flags on every such command.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Where the model runs: flex (the CPU kernels) or wgpu (GPU; builds with --features wgpu).
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// The weights the CPU kernels run: f32, bf16, q8_0, q4_0, q4_1, or stored (as the model
    /// stores them: a native folder's f32, a GGUF file's own types). Matrices whose rows are
    /// not a multiple of 32 stay f32. Anything but f32/stored needs --device flex.
    #[arg(long, default_value = "stored")]
    pub weights: String,
    /// Threads of the CPU kernels, 1 to 1024 (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    pub modality: Modality,
    /// Training data: a text file; an MNIST folder (its train-* files; the t10k-* files, if
    /// there, are held out, else every 10th image), digits CSV, PNG folder or sprite sheet; a
    /// folder of WAVs.
    #[arg(long)]
    pub data: PathBuf,
    /// The model folder to write (config.json, model.safetensors, MODEL.md, metrics, loss curve).
    #[arg(long)]
    pub out: PathBuf,
    /// A JSON file with "model", "train", "codec" and "data" sections (see README).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Number of optimisation steps (overrides the config).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub what: GenerateWhat,
}

#[derive(Subcommand, Debug)]
pub enum GenerateWhat {
    /// Continue a text prompt, streaming tokens as they are drawn.
    Text(GenerateText),
    /// Draw images pixel by pixel (a grid PNG).
    Image(GenerateImage),
    /// Draw audio token by token, a sample or a short frame at a time (a WAV).
    Audio(GenerateAudio),
}

/// The dice: how each next token is drawn.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Divides the logits: < 1 sharper, > 1 flatter (default: the model's
    /// `generation.temperature` in config.json, else 1).
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Draw only among the K most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Draw only among the most likely tokens whose probabilities sum to P.
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    /// Drop tokens less likely than P times the most likely one.
    #[arg(long, allow_negative_numbers = true)]
    pub min_p: Option<f32>,
    /// Above 1 makes tokens already in the sequence less likely.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub repetition_penalty: f32,
    /// Always take the most likely token.
    #[arg(long)]
    pub greedy: bool,
    /// Seed of the dice: the same seed gives the same output.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print, for each step, the K most likely tokens and their probabilities (* = drawn).
    #[arg(long, value_name = "K")]
    pub show_probs: Option<usize>,
}

#[derive(Args, Debug)]
pub struct GenerateText {
    #[arg(long)]
    pub model: PathBuf,
    /// The text to continue.
    #[arg(long, conflicts_with = "prompt_ids")]
    pub prompt: Option<String>,
    /// The prompt as token ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    #[arg(long, default_value_t = 200)]
    pub max_new_tokens: usize,
    /// Stop when the generated text contains this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// When the context is full, slide the window instead of stopping.
    #[arg(long)]
    pub slide: bool,
    /// Number of continuations drawn together as one batch (1 to 1024).
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub device: LoadArgs,
}

#[derive(Args, Debug)]
pub struct GenerateImage {
    #[arg(long)]
    pub model: PathBuf,
    /// The class to draw (a label name or its index); unconditional when absent.
    #[arg(long)]
    pub class: Option<String>,
    /// Number of images, drawn as one batch (1 to 1024).
    #[arg(long, default_value_t = 16)]
    pub count: usize,
    /// The grid PNG to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write each image as its own PNG at native size.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Complete this image from its first --keep-rows rows (Image GPT's demo).
    #[arg(long, requires = "keep_rows")]
    pub prompt_image: Option<PathBuf>,
    #[arg(long, requires = "prompt_image")]
    pub keep_rows: Option<u32>,
    /// Write an animated GIF of the first image filling in.
    #[arg(long)]
    pub animate: Option<PathBuf>,
    /// Grid cell scale (nearest neighbour).
    #[arg(long, default_value_t = 4)]
    pub scale: u32,
    /// Classifier-free guidance towards --class: the logits become u + G (c - u), from the
    /// model run with (c) and without (u) the class; 1 is the plain model, larger is more
    /// typical of the class and less varied. Costs a second pass per token. Default: the
    /// model's `generation.guidance` in config.json, if any.
    #[arg(long, value_name = "G", allow_negative_numbers = true)]
    pub guidance: Option<f32>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub device: LoadArgs,
}

#[derive(Args, Debug)]
pub struct GenerateAudio {
    #[arg(long)]
    pub model: PathBuf,
    /// The class to say (e.g. 7); unconditional when absent.
    #[arg(long)]
    pub class: Option<String>,
    /// Length of the clip; longer than the context slides the window.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub seconds: f64,
    /// Continue this clip from its first --keep-seconds.
    #[arg(long, requires = "keep_seconds")]
    pub prompt_audio: Option<PathBuf>,
    #[arg(long, requires = "prompt_audio", allow_negative_numbers = true)]
    pub keep_seconds: Option<f64>,
    #[arg(long)]
    pub out: PathBuf,
    /// Draw the waveform and spectrogram (and the prompt's) to this PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Number of clips drawn as one batch, 1 to 1024 (written as OUT, OUT-1, ...).
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Classifier-free guidance towards --class: the logits become u + G (c - u), from the
    /// model run with (c) and without (u) the class; 1 is the plain model, larger is more
    /// typical of the class and less varied. Costs a second pass per token. Default: the
    /// model's `generation.guidance` in config.json, if any.
    #[arg(long, value_name = "G", allow_negative_numbers = true)]
    pub guidance: Option<f32>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub device: LoadArgs,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    pub modality: Modality,
    #[arg(long)]
    pub model: PathBuf,
    /// Held-out data: a text file, an MNIST folder (its t10k files; the train-* files may be
    /// absent), a folder of WAVs...
    #[arg(long)]
    pub data: PathBuf,
    /// For a text file: score all of it, or only the held-out tail the model was trained
    /// without.
    #[arg(long, value_enum, default_value = "all")]
    pub part: Part,
    /// Also draw N samples of every class and report how many a classifier recognises as the
    /// class asked for. Images: a 5-nearest-neighbour vote trained on the dataset's training
    /// images. Audio: one-second clips matched (dynamic time warping) against the --data clips.
    #[arg(long, value_name = "N")]
    pub check_classes: Option<usize>,
    /// With --check-classes: draw with classifier-free guidance G (see generate --guidance;
    /// default: the model's own default).
    #[arg(
        long,
        value_name = "G",
        requires = "check_classes",
        allow_negative_numbers = true
    )]
    pub guidance: Option<f32>,
    /// With --check-classes: draw at temperature T (default: the model's own, else 1).
    #[arg(
        long,
        value_name = "T",
        requires = "check_classes",
        allow_negative_numbers = true
    )]
    pub temperature: Option<f32>,
    /// Images: binarise the held-out images first, by threshold (intensity >= 128) or
    /// stochastically (each pixel on with probability intensity / 255, the MNIST literature's
    /// test set; drawn from --binarise-seed). Default: the codec's own tokenisation.
    #[arg(long, value_enum)]
    pub binarise: Option<BinariseArg>,
    /// The seed of a stochastic binarisation (default 0); write it beside the score.
    #[arg(long, value_name = "N")]
    pub binarise_seed: Option<u64>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub device: LoadArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinariseArg {
    Threshold,
    Stochastic,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    All,
    Heldout,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// Tokens generated per measurement.
    #[arg(long, default_value_t = 128)]
    pub tokens: usize,
    /// Training steps measured.
    #[arg(long, default_value_t = 3)]
    pub train_steps: usize,
    /// Sequences per training step (each as long as the context, at most 256 tokens).
    #[arg(long, default_value_t = 16)]
    pub train_batch: usize,
    /// Measure generation only (large models: training them here would take minutes).
    #[arg(long)]
    pub no_train: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub device: LoadArgs,
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// A system prompt, kept when old turns are dropped.
    #[arg(long)]
    pub system: Option<String>,
    /// Longest reply, in tokens.
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub device: LoadArgs,
}

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// A tokenizer.json, a model folder (native or Hugging Face), or a GGUF file (tokenized as
    /// llama.cpp does: no BOS added, special tokens written in the text parsed).
    #[arg(long)]
    pub tokenizer: PathBuf,
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    pub text: Option<String>,
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// With --file: tokenize each piece between separators (taken literally) and print one
    /// array per line.
    #[arg(long, requires = "file")]
    pub split: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogitsArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, value_delimiter = ',', required = true)]
    pub prompt_ids: Vec<u32>,
    /// The JSON file to write: {"logits": [[...], ...]}, one row per position.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: LoadArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// A Llama-format Hugging Face folder (config.json, f32 model.safetensors, tokenizer.json).
    Hf,
    /// One GGUF file that llama.cpp runs with the same weights and token ids.
    Gguf,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A text model: a native folder, a Hugging Face folder or a GGUF file.
    #[arg(long)]
    pub model: PathBuf,
    /// The format to write.
    #[arg(long, value_enum)]
    pub to: ExportFormat,
    /// The matrices' type in a GGUF file: f32, f16, bf16, q8_0, q4_0 or q4_1 (vectors, and
    /// matrices whose rows are not whole blocks, stay f32). A Hugging Face folder is f32.
    #[arg(long, default_value = "f32")]
    pub weights: String,
    /// The folder (--to hf) or file (--to gguf) to write.
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A model folder or GGUF file to serve (repeat for several: text, image and audio at
    /// once). Each is served under its folder's name, or its file's without `.gguf`.
    #[arg(long, required = true)]
    pub model: Vec<PathBuf>,
    /// The address to listen on: this machine only unless told otherwise.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The port; 0 picks a free one (the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every API route (default: $JIELONG_API_KEY).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Let web pages on ORIGIN call the API (CORS; `*` for any). Default: closed.
    #[arg(long, value_name = "ORIGIN")]
    pub cors: Option<String>,
    /// Most sequences one model decodes together in a step.
    #[arg(long, default_value_t = 64)]
    pub max_batch: usize,
    /// Requests that may wait for a model's batch before the server answers 503.
    #[arg(long, default_value_t = 256)]
    pub queue: usize,
    /// Most new tokens one text request may ask for.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens: usize,
    /// Largest request body, in bytes (larger: 413).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body: usize,
    #[command(flatten)]
    pub load: LoadArgs,
}
