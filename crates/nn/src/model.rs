//! The one transformer: decoder-only, pre-norm, RMSNorm, rotary positions, SwiGLU MLP,
//! grouped-query attention, optional tied embeddings, and for class-conditional models an
//! optional second embedding of the sequence's first token added at every position
//! (`first_token_condition`). Field names follow Hugging Face's Llama checkpoints so that weights
//! load by name.

use anyhow::Result;
use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::{Device, Int, Tensor, TensorData};
use jielong_core::{Decoder, Feed, Logits, Positions, check_feeds, rows_returned};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::TransformerConfig;
use crate::fused;
use crate::walk;
use crate::weights::Checkpoint;

/// Keys and values of every position one sequence was fed, per layer:
/// `[1, len, kv_heads, head_dim]` (burn's path: the reference, training and wgpu).
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
    /// The sequence's first token, once fed, for a model conditioned on it: `[1, 1]` (`[n, 1]`
    /// for `n` sequences stacked as a batch).
    first: Option<Tensor<2, Int>>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
            first: None,
        }
    }

    /// Number of positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position from `len` on.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        for slot in &mut self.layers {
            *slot = slot
                .take()
                .filter(|_| len > 0)
                .map(|(k, v)| (k.narrow(1, 0, len), v.narrow(1, 0, len)));
        }
        if len == 0 {
            self.first = None;
        }
        self.len = len;
    }

    /// The caches of sequences of equal length as one batch `[n, len, kv_heads, head_dim]`.
    fn stack(caches: &[&KvCache]) -> KvCache {
        let layers = (0..caches[0].layers.len())
            .map(|l| {
                let parts: Vec<&(Tensor<4>, Tensor<4>)> =
                    caches.iter().filter_map(|c| c.layers[l].as_ref()).collect();
                (parts.len() == caches.len()).then(|| {
                    let ks = parts.iter().map(|p| p.0.clone()).collect();
                    let vs = parts.iter().map(|p| p.1.clone()).collect();
                    (Tensor::cat(ks, 0), Tensor::cat(vs, 0))
                })
            })
            .collect();
        let firsts: Option<Vec<Tensor<2, Int>>> = caches.iter().map(|c| c.first.clone()).collect();
        KvCache {
            layers,
            len: caches[0].len,
            first: firsts.map(|f| Tensor::cat(f, 0)),
        }
    }

    /// Sequence `i` of a stacked batch.
    fn unstack(&self, i: usize) -> KvCache {
        KvCache {
            layers: self
                .layers
                .iter()
                .map(|slot| {
                    slot.as_ref()
                        .map(|(k, v)| (k.clone().narrow(0, i, 1), v.clone().narrow(0, i, 1)))
                })
                .collect(),
            len: self.len,
            first: self.first.as_ref().map(|f| f.clone().narrow(0, i, 1)),
        }
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
        fused::rms_norm(x, self.weight.val(), self.eps)
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
        (cos, sin): (&Tensor<2>, &Tensor<2>),
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
    ) -> Tensor<3> {
        let [batch, new, _] = x.dims();
        let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let heads = |t: Tensor<3>, n| t.reshape([batch, new, n, hd]);
        let q = fused::rope(heads(rows(&self.q_proj, x.clone()), h), cos, sin); // [b, new, h, hd]
        let k = fused::rope(heads(rows(&self.k_proj, x.clone()), kvh), cos, sin); // [b, new, kvh, hd]
        let v = heads(rows(&self.v_proj, x), kvh); // [b, new, kvh, hd]

        let (k, v) = match cache {
            Some(slot) => {
                let kv = match slot.take() {
                    Some((pk, pv)) => (Tensor::cat(vec![pk, k], 1), Tensor::cat(vec![pv, v], 1)),
                    None => (k, v),
                };
                *slot = Some(kv.clone());
                kv
            }
            None => (k, v),
        }; // [b, len, kvh, hd]
        let out = fused::attention(q, k, v); // [b, new, h, hd]
        rows(&self.o_proj, out.reshape([batch, new, h * hd]))
    }
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
        rows(
            &self.down_proj,
            fused::silu_mul(rows(&self.gate_proj, x.clone()), rows(&self.up_proj, x)),
        )
    }
}

