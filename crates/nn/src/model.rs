//! The one transformer: decoder-only, pre-norm, RMSNorm, rotary positions, SwiGLU MLP,
//! grouped-query attention, optional tied embeddings. Field names follow Hugging Face's Llama
//! checkpoints so that weights load by name.

use anyhow::{Result, bail};
use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::activation::{log_softmax, silu};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};
use jielong_core::{Decoder, Logits, Positions, check_feed};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::TransformerConfig;
use crate::weights::Weights;

/// Keys and values of every position fed so far, per layer: `[batch, kv_heads, len, head_dim]`.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
        }
    }

    /// Number of positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position from `len` on (a chat rewinds to where a re-rendered
    /// conversation stops matching what was fed).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        for slot in &mut self.layers {
            *slot = slot
                .take()
                .filter(|_| len > 0)
                .map(|(k, v)| (k.narrow(2, 0, len), v.narrow(2, 0, len)));
        }
        self.len = len;
    }
}

#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
}

impl RmsNorm {
    /// # Shapes
    /// - x: `[..., hidden]` -> `[..., hidden]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let rms = (x.clone().square().mean_dim(D - 1) + self.eps).sqrt(); // [..., 1]
        x / rms * self.weight.val().unsqueeze()
    }
}

#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    /// # Shapes
    /// - x: `[batch, new, hidden]`, cos/sin: `[new, head_dim / 2]` -> `[batch, new, hidden]`
    fn forward(
        &self,
        x: Tensor<3>,
        rope: (&Tensor<2>, &Tensor<2>),
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
    ) -> Tensor<3> {
        let [batch, new, _] = x.dims();
        let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let split = |t: Tensor<3>, heads| t.reshape([batch, new, heads, hd]).swap_dims(1, 2);
        let q = apply_rope(split(self.q_proj.forward(x.clone()), h), rope); // [b, h, new, hd]
        let k = apply_rope(split(self.k_proj.forward(x.clone()), kvh), rope); // [b, kvh, new, hd]
        let v = split(self.v_proj.forward(x), kvh); // [b, kvh, new, hd]

        let (k, v) = match cache {
            Some(slot) => {
                let kv = match slot.take() {
                    Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
                    None => (k, v),
                };
                *slot = Some(kv.clone());
                kv
            }
            None => (k, v),
        };
        let (k, v) = (repeat_kv(k, h / kvh), repeat_kv(v, h / kvh)); // [b, h, len, hd]

        // Causal with the boundary at the bottom right: new token i sees every cached position
        // and the new ones up to itself.
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: true,
        };
        let out = attention(q, k, v, None, None, options); // [b, h, new, hd]
        self.o_proj
            .forward(out.swap_dims(1, 2).reshape([batch, new, h * hd]))
    }
}

/// # Shapes
/// - x: `[batch, kv_heads, len, head_dim]` -> `[batch, kv_heads * times, len, head_dim]`
fn repeat_kv(x: Tensor<4>, times: usize) -> Tensor<4> {
    if times == 1 {
        return x;
    }
    let [b, kvh, len, hd] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kvh, times, len, hd])
        .reshape([b, kvh * times, len, hd])
}

