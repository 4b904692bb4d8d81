//! GGUF files (llama.cpp's model format) as jielong models: read one as a [`Checkpoint`] with
//! its [`TransformerConfig`], and write one from any checkpoint.
//!
//! # Names and shapes
//!
//! jielong's loaders ask for tensors by Hugging Face name and PyTorch shape; a GGUF file holds
//! them under llama.cpp's names with ggml dims (ne0, the contiguous dimension, first):
//!
//! | Hugging Face | llama.cpp |
//! |---|---|
//! | `model.embed_tokens.weight` | `token_embd.weight` |
//! | `model.layers.N.input_layernorm.weight` | `blk.N.attn_norm.weight` |
//! | `model.layers.N.self_attn.{q,k,v}_proj.{weight,bias}` | `blk.N.attn_{q,k,v}.{weight,bias}` |
//! | `model.layers.N.self_attn.o_proj.{weight,bias}` | `blk.N.attn_output.{weight,bias}` |
//! | `model.layers.N.post_attention_layernorm.weight` | `blk.N.ffn_norm.weight` |
//! | `model.layers.N.mlp.{gate,up,down}_proj.weight` | `blk.N.ffn_{gate,up,down}.weight` |
//! | `model.norm.weight` | `output_norm.weight` |
//! | `lm_head.weight` (absent: tied embeddings) | `output.weight` |
//!
//! A PyTorch shape `[out, in]` is ggml dims `[in, out]`.
//!
//! # llama.cpp's Q/K permutation
//!
//! llama.cpp rotates interleaved pairs `(x[2j], x[2j+1])` of a head, Hugging Face's Llama the
//! halves `(x[j], x[j + hd/2])`. So llama.cpp's converter (`convert_hf_to_gguf.py`,
//! `LlamaModel.permute`) reorders the rows of `q_proj` and `k_proj` (weights and biases) of
//! **llama** files: `w.reshape(heads, 2, hd/2, d_in).swapaxes(1, 2)`, with the KV heads for `k`.
//! Row `h*hd + 2j + t` of the file is Hugging Face's row `h*hd + t*hd/2 + j`. Reading undoes that
//! (whole rows of blocks for quantized types, so the blocks are unchanged and only their order
//! is: an owned copy of those two tensors, everything else is borrowed from the map); writing
//! does it. **qwen2** files are not permuted: llama.cpp runs Qwen2 with NEOX rotary (rotate
//! half), the converter's `Qwen2Model` has no permutation, and transformers' GGUF loader
//! un-permutes only llama (and mistral) files.
//!
//! # Metadata
//!
//! [`config_from_gguf`] reads `general.architecture` (`llama`, which includes Mistral-style
//! models, or `qwen2`; anything else is refused by name) and `{arch}.context_length`,
//! `embedding_length`, `block_count`, `feed_forward_length`, `attention.head_count`,
//! `attention.head_count_kv` (default: head_count), `attention.key_length` (head_dim; default
//! hidden / heads; `attention.value_length` and `rope.dimension_count` must equal it when
//! present: jielong rotates whole heads), `rope.freq_base` (default 10000),
//! `attention.layer_norm_rms_epsilon`; the vocabulary size from `token_embd.weight`; biases and
//! tied embeddings from which tensors exist.
//!
//! Rotary scaling: Llama 3's is stored by llama.cpp as a tensor `rope_freqs.weight` of
//! per-frequency divisors (`rope.scaling.*` keys are not written for it). jielong fits Llama 3's
//! four parameters to the divisors and checks that they reproduce every one to 1e-5; divisors
//! that follow another rule are refused. `original_max_position_embeddings` is taken from
//! `{arch}.rope.scaling.original_context_length` when present, else 8192 (Llama 3.x's; only
//! its ratio to the two frequency factors matters, so any value gives the same frequencies).
//! `rope.scaling.type` `linear`, `yarn` (or any but `none`) with a factor other than 1 is
//! refused.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::Device;
use jielong_gguf::{GgmlType, GgufFile, GgufWriter, TensorData, Value};
use serde_json::{Value as Json, json};

use crate::config::{Llama3RopeScaling, TransformerConfig};
use crate::folder::{FolderKind, ModelFolder, to_hf_config};
use crate::model::Transformer;
use crate::weights::{Checkpoint, RawTensor, save_safetensors};

/// The `general.architecture` values jielong loads, as named in the error for any other.
pub const GGUF_ARCHITECTURES: &str = "llama (including Mistral-style models), qwen2";

/// The tensor that holds Llama 3's rotary divisors.
const ROPE_FREQS: &str = "rope_freqs.weight";

/// `original_max_position_embeddings` when a file does not say (Llama 3.x's).
const DEFAULT_ORIGINAL_CONTEXT: usize = 8192;

