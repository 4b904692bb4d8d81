//! The transformer against itself: cached decoding equals a full forward pass, and a model
//! written to a folder reads back to the same logits.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Tensor};
use jielong_core::{Decoder, Feed, Logits, Positions};
use jielong_nn::{Dropout, ModelFolder, Transformer, TransformerConfig, burn, save_native};

/// Random weights scaled up so that logits have real spread (the default init gives
/// near-uniform logits, which would hide mistakes) and norm gains that are not all 1.
fn spread_model(config: &TransformerConfig, seed: u64) -> Transformer {
    let device = Device::flex();
    device.seed(seed);
    struct Spread;
    impl ModuleMapper for Spread {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, t, mapper) = param.consume();
            let t = if D == 1 {
                Tensor::random(t.shape(), Distribution::Uniform(0.5, 1.5), &t.device())
            } else {
                t * 12.0
            };
            Param::from_mapped_value(id, t, mapper)
        }
    }
    Transformer::init(config, &device, seed)
        .unwrap()
        .map(&mut Spread)
}

fn configs() -> Vec<TransformerConfig> {
    vec![
        TransformerConfig::small(37, 32, 2, 4, 48),
        // Grouped-query attention, a head_dim not equal to hidden/heads, biases, tied embeddings.
        TransformerConfig::new(41, 24, 40, 3, 6, 2, 6, 48)
            .with_attention_bias(true)
            .with_output_bias(true)
            .with_tie_embeddings(true),
        // Every position conditioned on its sequence's first token.
        TransformerConfig::small(37, 32, 2, 4, 48).with_first_token_condition(true),
    ]
}

fn sequence(n: usize, vocab: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 7 + 3) % vocab).collect()
}

/// One forward pass of a batch, each row with its own cache.
fn forward(
    model: &Transformer,
    rows: &[Vec<u32>],
    caches: &mut [jielong_nn::KvCache],
    positions: Positions,
) -> anyhow::Result<Logits> {
    let mut feeds: Vec<Feed<_>> = rows
        .iter()
        .zip(caches.iter_mut())
        .map(|(r, c)| Feed::new(r, c))
        .collect();
    Decoder::forward(model, &mut feeds, positions)
}