/// Rotates each head's two halves by the position's angles (the "rotate half" convention of
/// Hugging Face's Llama).
///
/// # Shapes
/// - x: `[batch, heads, new, head_dim]`, cos/sin: `[new, head_dim / 2]` -> same as x
fn apply_rope(x: Tensor<4>, (cos, sin): (&Tensor<2>, &Tensor<2>)) -> Tensor<4> {
    let half = x.dims()[3] / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.narrow(3, half, half);
    let (cos, sin) = (cos.clone().unsqueeze::<4>(), sin.clone().unsqueeze::<4>()); // [1, 1, new, half]
    let r1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
    let r2 = x2 * cos + x1 * sin;
    Tensor::cat(vec![r1, r2], 3)
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    /// # Shapes
    /// - x: `[batch, new, hidden]` -> `[batch, new, hidden]`
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.down_proj
            .forward(silu(self.gate_proj.forward(x.clone())) * self.up_proj.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct Block {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

#[derive(Module, Debug)]
pub struct Transformer {
    pub embed_tokens: Embedding,
    pub layers: Vec<Block>,
    pub norm: RmsNorm,
    /// `None` when the output layer is the transposed embedding (tied).
    pub lm_head: Option<Linear>,
    #[module(skip)]
    pub config: TransformerConfig,
    /// cos and sin of every position's rotary angles: `[context_len, head_dim / 2]`; constant
    /// tensors, not parameters (they follow the model's device but are never saved).
    rope_cos: Tensor<2>,
    rope_sin: Tensor<2>,
}

/// Where a model's tensors come from while it is built: drawn fresh, or read from a checkpoint
/// by name. `std` is the spread of a fresh draw (a checkpoint ignores it).
trait ParamSource {
    /// `[rows, cols]` as stored (the embedding).
    fn matrix(&mut self, name: &str, rows: usize, cols: usize, std: f64) -> Result<Tensor<2>>;
    /// A linear layer's weight, returned `[d_in, d_out]`.
    fn linear(&mut self, name: &str, d_in: usize, d_out: usize, std: f64) -> Result<Tensor<2>>;
    /// A norm gain (fresh: ones) or a bias (fresh: zeros).
    fn vector(&mut self, name: &str, len: usize, fresh: f32) -> Result<Tensor<1>>;
}

/// Fresh weights from a seeded generator.
struct Fresh<'a> {
    rng: ChaCha8Rng,
    device: &'a Device,
}

impl ParamSource for Fresh<'_> {
    fn matrix(&mut self, _: &str, rows: usize, cols: usize, std: f64) -> Result<Tensor<2>> {
        let values: Vec<f32> = (0..rows * cols)
            .map(|_| (gaussian(&mut self.rng) * std) as f32)
            .collect();
        Ok(Tensor::from_data(
            TensorData::new(values, [rows, cols]),
            self.device,
        ))
    }

    fn linear(&mut self, name: &str, d_in: usize, d_out: usize, std: f64) -> Result<Tensor<2>> {
        self.matrix(name, d_in, d_out, std)
    }

    fn vector(&mut self, _: &str, len: usize, fresh: f32) -> Result<Tensor<1>> {
        Ok(Tensor::full([len], fresh, self.device))
    }
}

impl ParamSource for (&mut Weights, &Device) {
    fn matrix(&mut self, name: &str, rows: usize, cols: usize, _: f64) -> Result<Tensor<2>> {
        self.0.matrix(name, rows, cols, self.1)
    }

    fn linear(&mut self, name: &str, d_in: usize, d_out: usize, _: f64) -> Result<Tensor<2>> {
        self.0.linear(name, d_in, d_out, self.1)
    }

    fn vector(&mut self, name: &str, len: usize, _: f32) -> Result<Tensor<1>> {
        self.0.vector(name, len, self.1)
    }
}

impl Transformer {
    /// A freshly initialised model (GPT-2 style: normal weights of std 0.02, the residual
    /// projections scaled down by the depth), drawn from its own seeded generator so that the
    /// same seed gives the same weights whatever else the process does.
    pub fn init(config: &TransformerConfig, device: &Device, seed: u64) -> Result<Self> {
        Self::build(
            config,
            device,
            &mut Fresh {
                rng: ChaCha8Rng::seed_from_u64(seed),
                device,
            },
        )
    }

    /// Builds the model from named weights (Hugging Face Llama names, `[out, in]` linear
    /// matrices). Every tensor must be present with the right shape, and none left over.
    pub fn load(
        config: &TransformerConfig,
        weights: &mut Weights,
        device: &Device,
    ) -> Result<Self> {
        let model = Self::build(config, device, &mut (&mut *weights, device))?;
        weights.finish()?;
        Ok(model)
    }

    /// Walks the architecture, taking each tensor from `source` under its checkpoint name.
    fn build(
        config: &TransformerConfig,
        device: &Device,
        source: &mut dyn ParamSource,
    ) -> Result<Self> {
        config.validate()?;
        let std = 0.02;
        let residual_std = std / (2.0 * config.num_layers as f64).sqrt();
        let (h, q, kv, i, v) = (
            config.hidden_size,
            config.num_heads * config.head_dim,
            config.num_kv_heads * config.head_dim,
            config.intermediate_size,
            config.vocab_size,
        );
        let linear = |src: &mut dyn ParamSource,
                      name: &str,
                      d_in: usize,
                      d_out: usize,
                      std: f64,
                      bias: bool|
         -> Result<Linear> {
            Ok(Linear {
                weight: Param::from_tensor(src.linear(
                    &format!("{name}.weight"),
                    d_in,
                    d_out,
                    std,
                )?),
                bias: if bias {
                    Some(Param::from_tensor(src.vector(
                        &format!("{name}.bias"),
                        d_out,
                        0.0,
                    )?))
                } else {
                    None
                },
            })
        };
        let norm = |src: &mut dyn ParamSource, name: &str| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: Param::from_tensor(src.vector(&format!("{name}.weight"), h, 1.0)?),
                eps: config.rms_norm_eps,
            })
        };
        let embed = source.matrix("model.embed_tokens.weight", v, h, std)?;
        let bias = config.attention_bias;
        let mut layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let p = format!("model.layers.{l}");
            layers.push(Block {
                input_layernorm: norm(source, &format!("{p}.input_layernorm"))?,
                self_attn: Attention {
                    q_proj: linear(source, &format!("{p}.self_attn.q_proj"), h, q, std, bias)?,
                    k_proj: linear(source, &format!("{p}.self_attn.k_proj"), h, kv, std, bias)?,
                    v_proj: linear(source, &format!("{p}.self_attn.v_proj"), h, kv, std, bias)?,
                    o_proj: linear(
                        source,
                        &format!("{p}.self_attn.o_proj"),
                        q,
                        h,
                        residual_std,
                        config.output_bias,
                    )?,
                    num_heads: config.num_heads,
                    num_kv_heads: config.num_kv_heads,
                    head_dim: config.head_dim,
                },
                post_attention_layernorm: norm(source, &format!("{p}.post_attention_layernorm"))?,
                mlp: Mlp {
                    gate_proj: linear(source, &format!("{p}.mlp.gate_proj"), h, i, std, false)?,
                    up_proj: linear(source, &format!("{p}.mlp.up_proj"), h, i, std, false)?,
                    down_proj: linear(
                        source,
                        &format!("{p}.mlp.down_proj"),
                        i,
                        h,
                        residual_std,
                        false,
                    )?,
                },
            });
        }
        let norm_out = norm(source, "model.norm")?;
        let lm_head = if config.tie_embeddings {
            None
        } else {
            Some(linear(source, "lm_head", h, v, std, false)?)
        };
        let (rope_cos, rope_sin) = rope_tables(config, device);
        Ok(Self {
            embed_tokens: Embedding {
                weight: Param::from_tensor(embed),
            },
            layers,
            norm: norm_out,
            lm_head,
            config: config.clone(),
            rope_cos,
            rope_sin,
        })
    }

    /// Every weight under its checkpoint name, as stored: linear matrices `[out, in]`.
    pub fn named_tensors(&self) -> Vec<(String, TensorData)> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            self.embed_tokens.weight.val().into_data(),
        )];
        let linear = |out: &mut Vec<(String, TensorData)>, name: String, l: &Linear| {
            out.push((
                format!("{name}.weight"),
                l.weight.val().transpose().into_data(),
            ));
            if let Some(b) = &l.bias {
                out.push((format!("{name}.bias"), b.val().into_data()));
            }
        };
        let norm = |out: &mut Vec<(String, TensorData)>, name: String, n: &RmsNorm| {
            out.push((format!("{name}.weight"), n.weight.val().into_data()));
        };
        for (i, b) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            norm(&mut out, format!("{p}.input_layernorm"), &b.input_layernorm);
            linear(
                &mut out,
                format!("{p}.self_attn.q_proj"),
                &b.self_attn.q_proj,
            );
            linear(
                &mut out,
                format!("{p}.self_attn.k_proj"),
                &b.self_attn.k_proj,
            );
            linear(
                &mut out,
                format!("{p}.self_attn.v_proj"),
                &b.self_attn.v_proj,
            );
            linear(
                &mut out,
                format!("{p}.self_attn.o_proj"),
                &b.self_attn.o_proj,
            );
            norm(
                &mut out,
                format!("{p}.post_attention_layernorm"),
                &b.post_attention_layernorm,
            );
            linear(&mut out, format!("{p}.mlp.gate_proj"), &b.mlp.gate_proj);
            linear(&mut out, format!("{p}.mlp.up_proj"), &b.mlp.up_proj);
            linear(&mut out, format!("{p}.mlp.down_proj"), &b.mlp.down_proj);
        }
        norm(&mut out, "model.norm".to_string(), &self.norm);
        if let Some(head) = &self.lm_head {
            linear(&mut out, "lm_head".to_string(), head);
        }
        out
    }

    pub fn device(&self) -> Device {
        self.embed_tokens.weight.val().device()
    }

    /// The final hidden states for `tokens` fed after what `cache` holds (no cache: a whole
    /// sequence from position 0, as in training).
    ///
    /// # Shapes
    /// - tokens: `[batch, new]` -> `[batch, new, hidden]`
    pub fn hidden(&self, tokens: Tensor<2, Int>, mut cache: Option<&mut KvCache>) -> Tensor<3> {
        let [_, new] = tokens.dims();
        let start = cache.as_ref().map_or(0, |c| c.len);
        let cos = self.rope_cos.clone().narrow(0, start, new); // [new, hd/2]
        let sin = self.rope_sin.clone().narrow(0, start, new);
        let mut x = self.embed_tokens.forward(tokens); // [b, new, hidden]
        for (l, block) in self.layers.iter().enumerate() {
            let slot = cache.as_mut().map(|c| &mut c.layers[l]);
            let h = x.clone()
                + block
                    .self_attn
                    .forward(block.input_layernorm.forward(x), (&cos, &sin), slot);
            x = h.clone() + block.mlp.forward(block.post_attention_layernorm.forward(h));
        }
        if let Some(c) = cache {
            c.len += new;
        }
        self.norm.forward(x)
    }

    /// # Shapes
    /// - hidden: `[batch, n, hidden]` -> `[batch, n, vocab]`
    pub fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            // Tied. For a few rows (decoding one token) flex is 3x faster at embedding times
            // hidden^T than at hidden times the transposed embedding (a strided gemv); for many
            // rows (training, batches) the plain product is faster.
            None => {
                let embed = self.embed_tokens.weight.val(); // [vocab, hidden]
                let [b, n, _] = hidden.dims();
                if b * n < 8 {
                    let product = embed.unsqueeze::<3>().matmul(hidden.swap_dims(1, 2)); // [b, vocab, n]
                    product.swap_dims(1, 2)
                } else {
                    hidden.matmul(embed.transpose().unsqueeze())
                }
            }
        }
    }

    /// Logits for every position of whole sequences (training, evaluation).
    ///
    /// # Shapes
    /// - tokens: `[batch, len]` -> `[batch, len, vocab]`
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.head(self.hidden(tokens, None))
    }

    /// Mean cross-entropy (nats per token) of predicting `targets` from `inputs`, over the
    /// positions where `mask` is 1.
    ///
    /// # Shapes
    /// - inputs, targets, mask: `[batch, len]` -> `[1]`
    pub fn loss(
        &self,
        inputs: Tensor<2, Int>,
        targets: Tensor<2, Int>,
        mask: Tensor<2>,
    ) -> Tensor<1> {
        let [batch, len] = inputs.dims();
        let logits = self
            .forward(inputs)
            .reshape([batch * len, self.config.vocab_size]);
        let logp = log_softmax(logits, 1); // [b*len, vocab]
        let picked = logp.gather(1, targets.reshape([batch * len, 1])); // [b*len, 1]
        let mask = mask.reshape([batch * len, 1]);
        (picked * mask.clone()).sum().neg() / mask.sum()
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.num_layers)
    }
}