/// Per-layer tensors: Hugging Face suffix after `model.layers.N.`, llama.cpp suffix after
/// `blk.N.`.
const LAYER_NAMES: [(&str, &str); 13] = [
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.q_proj.bias", "attn_q.bias"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.k_proj.bias", "attn_k.bias"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.v_proj.bias", "attn_v.bias"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("self_attn.o_proj.bias", "attn_output.bias"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

const GLOBAL_NAMES: [(&str, &str); 3] = [
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

/// llama.cpp's name of a Hugging Face tensor name, if jielong's model has such a tensor.
pub fn gguf_tensor_name(hf: &str) -> Option<String> {
    if let Some(&(_, g)) = GLOBAL_NAMES.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, suffix) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let &(_, g) = LAYER_NAMES.iter().find(|(h, _)| *h == suffix)?;
    Some(format!("blk.{layer}.{g}"))
}

/// The Hugging Face name of a llama.cpp tensor name, if jielong's model has such a tensor.
pub fn hf_tensor_name(gguf: &str) -> Option<String> {
    if let Some(&(h, _)) = GLOBAL_NAMES.iter().find(|(_, g)| *g == gguf) {
        return Some(h.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, suffix) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let &(h, _) = LAYER_NAMES.iter().find(|(_, g)| *g == suffix)?;
    Some(format!("model.layers.{layer}.{h}"))
}

/// Every tensor a model of this architecture has, by Hugging Face name with its PyTorch
/// shape, in the order of the model's fields (the names [`Transformer::named_tensors`] gives).
pub fn checkpoint_tensors(c: &TransformerConfig) -> Vec<(String, Vec<usize>)> {
    let (h, q, kv, i, v) = (
        c.hidden_size,
        c.num_heads * c.head_dim,
        c.num_kv_heads * c.head_dim,
        c.intermediate_size,
        c.vocab_size,
    );
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
    if c.first_token_condition {
        out.push(("model.condition_embed.weight".to_string(), vec![v, h]));
    }
    for l in 0..c.num_layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        out.push((p("input_layernorm.weight"), vec![h]));
        for (proj, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            out.push((p(&format!("self_attn.{proj}.weight")), vec![rows, h]));
            if c.attention_bias {
                out.push((p(&format!("self_attn.{proj}.bias")), vec![rows]));
            }
        }
        out.push((p("self_attn.o_proj.weight"), vec![h, q]));
        if c.output_bias {
            out.push((p("self_attn.o_proj.bias"), vec![h]));
        }
        out.push((p("post_attention_layernorm.weight"), vec![h]));
        out.push((p("mlp.gate_proj.weight"), vec![i, h]));
        out.push((p("mlp.up_proj.weight"), vec![i, h]));
        out.push((p("mlp.down_proj.weight"), vec![h, i]));
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !c.tie_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, h]));
    }
    out
}

/// Whether `path` is a GGUF file: a file whose first bytes are `GGUF`, or any path ending in
/// `.gguf` (so that a damaged one is reported as a bad GGUF file, not as a missing folder).
pub fn is_gguf_path(path: &Path) -> bool {
    if path.is_dir() {
        return false;
    }
    let named = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    let magic = || -> std::io::Result<bool> {
        use std::io::Read;
        let mut head = [0u8; 4];
        let mut f = std::fs::File::open(path)?;
        Ok(f.read(&mut head)? == 4 && head == jielong_gguf::GGUF_MAGIC)
    };
    named || (path.is_file() && magic().unwrap_or(false))
}

// ---- metadata -> architecture ---------------------------------------------------------------

/// How a file's architecture is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arch {
    Llama,
    Qwen2,
}

impl Arch {
    fn of(file: &GgufFile) -> Result<(Arch, &str)> {
        let name = file.get_str("general.architecture")?;
        let arch = match name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            other => bail!(
                "unsupported GGUF architecture {other:?} (general.architecture): jielong loads \
                 {GGUF_ARCHITECTURES}"
            ),
        };
        Ok((arch, name))
    }

    /// Whether llama.cpp's converter permuted the q and k rows (see the module docs).
    fn permuted(self) -> bool {
        self == Arch::Llama
    }
}

/// The architecture a GGUF file describes (see the module docs for the keys read). Errors name
/// the key or tensor at fault.
pub fn config_from_gguf(file: &GgufFile) -> Result<TransformerConfig> {
    read_config(file).context("cannot read the model's shape from the GGUF metadata")
}