fn caches(model: &Transformer, n: usize) -> Vec<jielong_nn::KvCache> {
    (0..n).map(|_| model.new_cache()).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn cached_and_uncached_logits_agree() {
    for config in configs() {
        let model = spread_model(&config, 1);
        let ids = sequence(30, config.vocab_size as u32);
        let batch = vec![ids.clone(), ids.iter().rev().copied().collect::<Vec<_>>()];
        let full = forward(&model, &batch, &mut caches(&model, 2), Positions::All).unwrap();
        let spread = full.data.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(spread > 1.0, "logits too flat to test anything: {spread}");

        // Feed the same tokens in uneven chunks with a cache.
        let mut cache = caches(&model, 2);
        let mut pos = 0;
        for chunk in [5, 1, 1, 9, 1, 13] {
            let part: Vec<Vec<u32>> = batch.iter().map(|s| s[pos..pos + chunk].to_vec()).collect();
            let step = forward(&model, &part, &mut cache, Positions::All).unwrap();
            for b in 0..2 {
                for t in 0..chunk {
                    let d = max_diff(step.row(b, t), full.row(b, pos + t));
                    assert!(d < 1e-4, "position {} differs by {d}", pos + t);
                }
            }
            pos += chunk;
            assert_eq!(model.cache_len(&cache[1]), pos);
        }
        // Positions::Last returns the last row only.
        let last = forward(&model, &batch, &mut caches(&model, 2), Positions::Last).unwrap();
        assert_eq!(last.rows(1), 1);
        assert!(max_diff(last.last(1), full.last(1)) < 1e-4);
    }
}

#[test]
fn a_ragged_batch_gives_each_sequence_what_it_gets_alone() {
    for config in configs() {
        let model = spread_model(&config, 5);
        let v = config.vocab_size as u32;
        // Three sequences: cached lengths 0, 7 and 3; new lengths 4, 1 and 1.
        let histories = [
            sequence(4, v),
            sequence(8, v),
            sequence(4, v).into_iter().rev().collect::<Vec<_>>(),
        ];
        let cached = [0usize, 7, 3];
        let mut together = caches(&model, 3);
        for (c, (h, &n)) in together.iter_mut().zip(histories.iter().zip(&cached)) {
            if n > 0 {
                forward(
                    &model,
                    &[h[..n].to_vec()],
                    std::slice::from_mut(c),
                    Positions::Last,
                )
                .unwrap();
            }
        }
        let news: Vec<Vec<u32>> = histories
            .iter()
            .zip(&cached)
            .map(|(h, &n)| h[n..].to_vec())
            .collect();
        let out = forward(&model, &news, &mut together, Positions::All).unwrap();
        for (s, h) in histories.iter().enumerate() {
            let alone =
                forward(&model, &[h.clone()], &mut caches(&model, 1), Positions::All).unwrap();
            assert_eq!(out.rows(s), news[s].len());
            for r in 0..news[s].len() {
                let d = max_diff(out.row(s, r), alone.row(0, cached[s] + r));
                assert!(d < 1e-4, "sequence {s} row {r} differs by {d}");
            }
        }
    }
}

#[test]
fn checkpoint_names_are_hugging_face_names_and_counts_match() {
    let config = TransformerConfig::new(41, 24, 40, 2, 6, 2, 6, 48).with_attention_bias(true);
    let model = Transformer::init(&config, &Device::flex(), 0).unwrap();
    let tensors = model.named_tensors();
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    let mut expected = vec!["model.embed_tokens.weight".to_string()];
    for l in 0..2 {
        let p = format!("model.layers.{l}");
        expected.push(format!("{p}.input_layernorm.weight"));
        for proj in ["q_proj", "k_proj", "v_proj"] {
            expected.push(format!("{p}.self_attn.{proj}.weight"));
            expected.push(format!("{p}.self_attn.{proj}.bias"));
        }
        expected.push(format!("{p}.self_attn.o_proj.weight"));
        expected.push(format!("{p}.post_attention_layernorm.weight"));
        for proj in ["gate_proj", "up_proj", "down_proj"] {
            expected.push(format!("{p}.mlp.{proj}.weight"));
        }
    }
    expected.push("model.norm.weight".into());
    expected.push("lm_head.weight".into());
    assert_eq!(names, expected);
    // Linear weights are stored [out, in]: q_proj maps 24 wide to 6 heads x 6.
    let q = &tensors[2].1;
    assert_eq!(q.shape().to_vec(), vec![36, 24]);
    let counted: usize = tensors.iter().map(|(_, d)| d.num_elements()).sum();
    assert_eq!(config.num_params(), counted);
    assert_eq!(
        counted,
        41 * 24 * 2 + 2 * (24 * 36 + 36 + 2 * (24 * 12 + 12) + 36 * 24 + 3 * 24 * 40 + 2 * 24) + 24
    );
}

#[test]
fn overlong_and_out_of_vocabulary_feeds_are_errors() {
    let config = &configs()[0];
    let model = spread_model(config, 2);
    let mut cache = caches(&model, 1);
    let err = forward(&model, &[vec![1; 49]], &mut cache, Positions::Last).unwrap_err();
    assert!(err.to_string().contains("context"), "{err}");
    let err = forward(&model, &[vec![37]], &mut cache, Positions::Last).unwrap_err();
    assert!(err.to_string().contains("vocabulary"), "{err}");
}

#[test]
fn a_context_beyond_the_supported_length_is_refused() {
    let at_max = TransformerConfig::small(37, 16, 1, 2, jielong_nn::MAX_CONTEXT);
    at_max.validate().unwrap();
    // A mistyped context (a billion positions) would build rotary tables of gigabytes.
    let beyond = TransformerConfig::small(37, 16, 1, 2, jielong_nn::MAX_CONTEXT + 1);
    let err = beyond.validate().unwrap_err().to_string();
    assert!(err.contains("context_len"), "{err}");
}

#[test]
fn a_saved_folder_loads_to_the_same_logits_and_bad_folders_are_named() {
    for config in configs() {
        let model = spread_model(&config, 3);
        let dir = tempfile::tempdir().unwrap();
        let codec = serde_json::json!({"kind": "test"});
        save_native(dir.path(), "text", &model, &codec, &serde_json::json!({})).unwrap();
        let folder = ModelFolder::open(dir.path()).unwrap();
        assert_eq!(folder.architecture, config);
        assert_eq!(folder.codec, codec);
        let loaded = folder.load(&Device::flex()).unwrap();
        let ids = vec![sequence(20, config.vocab_size as u32)];
        let a = forward(&model, &ids, &mut caches(&model, 1), Positions::All).unwrap();
        let b = forward(&loaded, &ids, &mut caches(&loaded, 1), Positions::All).unwrap();
        assert_eq!(a.data, b.data, "weights must round-trip exactly");
    }

    // A folder whose config asks for a different shape than its weights: the tensor is named.
    let dir = tempfile::tempdir().unwrap();
    let model = spread_model(&configs()[0], 4);
    save_native(
        dir.path(),
        "text",
        &model,
        &serde_json::json!({}),
        &serde_json::json!({}),
    )
    .unwrap();
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"intermediate_size\": 88", "\"intermediate_size\": 96");
    std::fs::write(&path, text).unwrap();
    let err = format!(
        "{:#}",
        ModelFolder::open(dir.path())
            .unwrap()
            .load(&Device::flex())
            .unwrap_err()
    );
    assert!(
        err.contains("gate_proj.weight") && err.contains("shape"),
        "{err}"
    );

    // Missing weights file, corrupt weights file, not a folder.
    std::fs::write(dir.path().join("model.safetensors"), b"not safetensors").unwrap();
    let err = format!(
        "{:#}",
        ModelFolder::open(dir.path())
            .unwrap()
            .load(&Device::flex())
            .unwrap_err()
    );
    assert!(err.contains("safetensors"), "{err}");
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = format!(
        "{:#}",
        ModelFolder::open(dir.path())
            .unwrap()
            .load(&Device::flex())
            .unwrap_err()
    );
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(ModelFolder::open(&dir.path().join("nope")).is_err());
}