impl Decoder for Transformer {
    type Cache = KvCache;

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn context_len(&self) -> usize {
        self.config.context_len
    }

    fn new_cache(&self, _batch: usize) -> KvCache {
        KvCache::new(self.config.num_layers)
    }

    fn cache_len(&self, cache: &KvCache) -> usize {
        cache.len
    }

    fn forward(
        &self,
        ids: &[Vec<u32>],
        cache: &mut KvCache,
        positions: Positions,
    ) -> Result<Logits> {
        let new = check_feed(
            ids,
            self.config.vocab_size,
            cache.len,
            self.config.context_len,
        )?;
        let batch = ids.len();
        if let Some((k, _)) = cache.layers.first().and_then(|l| l.as_ref()) {
            if k.dims()[0] != batch {
                bail!(
                    "the cache holds {} sequences but {batch} were fed",
                    k.dims()[0]
                );
            }
        }
        let flat: Vec<i64> = ids.iter().flatten().map(|&id| id as i64).collect();
        let tokens =
            Tensor::<2, Int>::from_data(TensorData::new(flat, [batch, new]), &self.device());
        let hidden = self.hidden(tokens, Some(cache)); // [b, new, hidden]
        let (hidden, n) = match positions {
            Positions::All => (hidden, new),
            Positions::Last => (hidden.narrow(1, new - 1, 1), 1),
        };
        let logits = self.head(hidden); // [b, n, vocab]
        let data = logits
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("cannot read logits: {e:?}"))?;
        Logits::new(batch, n, self.config.vocab_size, data)
    }
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.r#gen::<f64>(); // in (0, 1]
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// cos and sin of `position * inv_freq` for every position of the context, computed in f64.
fn rope_tables(config: &TransformerConfig, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let half = config.head_dim / 2;
    let inv_freq: Vec<f64> = (0..half)
        .map(|i| {
            let freq = 1.0
                / config
                    .rope_theta
                    .powf(2.0 * i as f64 / config.head_dim as f64);
            match &config.rope_scaling {
                Some(s) => llama3_scale(freq, s),
                None => freq,
            }
        })
        .collect();
    let n = config.context_len;
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for pos in 0..n {
        for f in &inv_freq {
            // Hugging Face rounds the frequencies to f32 before multiplying; so do we.
            let angle = (pos as f32 * *f as f32) as f64;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (
        Tensor::from_data(TensorData::new(cos, [n, half]), device),
        Tensor::from_data(TensorData::new(sin, [n, half]), device),
    )
}

/// Llama 3's rescaling: long wavelengths are slowed by `factor`, short ones kept, the band in
/// between interpolated.
fn llama3_scale(freq: f64, s: &crate::config::Llama3RopeScaling) -> f64 {
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
