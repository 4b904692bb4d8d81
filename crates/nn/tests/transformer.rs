//! The transformer against itself: cached decoding equals a full forward pass, and a model
//! written to a folder reads back to the same logits.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Tensor};
use jielong_core::{Decoder, Positions};
use jielong_nn::{ModelFolder, Transformer, TransformerConfig, burn, save_native};

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
    ]
}

fn sequence(n: usize, vocab: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 7 + 3) % vocab).collect()
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
        let mut cache = model.new_cache();
        let full = Decoder::forward(&model, &batch, &mut cache, Positions::All).unwrap();
        let spread = full.data.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(spread > 1.0, "logits too flat to test anything: {spread}");

        // Feed the same tokens in uneven chunks with a cache.
        let mut cache = model.new_cache();
        let mut pos = 0;
        for chunk in [5, 1, 1, 9, 1, 13] {
            let part: Vec<Vec<u32>> = batch.iter().map(|s| s[pos..pos + chunk].to_vec()).collect();
            let step = Decoder::forward(&model, &part, &mut cache, Positions::All).unwrap();
            for b in 0..2 {
                for t in 0..chunk {
                    let d = max_diff(step.row(b, t), full.row(b, pos + t));
                    assert!(d < 1e-4, "position {} differs by {d}", pos + t);
                }
            }
            pos += chunk;
            assert_eq!(model.cache_len(&cache), pos);
        }
        // Positions::Last returns the last row only.
        let mut cache = model.new_cache();
        let last = Decoder::forward(&model, &batch, &mut cache, Positions::Last).unwrap();
        assert!(max_diff(last.last(1), full.last(1)) < 1e-4);
    }
}

#[test]
fn overlong_and_out_of_vocabulary_feeds_are_errors() {
    let config = &configs()[0];
    let model = spread_model(config, 2);
    let mut cache = model.new_cache();
    let err = Decoder::forward(&model, &[vec![1; 49]], &mut cache, Positions::Last).unwrap_err();
    assert!(err.to_string().contains("context"), "{err}");
    let err = Decoder::forward(&model, &[vec![37]], &mut cache, Positions::Last).unwrap_err();
    assert!(err.to_string().contains("vocabulary"), "{err}");
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
        let a = Decoder::forward(&model, &ids, &mut model.new_cache(), Positions::All).unwrap();
        let b = Decoder::forward(&loaded, &ids, &mut loaded.new_cache(), Positions::All).unwrap();
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