fn read_config(file: &GgufFile) -> Result<TransformerConfig> {
    let (_, arch) = Arch::of(file)?;
    let key = |k: &str| format!("{arch}.{k}");
    let count = |k: &str| -> Result<usize> { Ok(file.get_u32(&key(k))? as usize) };
    let opt_count =
        |k: &str| -> Result<Option<usize>> { Ok(file.opt_u32(&key(k))?.map(|v| v as usize)) };
    let hidden = count("embedding_length")?;
    let heads = count("attention.head_count")?;
    ensure!(heads > 0, "{} is 0", key("attention.head_count"));
    let kv_heads = opt_count("attention.head_count_kv")?.unwrap_or(heads);
    let head_dim = opt_count("attention.key_length")?.unwrap_or(hidden / heads);
    for k in ["attention.value_length", "rope.dimension_count"] {
        if let Some(v) = opt_count(k)? {
            ensure!(
                v == head_dim,
                "{} is {v} but the head size (attention.key_length, or embedding_length / \
                 head_count) is {head_dim}: jielong supports only whole-head rotary positions \
                 and values as wide as keys",
                key(k)
            );
        }
    }

    let embed = file
        .tensor_info("token_embd.weight")
        .context("the GGUF file has no token embedding (token_embd.weight)")?;
    let dims = embed.dims();
    ensure!(
        dims.len() == 2 && dims[0] as usize == hidden,
        "token_embd.weight has ggml dims {dims:?}; [{hidden}, vocabulary] was expected \
         ({} = {hidden})",
        key("embedding_length")
    );
    let vocab = dims[1] as usize;
    if let Some(v) = opt_count("vocab_size")? {
        ensure!(
            v == vocab,
            "{} is {v} but token_embd.weight has {vocab} rows",
            key("vocab_size")
        );
    }

    let rope_theta = file.opt_f64(&key("rope.freq_base"))?.unwrap_or(10000.0);
    let has = |name: &str| file.tensor_info(name).is_ok();
    let mut config = TransformerConfig {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: count("feed_forward_length")?,
        num_layers: count("block_count")?,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        context_len: count("context_length")?,
        rope_theta,
        rope_scaling: None,
        rms_norm_eps: file.get_f64(&key("attention.layer_norm_rms_epsilon"))?,
        tie_embeddings: !has("output.weight"),
        attention_bias: has("blk.0.attn_q.bias"),
        output_bias: has("blk.0.attn_output.bias"),
        first_token_condition: false,
    };
    config.rope_scaling = rope_scaling(file, arch, &config)?;
    config.validate()?;
    Ok(config)
}

/// The rotary scaling of a file: none, or Llama 3's fitted to `rope_freqs.weight`.
fn rope_scaling(
    file: &GgufFile,
    arch: &str,
    c: &TransformerConfig,
) -> Result<Option<Llama3RopeScaling>> {
    let key = |k: &str| format!("{arch}.{k}");
    let kind = file.opt_str(&key("rope.scaling.type"))?;
    let factor = file.opt_f64(&key("rope.scaling.factor"))?;
    let linear = file.opt_f64(&key("rope.scale_linear"))?;
    let trivial = |f: Option<f64>| f.is_none_or(|f| f == 0.0 || f == 1.0);
    match kind {
        None | Some("none") if trivial(linear) => {}
        Some(k) if trivial(factor) && trivial(linear) => {
            let _ = k; // a named kind with a factor of 1 changes nothing
        }
        k => bail!(
            "unsupported rotary scaling {:?} (factor {:?}) in {}: jielong supports Llama 3's \
             (a rope_freqs.weight tensor) only",
            k.unwrap_or("linear"),
            factor.or(linear),
            key("rope.scaling.type")
        ),
    }
    let Ok(view) = file.tensor(ROPE_FREQS) else {
        if file.tensor_info(ROPE_FREQS).is_ok() {
            // Present but of a type jielong does not read: report that.
            file.tensor(ROPE_FREQS)?;
        }
        return Ok(None);
    };
    let half = c.head_dim / 2;
    ensure!(
        view.n_elements() == half,
        "{ROPE_FREQS} has {} values; one per rotary frequency ({half}) was expected",
        view.n_elements()
    );
    let divisors = view.dequantize_f32();
    let original = file
        .opt_u64(&key("rope.scaling.original_context_length"))?
        .map_or(DEFAULT_ORIGINAL_CONTEXT, |v| v as usize);
    fit_llama3(&divisors, c.rope_theta, c.head_dim, original)
        .with_context(|| format!("cannot read the rotary scaling in {ROPE_FREQS}"))
}

/// Llama 3's scaling of one frequency (as `model.rs` computes it).
fn llama3_scale(freq: f64, s: &Llama3RopeScaling) -> f64 {
    let old = s.original_max_position_embeddings as f64;
    let low_wavelen = old / s.low_freq_factor;
    let high_wavelen = old / s.high_freq_factor;
    let wavelen = 2.0 * std::f64::consts::PI / freq;
    if wavelen < high_wavelen {
        freq
    } else if wavelen > low_wavelen {
        freq / s.factor
    } else {
        let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        (1.0 - smooth) * freq / s.factor + smooth * freq
    }
}

fn rope_frequencies(theta: f64, head_dim: usize) -> Vec<f64> {
    (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64))
        .collect()
}

/// llama.cpp's divisors for Llama 3's scaling: frequency `i` is divided by `divisors[i]`.
pub fn llama3_rope_divisors(c: &TransformerConfig) -> Option<Vec<f32>> {
    let s = c.rope_scaling.as_ref()?;
    Some(
        rope_frequencies(c.rope_theta, c.head_dim)
            .into_iter()
            .map(|f| (f / llama3_scale(f, s)) as f32)
            .collect(),
    )
}