#[test]
fn dropout_masks_follow_their_seed_and_rate() {
    let config = TransformerConfig::small(37, 32, 2, 4, 48);
    let model = spread_model(&config, 3);
    let device = Device::flex();
    let ids = |v: Vec<u32>| {
        Tensor::<2, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(
                v.into_iter().map(i64::from).collect::<Vec<_>>(),
                [2, 24],
            ),
            &device,
        )
    };
    let inputs = sequence(48, 37);
    let targets: Vec<u32> = inputs.iter().map(|t| (t + 1) % 37).collect();
    let loss = |dropout: Option<Dropout>| {
        model
            .loss(
                ids(inputs.clone()),
                ids(targets.clone()),
                Tensor::ones([2, 24], &device),
                dropout.as_ref(),
            )
            .into_scalar::<f32>()
    };
    let plain = loss(None);
    assert_eq!(
        loss(Some(Dropout { rate: 0.0, seed: 9 })),
        plain,
        "rate 0 changes nothing"
    );
    let a = loss(Some(Dropout { rate: 0.2, seed: 9 }));
    assert_eq!(
        loss(Some(Dropout { rate: 0.2, seed: 9 })),
        a,
        "the same seed, the same masks"
    );
    assert_ne!(a, plain, "dropout 0.2 left the loss unchanged");
    assert_ne!(
        loss(Some(Dropout {
            rate: 0.2,
            seed: 10
        })),
        a,
        "another seed, other masks"
    );

    // The share zeroed and the scale of the rest, on a tensor of ones.
    let ones = Tensor::<3>::ones([4, 100, 250], &device);
    let dropped = Dropout { rate: 0.3, seed: 1 }
        .apply(ones, 0)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let zeros = dropped.iter().filter(|&&x| x == 0.0).count() as f64 / dropped.len() as f64;
    assert!((zeros - 0.3).abs() < 0.01, "zeroed {zeros}");
    assert!(
        dropped
            .iter()
            .all(|&x| x == 0.0 || (x - 1.0 / 0.7).abs() < 1e-6)
    );
}

/// A batch whose attention scores would not fit one bounded buffer (here 5 sequences of 1,024
/// tokens with 8 heads: 32 MiB each) runs in several burn batches; every sequence still gets
/// the logits it gets alone, in its own place.
#[test]
fn a_batch_split_for_its_attention_scores_keeps_each_sequence_in_place() {
    let config = TransformerConfig::new(23, 16, 24, 1, 8, 8, 2, 1024);
    let model = spread_model(&config, 9);
    let rows: Vec<Vec<u32>> = (0..5u32)
        .map(|s| (0..1024u32).map(|i| (i * (s + 2) + s) % 23).collect())
        .collect();
    let out = forward(&model, &rows, &mut caches(&model, 5), Positions::All).unwrap();
    for (s, row) in rows.iter().enumerate() {
        let alone = forward(
            &model,
            &[row.clone()],
            &mut caches(&model, 1),
            Positions::All,
        )
        .unwrap();
        for r in [0, 511, 1023] {
            let d = max_diff(out.row(s, r), alone.row(0, r));
            assert!(d < 1e-4, "sequence {s}, row {r}: {d}");
        }
    }
}