/// A linear layer over every row of a batch as one matrix product (given a 3-D input, flex
/// multiplies batch by batch and sums the weight's gradient over the batch afterwards).
///
/// # Shapes
/// - x: `[batch, len, in]` -> `[batch, len, out]`
fn rows(linear: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, n, d] = x.dims();
    let y = fused::linear(x.reshape([b * n, d]), linear.weight.val(), false); // [b * len, out]
    let y = match &linear.bias {
        Some(bias) => y + bias.val().unsqueeze(),
        None => y,
    };
    let out = y.dims()[1];
    y.reshape([b, n, out])
}

/// Dropout for one training step: zeroes a random share `rate` of a tensor's elements and
/// scales the others by `1 / (1 - rate)`. The masks are drawn on the CPU from `(seed, site)`
/// alone, so a step draws the same ones on every run, after a resume and on any device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    pub rate: f64,
    pub seed: u64,
}

impl Dropout {
    /// `site` names the place in the network; each place gets its own mask.
    ///
    /// # Shapes
    /// - x: `[batch, len, hidden]` -> same
    pub fn apply(&self, x: Tensor<3>, site: usize) -> Tensor<3> {
        if self.rate <= 0.0 {
            return x;
        }
        let dims = x.dims();
        let keep = 1.0 - self.rate;
        let scale = (1.0 / keep) as f32;
        let mut rng = ChaCha8Rng::seed_from_u64(
            self.seed ^ (site as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let mask: Vec<f32> = (0..dims.iter().product::<usize>())
            .map(|_| {
                if rng.r#gen::<f64>() < keep {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        let device = x.device();
        x * Tensor::from_data(TensorData::new(mask, dims), &device)
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
    /// Added at every position: the embedding of the sequence's first token
    /// (`first_token_condition`; `None` otherwise).
    pub condition_embed: Option<Embedding>,
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

impl Transformer {
    /// A freshly initialised model (GPT-2 style: normal weights of std 0.02, the residual
    /// projections scaled down by the depth), drawn from its own seeded generator so that the
    /// same seed gives the same weights whatever else the process does.
    pub fn init(config: &TransformerConfig, device: &Device, seed: u64) -> Result<Self> {
        let mut fresh = walk::Fresh::new(config, seed, device);
        Ok(Self::skeleton(config, device)?.map(&mut fresh))
    }

    /// Builds the model from named weights (Hugging Face Llama names, `[out, in]` linear
    /// matrices). Every tensor must be present with the right shape, and none left over.
    pub fn load(
        config: &TransformerConfig,
        weights: &mut dyn Checkpoint,
        device: &Device,
    ) -> Result<Self> {
        let mut load = walk::Load::new(weights, device);
        let model = Self::skeleton(config, device)?.map(&mut load);
        load.finish()?;
        weights.finish()?;
        Ok(model)
    }

    /// Every weight under its checkpoint name, as stored: linear matrices `[out, in]`.
    pub fn named_tensors(&self) -> Vec<(String, TensorData)> {
        let mut save = walk::Save::default();
        self.visit(&mut save);
        save.tensors
    }

    /// The architecture with every parameter declared but none allocated: the one place that
    /// says which tensors the model has and their shapes. Their checkpoint names are the field
    /// paths (see [`walk`]), so a walk over it initialises, loads, saves or counts them.
    pub(crate) fn skeleton(config: &TransformerConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let (h, q, kv, i, v) = (
            config.hidden_size,
            config.num_heads * config.head_dim,
            config.num_kv_heads * config.head_dim,
            config.intermediate_size,
            config.vocab_size,
        );
        let linear = |d_in: usize, d_out: usize, bias: bool| Linear {
            weight: walk::declare([d_in, d_out], device),
            bias: bias.then(|| walk::declare([d_out], device)),
        };
        let norm = || RmsNorm {
            weight: walk::declare([h], device),
            eps: config.rms_norm_eps,
        };
        let bias = config.attention_bias;
        let layers = (0..config.num_layers)
            .map(|_| Block {
                input_layernorm: norm(),
                self_attn: Attention {
                    q_proj: linear(h, q, bias),
                    k_proj: linear(h, kv, bias),
                    v_proj: linear(h, kv, bias),
                    o_proj: linear(q, h, config.output_bias),
                    num_heads: config.num_heads,
                    num_kv_heads: config.num_kv_heads,
                    head_dim: config.head_dim,
                },
                post_attention_layernorm: norm(),
                mlp: Mlp {
                    gate_proj: linear(h, i, false),
                    up_proj: linear(h, i, false),
                    down_proj: linear(i, h, false),
                },
            })
            .collect();
        let (rope_cos, rope_sin) = rope_tables(config, device);
        Ok(Self {
            embed_tokens: Embedding {
                weight: walk::declare([v, h], device),
            },
            condition_embed: config.first_token_condition.then(|| Embedding {
                weight: walk::declare([v, h], device),
            }),
            layers,
            norm: norm(),
            lm_head: (!config.tie_embeddings).then(|| linear(h, v, false)),
            config: config.clone(),
            rope_cos,
            rope_sin,
        })
    }

    pub fn device(&self) -> Device {
        self.embed_tokens.weight.val().device()
    }

    /// The final hidden states for `tokens` fed after what `cache` holds (no cache: a whole
    /// sequence from position 0, as in training).
    ///
    /// # Shapes
    /// - tokens: `[batch, new]` -> `[batch, new, hidden]`
    pub fn hidden(&self, tokens: Tensor<2, Int>, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.hidden_with(tokens, cache, None)
    }

    /// [`Transformer::hidden`], with `dropout` applied to the embeddings and to the output of
    /// every attention and MLP block before it joins the residual stream (training only).
    fn hidden_with(
        &self,
        tokens: Tensor<2, Int>,
        mut cache: Option<&mut KvCache>,
        dropout: Option<&Dropout>,
    ) -> Tensor<3> {
        let [_, new] = tokens.dims();
        let start = cache.as_ref().map_or(0, |c| c.len);
        let cos = self.rope_cos.clone().narrow(0, start, new); // [new, hd/2]
        let sin = self.rope_sin.clone().narrow(0, start, new);
        let drop = |x: Tensor<3>, site: usize| match dropout {
            Some(d) => d.apply(x, site),
            None => x,
        };
        let mut x = self.embed_tokens.forward(tokens.clone()); // [b, new, hidden]
        if let Some(condition) = &self.condition_embed {
            // The first token: in this feed, or held by the cache since it was fed.
            let first = cache
                .as_ref()
                .and_then(|c| c.first.clone())
                .unwrap_or_else(|| tokens.narrow(1, 0, 1)); // [b, 1]
            if let Some(c) = cache.as_mut() {
                c.first = Some(first.clone());
            }
            x = x + condition.forward(first); // + [b, 1, hidden], at every position
        }
        let mut x = drop(x, 0);
        for (l, block) in self.layers.iter().enumerate() {
            let slot = cache.as_mut().map(|c| &mut c.layers[l]);
            let attn = block.self_attn.forward(
                block.input_layernorm.forward(x.clone()),
                (&cos, &sin),
                slot,
            );
            let h = x + drop(attn, 2 * l + 1);
            let mlp = block
                .mlp
                .forward(block.post_attention_layernorm.forward(h.clone()));
            x = h + drop(mlp, 2 * l + 2);
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
            Some(head) => rows(head, hidden),
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
                    let vocab = embed.dims()[0];
                    let rows = hidden.reshape([b * n, self.config.hidden_size]);
                    fused::linear(rows, embed, true).reshape([b, n, vocab])
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
    /// positions where `mask` is 1, with a training step's `dropout` (`None` to evaluate).
    ///
    /// # Shapes
    /// - inputs, targets, mask: `[batch, len]` -> `[1]`
    pub fn loss(
        &self,
        inputs: Tensor<2, Int>,
        targets: Tensor<2, Int>,
        mask: Tensor<2>,
        dropout: Option<&Dropout>,
    ) -> Tensor<1> {
        let [batch, len] = inputs.dims();
        let hidden = self
            .hidden_with(inputs, None, dropout)
            .reshape([batch * len, self.config.hidden_size]);
        let (weight, transposed) = match &self.lm_head {
            Some(head) => (head.weight.val(), false), // [hidden, vocab]
            None => (self.embed_tokens.weight.val(), true), // tied: [vocab, hidden]
        };
        let (targets, mask) = (targets.reshape([batch * len]), mask.reshape([batch * len]));
        fused::cross_entropy(hidden, weight, transposed, targets, mask)
    }

    /// Runs sequences of equal cached and new lengths as one burn batch.
    ///
    /// # Shapes
    /// - returns `[n, rows, vocab]` flattened, rows = 1 (`Last`) or the new length (`All`)
    fn forward_group(
        &self,
        ids: &[&[u32]],
        caches: &mut [&mut KvCache],
        positions: Positions,
    ) -> Result<Vec<f32>> {
        let (batch, new) = (ids.len(), ids[0].len());
        let mut stacked = if batch == 1 {
            std::mem::replace(caches[0], KvCache::new(0))
        } else {
            KvCache::stack(&caches.iter().map(|c| &**c).collect::<Vec<_>>())
        };
        let flat: Vec<i64> = ids
            .iter()
            .flat_map(|r| r.iter())
            .map(|&id| id as i64)
            .collect();
        let tokens =
            Tensor::<2, Int>::from_data(TensorData::new(flat, [batch, new]), &self.device());
        let hidden = self.hidden(tokens, Some(&mut stacked)); // [b, new, hidden]
        let hidden = match positions {
            Positions::All => hidden,
            Positions::Last => hidden.narrow(1, new - 1, 1),
        };
        let logits = self.head(hidden); // [b, rows, vocab]
        if batch == 1 {
            *caches[0] = stacked;
        } else {
            for (i, cache) in caches.iter_mut().enumerate() {
                **cache = stacked.unstack(i);
            }
        }
        // A failure on the device (out of memory, a lost GPU) comes back here: an error, not
        // a panic.
        logits
            .try_into_data()
            .map_err(|e| anyhow::anyhow!("the device could not compute the logits: {e:?}"))?
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("cannot read logits: {e:?}"))
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

    fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.num_layers)
    }

    fn cache_len(&self, cache: &KvCache) -> usize {
        cache.len
    }

    fn truncate_cache(&self, cache: &mut KvCache, len: usize) {
        cache.truncate(len);
    }

    /// Sequences with the same cached and new lengths run together as one burn batch (the
    /// usual case: a batch of images or clips); a ragged batch runs group by group.
    fn forward(&self, feeds: &mut [Feed<'_, KvCache>], positions: Positions) -> Result<Logits> {
        let ids: Vec<&[u32]> = feeds.iter().map(|f| f.ids).collect();
        let cached: Vec<usize> = feeds.iter().map(|f| f.cache.len).collect();
        check_feeds(
            &ids,
            &cached,
            self.config.vocab_size,
            self.config.context_len,
        )?;
        let rows = rows_returned(&ids, positions);
        let vocab = self.config.vocab_size;
        // Where each sequence's logits start in the output.
        let mut offsets = Vec::with_capacity(rows.len());
        let mut total = 0;
        for r in &rows {
            offsets.push(total * vocab);
            total += r;
        }
        let mut data = vec![0.0f32; total * vocab];
        let mut groups: Vec<((usize, usize), Vec<usize>)> = Vec::new();
        for (i, key) in cached
            .iter()
            .zip(&ids)
            .map(|(&c, r)| (c, r.len()))
            .enumerate()
        {
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        // burn's attention holds each batch's `[b, heads, new, cached + new]` scores in one
        // buffer: bound it, so that scoring thousands of windows at once stays within a GPU's
        // largest storage buffer (128 MiB by default in WebGPU) and a modest amount of memory.
        let batches: Vec<Vec<usize>> = groups
            .into_iter()
            .flat_map(|((cached, new), members)| {
                let scores = self.config.num_heads * new * (cached + new) * size_of::<f32>();
                let most = (MAX_SCORE_BYTES / scores.max(1)).max(1);
                members
                    .chunks(most)
                    .map(<[usize]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect();
        for members in batches {
            let group_ids: Vec<&[u32]> = members.iter().map(|&i| ids[i]).collect();
            let mut group_caches: Vec<&mut KvCache> = Vec::with_capacity(members.len());
            for (i, f) in feeds.iter_mut().enumerate() {
                if members.contains(&i) {
                    group_caches.push(&mut *f.cache);
                }
            }
            let out = self.forward_group(&group_ids, &mut group_caches, positions)?;
            let per = out.len() / members.len();
            for (k, &i) in members.iter().enumerate() {
                data[offsets[i]..offsets[i] + per].copy_from_slice(&out[k * per..(k + 1) * per]);
            }
        }
        Ok(Logits::new(vocab, &rows, data))
    }
}

/// The most bytes of attention scores one burn batch of [`Decoder::forward`] may hold.
const MAX_SCORE_BYTES: usize = 64 << 20;

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
pub(crate) fn llama3_scale(freq: f64, s: &crate::config::Llama3RopeScaling) -> f64 {
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