/// Llama 3's parameters that turn the frequencies into `freq / divisors[i]`.
///
/// In terms of `u = 1 / wavelength`, the rule is: divisor 1 above `u_high = high / old`,
/// `factor` below `u_low = low / old`, and in between `1 / divisor = (1 - s) / factor + s`
/// with `s` linear in `u` (0 at `u_low`, 1 at `u_high`). So the divisors give `factor` (their
/// largest), and each interpolated one a point on the line `s(u)`; the line is fixed by two
/// such points, and with fewer it is placed at the edges of the divided and undivided ranges.
fn fit_llama3(
    divisors: &[f32],
    theta: f64,
    head_dim: usize,
    original: usize,
) -> Result<Option<Llama3RopeScaling>> {
    ensure!(
        divisors.iter().all(|d| d.is_finite() && *d >= 1.0 - 1e-6),
        "the divisors must be finite and at least 1"
    );
    let freqs = rope_frequencies(theta, head_dim);
    let u: Vec<f64> = freqs
        .iter()
        .map(|f| f / (2.0 * std::f64::consts::PI))
        .collect();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1.0);
    let factor = divisors.iter().fold(1.0f64, |m, &d| m.max(d as f64));
    if close(factor, 1.0) {
        return Ok(None);
    }
    let (mut ones, mut full, mut mid) = (Vec::new(), Vec::new(), Vec::new());
    for (i, &d) in divisors.iter().enumerate() {
        let d = d as f64;
        if close(d, 1.0) {
            ones.push(u[i]);
        } else if close(d, factor) {
            full.push(u[i]);
        } else {
            let s = (1.0 / d - 1.0 / factor) / (1.0 - 1.0 / factor);
            mid.push((u[i], s));
        }
    }
    // Undivided frequencies must lie above divided ones.
    let min_one = ones.iter().copied().fold(f64::INFINITY, f64::min);
    let max_full = full.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (u_low, u_high) = match mid.len() {
        0 => {
            let hi = if min_one.is_finite() {
                min_one
            } else {
                max_full * 2.0
            };
            let lo = if max_full.is_finite() {
                max_full
            } else {
                hi / 2.0
            };
            (lo, hi)
        }
        1 => {
            let (um, sm) = mid[0];
            let lo = if max_full.is_finite() {
                max_full
            } else {
                um / 2.0
            };
            let mut pair = (lo, lo + (um - lo) / sm);
            if min_one.is_finite() && pair.1 > min_one {
                let hi = min_one;
                pair = ((um - sm * hi) / (1.0 - sm), hi);
            }
            pair
        }
        _ => {
            let (a, b) =
                (
                    mid.iter().copied().fold((f64::NEG_INFINITY, 0.0), |m, p| {
                        if p.0 > m.0 { p } else { m }
                    }),
                    mid.iter()
                        .copied()
                        .fold((f64::INFINITY, 0.0), |m, p| if p.0 < m.0 { p } else { m }),
                );
            let slope = (a.1 - b.1) / (a.0 - b.0);
            ensure!(
                slope > 0.0 && slope.is_finite(),
                "the interpolated divisors do not follow Llama 3's rule"
            );
            let lo = a.0 - a.1 / slope;
            (lo, lo + 1.0 / slope)
        }
    };
    ensure!(
        u_low > 0.0 && u_high > u_low,
        "the divisors do not follow Llama 3's rule (they must grow from 1 to the factor as the \
         frequency falls)"
    );
    let old = original as f64;
    let fitted = Llama3RopeScaling {
        factor,
        low_freq_factor: u_low * old,
        high_freq_factor: u_high * old,
        original_max_position_embeddings: original,
    };
    let check = |s: &Llama3RopeScaling| -> Result<()> {
        for (i, (&f, &d)) in freqs.iter().zip(divisors).enumerate() {
            let want = f / d as f64;
            let got = llama3_scale(f, s);
            ensure!(
                (got - want).abs() <= 1e-5 * want,
                "divisor {i} ({d}) does not follow Llama 3's rule (the fitted parameters give {})",
                f / got
            );
        }
        Ok(())
    };
    check(&fitted)?;
    // The divisors are f32: the fit is off in the 7th digit. Real parameters are round numbers
    // (8, 1, 4), so take the values rounded to 6 digits when they fit as well.
    let round = |x: f64| -> f64 { format!("{x:.5e}").parse().unwrap_or(x) };
    let rounded = Llama3RopeScaling {
        factor: round(fitted.factor),
        low_freq_factor: round(fitted.low_freq_factor),
        high_freq_factor: round(fitted.high_freq_factor),
        original_max_position_embeddings: original,
    };
    Ok(Some(if check(&rounded).is_ok() {
        rounded
    } else {
        fitted
    }))
}

// ---- reading ------------------------------------------------------------------------------

/// The weights of a GGUF file, by Hugging Face name and PyTorch shape, with llama.cpp's Q/K
/// permutation undone; the blocks are handed out as stored (borrowed from the memory map, except
/// the reordered rows of q and k), so a loader may de-quantize them ([`RawTensor::to_f32`]) or
/// run them as they are.
pub struct GgufCheckpoint {
    file: GgufFile,
    config: TransformerConfig,
    arch: Arch,
    /// llama.cpp names of the tensors taken.
    taken: BTreeSet<String>,
}

impl std::fmt::Debug for GgufCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufCheckpoint")
            .field("file", &self.file)
            .field("arch", &self.arch)
            .finish()
    }
}

impl GgufCheckpoint {
    /// Opens and memory-maps a GGUF file and reads its architecture.
    pub fn open(path: &Path) -> Result<Self> {
        let file = GgufFile::open(path).with_context(|| path.display().to_string())?;
        Self::new(file).with_context(|| path.display().to_string())
    }

    /// The checkpoint of a file already open.
    pub fn new(file: GgufFile) -> Result<Self> {
        let config = config_from_gguf(&file)?;
        let (arch, _) = Arch::of(&file)?;
        Ok(Self {
            file,
            config,
            arch,
            taken: BTreeSet::new(),
        })
    }

    /// The architecture the metadata describes.
    pub fn config(&self) -> &TransformerConfig {
        &self.config
    }

    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    pub fn into_file(self) -> GgufFile {
        self.file
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> &'static str {
        match self.arch {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }

    /// How many heads the rows of `hf` are grouped in, if llama.cpp permuted them.
    fn permuted_heads(&self, hf: &str) -> Option<usize> {
        if !self.arch.permuted() {
            return None;
        }
        if hf.ends_with("self_attn.q_proj.weight") || hf.ends_with("self_attn.q_proj.bias") {
            Some(self.config.num_heads)
        } else if hf.ends_with("self_attn.k_proj.weight") || hf.ends_with("self_attn.k_proj.bias") {
            Some(self.config.num_kv_heads)
        } else {
            None
        }
    }
}

impl Checkpoint for GgufCheckpoint {
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<RawTensor<'_>> {
        let gname = gguf_tensor_name(name)
            .with_context(|| format!("jielong has no GGUF name for the tensor {name}"))?;
        let info = self.file.tensor_info(&gname).map_err(|_| {
            if name == "lm_head.weight" {
                anyhow::anyhow!(
                    "the GGUF file has no output layer ({gname}) but the model expects one"
                )
            } else {
                anyhow::anyhow!("the GGUF file has no tensor {gname} ({name})")
            }
        })?;
        let file_shape: Vec<usize> = info.shape().iter().map(|&d| d as usize).collect();
        if file_shape != shape {
            bail!(
                "tensor {gname} ({name}) has shape {file_shape:?} (ggml dims {:?}), the model \
                 expects {shape:?}",
                info.dims()
            );
        }
        let heads = self.permuted_heads(name);
        self.taken.insert(gname.clone());
        let view = self.file.tensor(&gname)?;
        let (ty, data) = match heads {
            None => (view.ty(), Cow::Borrowed(view.data())),
            Some(heads) => {
                let head_dim = self.config.head_dim;
                let rows = shape[0];
                ensure!(
                    rows == heads * head_dim,
                    "tensor {gname} has {rows} rows, not {heads} heads of {head_dim}"
                );
                let (ty, bytes) = if shape.len() == 1 && view.ty().block_size() > 1 {
                    // A quantized bias (never written by llama.cpp): reorder its values.
                    let values = view.dequantize_f32();
                    let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    (GgmlType::F32, Cow::Owned(bytes))
                } else {
                    (view.ty(), Cow::Borrowed(view.data()))
                };
                let row_bytes = bytes.len() / rows;
                let reordered =
                    reorder_rows(&bytes, row_bytes, |i| llama_cpp_row_of_hf_row(i, head_dim));
                (ty, Cow::Owned(reordered))
            }
        };
        Ok(RawTensor {
            name: name.to_string(),
            shape: shape.to_vec(),
            ty,
            data,
        })
    }

    fn finish(&self) -> Result<()> {
        let unused: Vec<&str> = self
            .file
            .tensors()
            .iter()
            .map(|t| t.name())
            .filter(|n| {
                !self.taken.contains(*n) && *n != ROPE_FREQS && !n.ends_with(".attn_rot_embd")
            })
            .collect();
        if !unused.is_empty() {
            let shown: Vec<&str> = unused.iter().take(5).copied().collect();
            bail!(
                "the GGUF file has {} tensor(s) the model does not use: {}{}",
                unused.len(),
                shown.join(", "),
                if unused.len() > 5 { ", ..." } else { "" }
            );
        }
        Ok(())
    }
}

/// Row `i` of the result is row `source(i)` of `data`.
fn reorder_rows(data: &[u8], row_bytes: usize, source: impl Fn(usize) -> usize) -> Vec<u8> {
    let rows = data.len() / row_bytes.max(1);
    let mut out = Vec::with_capacity(data.len());
    for i in 0..rows {
        let s = source(i);
        out.extend_from_slice(&data[s * row_bytes..(s + 1) * row_bytes]);
    }
    out
}

/// The llama.cpp row holding Hugging Face's row `i` (within heads of `head_dim` rows).
fn llama_cpp_row_of_hf_row(i: usize, head_dim: usize) -> usize {
    let (head, k, half) = (i / head_dim, i % head_dim, head_dim / 2);
    head * head_dim + 2 * (k % half) + k / half
}

/// The Hugging Face row that llama.cpp's row `i` holds.
fn hf_row_of_llama_cpp_row(i: usize, head_dim: usize) -> usize {
    let (head, k, half) = (i / head_dim, i % head_dim, head_dim / 2);
    head * head_dim + (k % 2) * half + k / 2
}

// ---- a GGUF file as a model ---------------------------------------------------------------

/// A GGUF file as a [`ModelFolder`] of kind [`FolderKind::Gguf`]: `dir` is the file's path, the
/// modality text, the architecture from the metadata; `codec` is `{"kind": "gguf", "file":
/// PATH}` (the text codec is `jielong_text::TextCodec::from_gguf` of the file); `raw` holds
/// `general.*` keys under `"gguf"`, `bos_token_id`, `eos_token_id` (EOS and the end-of-turn
/// token, a list, as in a Hugging Face `config.json`) and `chat_template` when the file has
/// them.
pub fn open_gguf_model(path: &Path) -> Result<ModelFolder> {
    let file = GgufFile::open(path).with_context(|| path.display().to_string())?;
    let architecture = config_from_gguf(&file).with_context(|| path.display().to_string())?;
    let mut general = serde_json::Map::new();
    for (k, v) in file.metadata() {
        if let Some(rest) = k.strip_prefix("general.") {
            let j = match v {
                Value::String(s) => s.as_str().map(Json::from),
                Value::Bool(b) => Some(Json::from(*b)),
                Value::F32(x) => Some(Json::from(*x)),
                Value::F64(x) => Some(Json::from(*x)),
                other => other.as_i128().map(|i| Json::from(i as i64)),
            };
            if let Some(j) = j {
                general.insert(rest.to_string(), j);
            }
        }
    }
    let (bos, eos) = special_ids(&file)?;
    let mut raw = json!({ "gguf": general, "bos_token_id": bos, "eos_token_id": eos });
    if let Some(t) = file.opt_str("tokenizer.chat_template")? {
        raw["chat_template"] = Json::from(t);
    }
    Ok(ModelFolder {
        dir: path.to_path_buf(),
        kind: FolderKind::Gguf,
        modality: "text".into(),
        architecture,
        codec: json!({ "kind": "gguf", "file": path }),
        raw,
    })
}

/// The BOS id and the ids that end a text (EOS, end of turn) a GGUF file names, with llama.cpp's
/// defaults for a SentencePiece (`llama`) vocabulary that names none (BOS 1, EOS 2).
pub fn special_ids(file: &GgufFile) -> Result<(Option<u32>, Vec<u32>)> {
    let spm = file.opt_str("tokenizer.ggml.model")? == Some("llama");
    let bos = file
        .opt_u32("tokenizer.ggml.bos_token_id")?
        .or(spm.then_some(1));
    let mut eos: Vec<u32> = [
        file.opt_u32("tokenizer.ggml.eos_token_id")?
            .or(spm.then_some(2)),
        file.opt_u32("tokenizer.ggml.eot_token_id")?,
    ]
    .into_iter()
    .flatten()
    .collect();
    eos.dedup();
    Ok((bos, eos))
}

/// Builds the transformer of a GGUF file on `device` from its de-quantized weights.
pub fn load_gguf(path: &Path, device: &Device) -> Result<Transformer> {
    let mut ckpt = GgufCheckpoint::open(path)?;
    let config = ckpt.config().clone();
    Transformer::load(&config, &mut ckpt, device)
        .with_context(|| format!("cannot load the model in {}", path.display()))
}

// ---- writing ------------------------------------------------------------------------------

/// llama.cpp's `general.file_type` for a file whose matrices are of type `ty`.
fn file_type(ty: GgmlType) -> u32 {
    match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 7,
        GgmlType::BF16 => 32,
        _ => 0,
    }
}

/// Writes a model as a GGUF file llama.cpp runs: `general.architecture = llama`, llama.cpp's
/// tensor names and its Q/K permutation, every hyper-parameter key [`config_from_gguf`] reads
/// (plus `rope.dimension_count`, `attention.value_length`, `vocab_size`, `general.file_type`),
/// Llama 3 scaling as a `rope_freqs.weight` tensor, and `vocabulary` (the `tokenizer.*` keys;
/// see `jielong_text::gguf_vocab_metadata`), which must describe `config.vocab_size` tokens
/// when it has a token list.
///
/// Matrices are written as `weight_type` (F32, F16, BF16, Q8_0, Q4_0 or Q4_1); those whose rows
/// are not a whole number of its blocks, and every vector (norms, biases, `rope_freqs`), stay
/// F32, as llama.cpp does. A tensor already stored as `weight_type` is copied block for block;
/// others are converted from their f32 values (quantized by ggml's reference rule). The file is
/// written beside `path`, one tensor at a time, and renamed into place; then it is read back
/// and its architecture checked.
pub fn write_gguf(
    path: &Path,
    config: &TransformerConfig,
    weights: &mut dyn Checkpoint,
    vocabulary: &[(String, Value)],
    weight_type: GgmlType,
) -> Result<()> {
    config.validate()?;
    config.ensure_llama()?;
    ensure!(
        matches!(
            weight_type,
            GgmlType::F32
                | GgmlType::F16
                | GgmlType::BF16
                | GgmlType::Q8_0
                | GgmlType::Q4_0
                | GgmlType::Q4_1
        ),
        "jielong writes GGUF weights as F32, F16, BF16, Q8_0, Q4_0 or Q4_1, not {weight_type}"
    );
    for (k, v) in vocabulary {
        if k == "tokenizer.ggml.tokens"
            && let Value::Array(a) = v
        {
            ensure!(
                a.len() == config.vocab_size,
                "the vocabulary has {} tokens but the model {}: llama.cpp needs one token per \
                 row of the embedding",
                a.len(),
                config.vocab_size
            );
        }
        ensure!(
            !k.starts_with("general.") && !k.starts_with("llama."),
            "the vocabulary metadata may not set {k}"
        );
    }

    let a = "llama";
    let mut w = GgufWriter::new();
    w.add("general.architecture", a);
    w.add("general.name", "jielong");
    w.add("general.file_type", file_type(weight_type));
    let u = |x: usize| x as u32;
    w.add(format!("{a}.vocab_size"), u(config.vocab_size));
    w.add(format!("{a}.context_length"), u(config.context_len));
    w.add(format!("{a}.embedding_length"), u(config.hidden_size));
    w.add(format!("{a}.block_count"), u(config.num_layers));
    w.add(
        format!("{a}.feed_forward_length"),
        u(config.intermediate_size),
    );
    w.add(format!("{a}.attention.head_count"), u(config.num_heads));
    w.add(
        format!("{a}.attention.head_count_kv"),
        u(config.num_kv_heads),
    );
    w.add(format!("{a}.attention.key_length"), u(config.head_dim));
    w.add(format!("{a}.attention.value_length"), u(config.head_dim));
    w.add(format!("{a}.rope.dimension_count"), u(config.head_dim));
    w.add(format!("{a}.rope.freq_base"), config.rope_theta as f32);
    w.add(
        format!("{a}.attention.layer_norm_rms_epsilon"),
        config.rms_norm_eps as f32,
    );
    if let Some(s) = &config.rope_scaling {
        w.add(
            format!("{a}.rope.scaling.original_context_length"),
            u(s.original_max_position_embeddings),
        );
    }
    for (k, v) in vocabulary {
        w.add(k.clone(), v.clone());
    }

    let tensors = checkpoint_tensors(config);
    let mut plan = Vec::with_capacity(tensors.len());
    for (hf, shape) in &tensors {
        let gname = gguf_tensor_name(hf).expect("every model tensor has a GGUF name");
        let row = *shape.last().expect("tensors have dims");
        let ty = if shape.len() == 2 && row % weight_type.block_size() == 0 {
            weight_type
        } else {
            GgmlType::F32
        };
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        w.add_tensor(gname.clone(), ty, &dims);
        plan.push((hf.clone(), gname, shape.clone(), ty));
    }
    let divisors = llama3_rope_divisors(config);
    if let Some(d) = &divisors {
        w.add_tensor(ROPE_FREQS, GgmlType::F32, &[d.len() as u64]);
    }

    let mut out = w
        .create(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    for (hf, gname, shape, ty) in &plan {
        let heads = if hf.contains("self_attn.q_proj.") {
            Some(config.num_heads)
        } else if hf.contains("self_attn.k_proj.") {
            Some(config.num_kv_heads)
        } else {
            None
        };
        let permute = |data: &[u8], rows: usize| -> Vec<u8> {
            reorder_rows(data, data.len() / rows, |i| {
                hf_row_of_llama_cpp_row(i, config.head_dim)
            })
        };
        let t = weights.tensor(hf, shape)?;
        if t.ty == *ty {
            let bytes = match heads {
                Some(_) => Cow::Owned(permute(&t.data, shape[0])),
                None => t.data,
            };
            out.write_tensor(gname, TensorData::Raw(&bytes))?;
        } else {
            let values = t.to_f32();
            let values = match heads {
                Some(_) => {
                    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    permute(&bytes, shape[0])
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect()
                }
                None => values,
            };
            out.write_tensor(gname, TensorData::F32(&values))
                .with_context(|| format!("cannot write {gname} ({hf})"))?;
        }
    }
    if let Some(d) = &divisors {
        out.write_tensor(ROPE_FREQS, TensorData::F32(d))?;
    }
    weights.finish()?;
    out.finish()
        .with_context(|| format!("cannot write {}", path.display()))?;

    let back = GgufCheckpoint::open(path).context("the GGUF file written does not read back")?;
    // GGUF holds rope_theta and the epsilon as f32, and Llama 3 scaling as divisors.
    let as_stored = |c: &TransformerConfig| TransformerConfig {
        rope_theta: c.rope_theta as f32 as f64,
        rms_norm_eps: c.rms_norm_eps as f32 as f64,
        rope_scaling: None,
        ..c.clone()
    };
    ensure!(
        as_stored(back.config()) == as_stored(config)
            && match (
                llama3_rope_divisors(back.config()),
                llama3_rope_divisors(config)
            ) {
                (None, None) => true,
                (Some(a), Some(b)) => a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-5 * y),
                _ => false,
            },
        "the GGUF file written reads back as another architecture: {:?}",
        back.config()
    );
    Ok(())
}

// ---- to Hugging Face ----------------------------------------------------------------------

/// Writes every tensor of the model as f32 safetensors under Hugging Face names (de-quantizing
/// and un-permuting whatever the checkpoint holds), then checks the checkpoint has nothing
/// else. With a [`GgufCheckpoint`] this is the weights half of `export --to hf` from a GGUF
/// file; [`hf_config`] is the config, `jielong_text::TextCodec::from_gguf(..).to_hf_tokenizer()`
/// the tokenizer.
pub fn save_hf_weights(
    path: &Path,
    config: &TransformerConfig,
    weights: &mut dyn Checkpoint,
) -> Result<()> {
    let tensors = checkpoint_tensors(config)
        .into_iter()
        .map(|(name, shape)| {
            let values = weights.read(&name, &shape)?;
            Ok((name, shape, values))
        })
        .collect::<Result<Vec<_>>>()?;
    weights.finish()?;
    save_safetensors(path, &tensors)
}

/// A Hugging Face `config.json` for the architecture: Llama's, or Qwen2's for biases on q, k
/// and v only (which a Llama config cannot say).
pub fn hf_config(c: &TransformerConfig, bos: Option<u32>, eos: Option<u32>) -> Result<Json> {
    let qkv_bias_only = c.attention_bias && !c.output_bias;
    if !qkv_bias_only {
        return to_hf_config(c, bos, eos);
    }
    c.ensure_llama()?;
    ensure!(
        c.rope_scaling.is_none() && c.head_dim * c.num_heads == c.hidden_size,
        "a model with q/k/v biases but none on o_proj is written as a Qwen2 config, which \
         cannot hold rotary scaling or a head size other than hidden / heads"
    );
    Ok(json!({
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads,
        "max_position_embeddings": c.context_len,
        "max_window_layers": c.num_layers,
        "use_sliding_window": false,
        "sliding_window": null,
        "rope_theta": c.rope_theta,
        "rope_scaling": null,
        "rms_norm_eps": c.rms_norm_eps,
        "tie_word_embeddings": c.tie_embeddings,
        "hidden_act": "silu",
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        let c = TransformerConfig::new(10, 8, 16, 2, 2, 1, 4, 32)
            .with_attention_bias(true)
            .with_output_bias(true);
        let names = checkpoint_tensors(&c);
        assert_eq!(names.len(), 3 + 2 * 13);
        for (hf, _) in names {
            let g = gguf_tensor_name(&hf).unwrap();
            assert_eq!(hf_tensor_name(&g).as_deref(), Some(hf.as_str()), "{g}");
        }
        assert_eq!(
            gguf_tensor_name("model.layers.11.self_attn.o_proj.weight").as_deref(),
            Some("blk.11.attn_output.weight")
        );
        assert_eq!(gguf_tensor_name("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(hf_tensor_name("rope_freqs.weight"), None);
    }

    /// The row maps are llama.cpp's `reshape(heads, 2, hd/2, d).swapaxes(1, 2)` and its inverse.
    #[test]
    fn row_maps_are_llama_cpp_permutation() {
        let (heads, hd) = (3, 8);
        // permute(w)[r] = w[src]: reshape(heads, 2, hd/2) then swap -> index (h, j, t) reads (h, t, j).
        for r in 0..heads * hd {
            let (h, rest) = (r / hd, r % hd);
            let (j, t) = (rest / 2, rest % 2);
            let src = h * hd + t * (hd / 2) + j;
            assert_eq!(hf_row_of_llama_cpp_row(r, hd), src);
            assert_eq!(llama_cpp_row_of_hf_row(src, hd), r);
        }
    }

    #[test]
    fn llama3_fit_recovers_the_frequencies() {
        let cases = [
            (8.0, 1.0, 4.0, 8192, 500000.0, 128),
            (8.0, 1.0, 4.0, 64, 10000.0, 16),
            (4.0, 1.0, 2.0, 256, 10000.0, 8),
            (32.0, 2.0, 8.0, 1024, 10000.0, 32),
        ];
        for (factor, low, high, old, theta, hd) in cases {
            let c = TransformerConfig::new(10, hd * 2, 16, 1, 2, 2, hd, 32)
                .with_rope_theta(theta)
                .with_rope_scaling(Some(Llama3RopeScaling {
                    factor,
                    low_freq_factor: low,
                    high_freq_factor: high,
                    original_max_position_embeddings: old,
                }));
            let d = llama3_rope_divisors(&c).unwrap();
            let s = fit_llama3(&d, theta, hd, 8192).unwrap().unwrap();
            assert_eq!(s.factor, factor);
            for f in rope_frequencies(theta, hd) {
                let want = llama3_scale(f, c.rope_scaling.as_ref().unwrap());
                let got = llama3_scale(f, &s);
                assert!((got - want).abs() <= 2e-6 * want, "{got} {want} {c:?}");
            }
        }
        assert!(fit_llama3(&[1.0; 4], 10000.0, 8, 8192).unwrap().is_none());
        // Divisors that fall with the wavelength follow no Llama 3 rule.
        assert!(fit_llama3(&[8.0, 3.0, 2.0, 1.0], 10000.0, 8, 8192).is_err());
    }
}
