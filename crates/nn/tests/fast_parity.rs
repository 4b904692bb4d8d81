//! The kernels path ([`FastModel`]) against burn's transformer, the reference, on the same
//! weights: every architecture variant, every weight format, cached and uncached, ragged
//! batches, thread counts, the shipped Hugging Face reference and the GGUF fixtures; and a warm
//! decode step allocates nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Tensor};
use jielong_core::{Decoder, Feed, Logits, Positions};
use jielong_nn::fast::{MAX_ROWS, Weights};
use jielong_nn::{
    Checkpoint, FastModel, Llama3RopeScaling, LoadOptions, Model, ModelFolder, RawTensor,
    Transformer, TransformerConfig, burn, save_native,
};

// ---- a per-thread allocation counter --------------------------------------------------------

/// Counts the allocations of the current thread, so that tests running beside it do not count.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations this thread makes while running `f`.
fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    (ALLOCATIONS.with(Cell::get) - before, out)
}

// ---- models and helpers ---------------------------------------------------------------------

/// Random weights scaled up so that logits have real spread (the default initialisation gives
/// near-uniform logits, which would hide mistakes), and norm gains that are not all 1.
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

/// The architecture variants: each row length a multiple of 32 (so every quantized format
/// really quantizes every matrix) unless the variant is about rows that are not.
fn variants() -> Vec<(&'static str, TransformerConfig)> {
    let llama3 = Llama3RopeScaling {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 16,
    };
    vec![
        (
            "plain",
            TransformerConfig::new(61, 64, 128, 2, 4, 4, 16, 96),
        ),
        ("gqa", TransformerConfig::new(53, 64, 96, 2, 8, 2, 8, 96)),
        // 4 heads of 24: q is 96 wide on a 64-wide model.
        (
            "head_dim",
            TransformerConfig::new(47, 64, 96, 2, 4, 2, 24, 96),
        ),
        (
            "biases",
            TransformerConfig::new(59, 64, 96, 2, 4, 2, 16, 96)
                .with_attention_bias(true)
                .with_output_bias(true),
        ),
        (
            "qwen2_biases_tied",
            TransformerConfig::new(43, 64, 96, 2, 4, 2, 16, 96)
                .with_attention_bias(true)
                .with_tie_embeddings(true),
        ),
        (
            "llama3_rope",
            TransformerConfig::new(51, 64, 96, 2, 4, 2, 16, 96)
                .with_rope_theta(500000.0)
                .with_rope_scaling(Some(llama3)),
        ),
        // 72 is not a multiple of 32: down_proj stays f32 in the block formats.
        (
            "odd_mlp",
            TransformerConfig::new(41, 64, 72, 2, 4, 4, 16, 96),
        ),
        (
            "first_token_condition",
            TransformerConfig::new(57, 64, 96, 2, 4, 2, 16, 96).with_first_token_condition(true),
        ),
    ]
}

fn sequence(n: usize, vocab: usize, salt: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 7 + salt * 13 + 3) % vocab) as u32)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// Logits of every position of `ids`, fed at once to a fresh cache.
fn all_logits<D: Decoder>(model: &D, ids: &[u32]) -> Logits {
    let mut cache = model.new_cache();
    model
        .forward(&mut [Feed::new(ids, &mut cache)], Positions::All)
        .unwrap()
}

/// `n` greedy ids after `prompt`, one token at a time with the cache.
fn greedy<D: Decoder>(model: &D, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut cache = model.new_cache();
    let mut feed = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..n {
        let logits = model
            .forward(&mut [Feed::new(&feed, &mut cache)], Positions::Last)
            .unwrap();
        let next = argmax(logits.last(0));
        out.push(next);
        feed = vec![next];
    }
    out
}

/// Named f32 tensors as a checkpoint: builds burn's model from exactly the weights the kernels
/// compute with.
struct Tensors(BTreeMap<String, (Vec<usize>, Vec<u8>)>);

impl Tensors {
    fn new(list: Vec<(String, Vec<usize>, Vec<f32>)>) -> Self {
        Tensors(
            list.into_iter()
                .map(|(n, s, v)| (n, (s, v.iter().flat_map(|x| x.to_le_bytes()).collect())))
                .collect(),
        )
    }
}

impl Checkpoint for Tensors {
    fn tensor(&mut self, name: &str, shape: &[usize]) -> anyhow::Result<RawTensor<'_>> {
        let (s, bytes) = self.0.get(name).expect("every tensor is listed");
        assert_eq!(s, shape, "{name}");
        Ok(RawTensor {
            name: name.into(),
            shape: s.clone(),
            ty: jielong_gguf::GgmlType::F32,
            data: Cow::Borrowed(bytes),
        })
    }
    fn finish(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Burn's model on the de-quantized weights of `fast`.
fn burn_twin(fast: &FastModel) -> Transformer {
    let mut tensors = Tensors::new(fast.dequantized_tensors());
    Transformer::load(fast.config(), &mut tensors, &Device::flex()).unwrap()
}

/// Logits of the kernels path and of burn on the same weights, and their greedy ids.
struct Comparison {
    max_diff: f32,
    spread: f32,
    greedy_equal: usize,
    steps: usize,
}

fn compare(fast: &FastModel, burn: &Transformer, salt: usize) -> Comparison {
    let c = fast.config();
    let ids = sequence(40, c.vocab_size, salt);
    let (a, b) = (all_logits(fast, &ids), all_logits(burn, &ids));
    let spread = b.data.iter().fold(0f32, |m, x| m.max(x.abs()));
    let steps = 40;
    let (ga, gb) = (
        greedy(fast, &ids[..8], steps),
        greedy(burn, &ids[..8], steps),
    );
    Comparison {
        max_diff: max_diff(&a.data, &b.data),
        spread,
        greedy_equal: ga.iter().zip(&gb).take_while(|(x, y)| x == y).count(),
        steps,
    }
}

// ---- parity ---------------------------------------------------------------------------------

/// f32: the kernels and burn differ only in summation order.
#[test]
fn f32_matches_burn_on_every_variant() {
    let mut report = Vec::new();
    for (name, config) in variants() {
        let burn = spread_model(&config, 11);
        let fast = FastModel::from_transformer(&burn, Weights::F32, 2).unwrap();
        assert!(fast.kept_f32().is_empty());
        let r = compare(&fast, &burn, 1);
        report.push(format!(
            "{name}: f32 max |diff| {:.2e} (logits up to {:.1}), greedy {}/{}",
            r.max_diff, r.spread, r.greedy_equal, r.steps
        ));
        assert!(r.spread > 3.0, "{name}: logits too flat to test anything");
        assert!(r.max_diff < 1e-4, "{}", report.join("\n"));
        assert_eq!(r.greedy_equal, r.steps, "{}", report.join("\n"));
    }
    println!("{}", report.join("\n"));
}

/// bf16 and the block formats against burn on the de-quantized weights: the kernels widen
/// weights to f32 exactly, so again only the summation order differs and the bound is the f32
/// one (with the same margin: logits of the spread models reach about 30-60).
#[test]
fn quantized_formats_match_burn_on_their_dequantized_weights() {
    let mut report = Vec::new();
    for (name, config) in variants() {
        let reference = spread_model(&config, 12);
        for weights in [Weights::Bf16, Weights::Q8_0, Weights::Q4_0, Weights::Q4_1] {
            let fast = FastModel::from_transformer(&reference, weights, 2).unwrap();
            let odd = config.intermediate_size % 32 != 0 && weights != Weights::Bf16;
            let kept: Vec<&str> = fast.kept_f32().iter().map(String::as_str).collect();
            if odd {
                assert_eq!(
                    kept,
                    [
                        "model.layers.0.mlp.down_proj.weight",
                        "model.layers.1.mlp.down_proj.weight"
                    ]
                );
                assert!(
                    fast.describe()
                        .ends_with("f32 kept for: layers.*.mlp.down_proj")
                );
            } else {
                assert!(kept.is_empty(), "{name} {weights}: {kept:?}");
            }
            let twin = burn_twin(&fast);
            // The weights really changed (the test would pass vacuously on f32 copies).
            let moved = max_diff(
                &all_logits(&fast, &[1, 2, 3]).data,
                &all_logits(&reference, &[1, 2, 3]).data,
            );
            assert!(
                moved > 1e-3,
                "{name} {weights}: quantization changed nothing"
            );
            let r = compare(&fast, &twin, 2);
            report.push(format!(
                "{name} {weights}: max |diff| {:.2e} (logits up to {:.1}; {moved:.2} from the f32 model), greedy {}/{}",
                r.max_diff, r.spread, r.greedy_equal, r.steps
            ));
            assert!(r.max_diff < 1e-4, "{}", report.join("\n"));
            assert_eq!(r.greedy_equal, r.steps, "{}", report.join("\n"));
        }
    }
    println!("{}", report.join("\n"));
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn json_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn load(dir: &Path, weights: Weights, threads: usize) -> Model {
    let folder = ModelFolder::open(dir).unwrap();
    let options = LoadOptions {
        device: Device::flex(),
        weights,
        threads,
    };
    let model = folder.load_model(options).unwrap();
    // The kernels path ran: no silent fallback to burn.
    assert!(matches!(model, Model::Kernels(_)), "{}", model.describe());
    model
}

/// The Hugging Face reference folder: transformers' logits to 1e-4, its 64 greedy ids exactly.
#[test]
fn hugging_face_reference_logits_and_greedy_ids() {
    let dir = root().join("../shared/reference/tiny-llama-gqa");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let model = load(&dir, Weights::Stored, 2);
    let Model::Kernels(fast) = &model else {
        unreachable!()
    };
    // An f32 folder runs in place: every matrix lies in the memory map.
    assert_eq!(fast.mapped_bytes(), fast.matrix_bytes());
    assert_eq!(model.describe(), "kernels, f32 weights, 2 threads");

    let first8 = &reference["logits_first8_positions"];
    let logits = all_logits(&model, &json_ids(&first8["input_ids"]));
    let mut worst = 0f32;
    for (p, row) in first8["values"].as_array().unwrap().iter().enumerate() {
        let want: Vec<f32> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        worst = worst.max(max_diff(logits.row(0, p), &want));
    }
    println!("tiny-llama-gqa: max |diff| to transformers {worst:.2e}");
    assert!(worst < 1e-4, "{worst}");

    let prompt = json_ids(&reference["prompt_ids"]);
    let want = json_ids(&reference["greedy_new_ids"]);
    assert_eq!(greedy(&model, &prompt, want.len()), want);
}

/// The Hugging Face fixtures (Qwen2 biases and tied embeddings; Llama 3 rope scaling, head_dim
/// and all four biases; Mistral in two bf16 shards) as stored, used in place, against
/// transformers' logits and greedy ids.
#[test]
fn hugging_face_fixtures_match_transformers() {
    let mut report = Vec::new();
    for name in [
        "qwen2-bias-tied",
        "llama3-rope-headdim",
        "mistral-sharded-bf16",
    ] {
        let dir = root().join("tests/fixtures/hf").join(name);
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        let model = load(&dir, Weights::Stored, 2);
        let Model::Kernels(fast) = &model else {
            unreachable!()
        };
        assert_eq!(
            fast.mapped_bytes(),
            fast.matrix_bytes(),
            "{name} is used in place"
        );
        let logits = all_logits(&model, &json_ids(&reference["logits"]["input_ids"]));
        let mut worst = 0f32;
        for (p, row) in reference["logits"]["values"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let want: Vec<f32> = row
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            worst = worst.max(max_diff(logits.row(0, p), &want));
        }
        let prompt = json_ids(&reference["prompt_ids"]);
        let want = json_ids(&reference["greedy_new_ids"]);
        let got = greedy(&model, &prompt, want.len());
        report.push(format!(
            "{name} ({}): max |diff| {worst:.2e}, greedy {}",
            model.describe(),
            if got == want { "equal" } else { "DIFFERS" }
        ));
        assert!(worst < 1e-4 && got == want, "{}", report.join("\n"));
    }
    println!("{}", report.join("\n"));
}

/// Every GGUF fixture run as stored (Q4_1/Q4_0/Q8_0/bf16 in place; f16, Q5 and K-quants
/// widened to f32) against transformers' logits on the same file.
#[test]
fn gguf_fixtures_match_transformers() {
    let fixtures = root().join("tests/fixtures/gguf-models");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("index.json")).unwrap())
            .unwrap();
    let mut report = Vec::new();
    for entry in index["fixtures"].as_array().unwrap() {
        let file = entry["file"].as_str().unwrap();
        let reference: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures.join(file.replace(".gguf", ".json"))).unwrap(),
        )
        .unwrap();
        let model = load(&fixtures.join(file), Weights::Stored, 2);
        let prompt = json_ids(&reference["prompt_ids"]);
        let logits = all_logits(&model, &prompt);
        let positions = json_ids(&reference["logits"]["positions"]);
        let mut worst = 0f32;
        for (row, &p) in reference["logits"]["values"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&positions)
        {
            let want: Vec<f32> = row
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            worst = worst.max(max_diff(logits.row(0, p as usize), &want));
        }
        let want = json_ids(&reference["greedy_new_ids"]);
        let got = greedy(&model, &prompt, want.len());
        report.push(format!(
            "{file} ({}): max |diff| {worst:.2e}, greedy {}",
            model.describe(),
            if got == want { "equal" } else { "DIFFERS" }
        ));
        assert!(worst < 1e-4 && got == want, "{}", report.join("\n"));
    }
    println!("{}", report.join("\n"));
}

// ---- the kernels path against itself ------------------------------------------------------

fn fast_model(config: &TransformerConfig, weights: Weights, threads: usize) -> FastModel {
    FastModel::from_transformer(&spread_model(config, 21), weights, threads).unwrap()
}

/// The same tokens at once and in uneven chunks give the same bits (the kernels compute a
/// position the same way in a prefill and in a decode step).
#[test]
fn cached_and_uncached_logits_are_identical() {
    for (name, config) in variants() {
        for weights in [Weights::F32, Weights::Q4_1] {
            let fast = fast_model(&config, weights, 2);
            let ids = sequence(30, config.vocab_size, 3);
            let full = all_logits(&fast, &ids);
            let mut cache = fast.new_cache();
            let mut pos = 0;
            for chunk in [5, 1, 1, 9, 1, 13] {
                let step = fast
                    .forward(
                        &mut [Feed::new(&ids[pos..pos + chunk], &mut cache)],
                        Positions::All,
                    )
                    .unwrap();
                for t in 0..chunk {
                    assert_eq!(
                        step.row(0, t),
                        full.row(0, pos + t),
                        "{name} {weights} {pos}+{t}"
                    );
                }
                pos += chunk;
                assert_eq!(fast.cache_len(&cache), pos);
            }
            // Rewind and feed again: the same bits.
            fast.truncate_cache(&mut cache, 12);
            let again = fast
                .forward(&mut [Feed::new(&ids[12..20], &mut cache)], Positions::Last)
                .unwrap();
            assert_eq!(again.last(0), full.row(0, 19));
        }
    }
}

/// Ragged batches of 1 to 17 sequences (different cached and new lengths, a feed longer than
/// one sub-batch) give each sequence bitwise what it gets alone.
#[test]
fn a_ragged_batch_gives_each_sequence_its_own_bits() {
    let plain = TransformerConfig::new(67, 64, 96, 2, 4, 2, 16, 320);
    // Each sequence conditioned on its own first token, held by its own cache.
    let conditioned = plain.clone().with_first_token_condition(true);
    for (config, weights) in [
        (&plain, Weights::F32),
        (&plain, Weights::Q8_0),
        (&conditioned, Weights::F32),
    ] {
        let fast = fast_model(&config, weights, 2);
        for batch in [1usize, 2, 5, 17] {
            // Sequence s: `cached` tokens already fed, then `new` tokens.
            let shape = |s: usize| {
                (
                    (s * 5) % 11,
                    1 + (s * 3) % 7 + if s == 3 { MAX_ROWS + 20 } else { 0 },
                )
            };
            let histories: Vec<Vec<u32>> = (0..batch)
                .map(|s| {
                    let (cached, new) = shape(s);
                    sequence(cached + new, config.vocab_size, s)
                })
                .collect();
            let mut caches: Vec<_> = (0..batch).map(|_| fast.new_cache()).collect();
            for (s, cache) in caches.iter_mut().enumerate() {
                let cached = shape(s).0;
                if cached > 0 {
                    fast.forward(
                        &mut [Feed::new(&histories[s][..cached], cache)],
                        Positions::Last,
                    )
                    .unwrap();
                }
            }
            for positions in [Positions::All, Positions::Last] {
                let mut together = caches.clone();
                let mut feeds: Vec<_> = together
                    .iter_mut()
                    .enumerate()
                    .map(|(s, c)| Feed::new(&histories[s][shape(s).0..], c))
                    .collect();
                let out = fast.forward(&mut feeds, positions).unwrap();
                for s in 0..batch {
                    let mut alone = caches[s].clone();
                    let single = fast
                        .forward(
                            &mut [Feed::new(&histories[s][shape(s).0..], &mut alone)],
                            positions,
                        )
                        .unwrap();
                    assert_eq!(out.rows(s), single.rows(0));
                    for r in 0..single.rows(0) {
                        assert_eq!(
                            out.row(s, r),
                            single.row(0, r),
                            "batch {batch} seq {s} row {r}"
                        );
                    }
                    assert_eq!(fast.cache_len(&together[s]), histories[s].len());
                }
            }
        }
    }
}

/// 1, 2 and 3 threads give the same bits (a model large enough that the kernels split work).
#[test]
fn logits_do_not_depend_on_the_thread_count() {
    let config = TransformerConfig::new(300, 256, 512, 2, 8, 4, 32, 128);
    let reference = spread_model(&config, 31);
    for weights in [Weights::F32, Weights::Q4_0] {
        let runs: Vec<Vec<f32>> = (1..=3)
            .map(|threads| {
                let fast = FastModel::from_transformer(&reference, weights, threads).unwrap();
                assert_eq!(fast.threads(), threads);
                let (a, b) = (sequence(60, 300, 1), sequence(3, 300, 2));
                let (mut ca, mut cb) = (fast.new_cache(), fast.new_cache());
                let mut out = all_logits(&fast, &a).data;
                fast.forward(&mut [Feed::new(&a, &mut ca)], Positions::Last)
                    .unwrap();
                let step = fast
                    .forward(
                        &mut [Feed::new(&b, &mut cb), Feed::new(&b[..1], &mut ca)],
                        Positions::All,
                    )
                    .unwrap();
                out.extend(step.data);
                out
            })
            .collect();
        assert!(runs[0] == runs[1] && runs[1] == runs[2], "{weights}");
    }
}

/// Errors are the burn path's, word for word.
#[test]
fn bad_feeds_are_the_same_errors_as_burn() {
    let (_, config) = &variants()[1];
    let burn = spread_model(config, 41);
    let fast = FastModel::from_transformer(&burn, Weights::F32, 1).unwrap();
    let too_long = vec![1u32; config.context_len + 1];
    let unknown = vec![config.vocab_size as u32];
    let empty: Vec<u32> = Vec::new();
    for ids in [&too_long, &unknown, &empty] {
        let e1 = fast
            .forward(
                &mut [Feed::new(ids, &mut fast.new_cache())],
                Positions::Last,
            )
            .unwrap_err();
        let e2 = Decoder::forward(
            &burn,
            &mut [Feed::new(ids, &mut burn.new_cache())],
            Positions::Last,
        )
        .unwrap_err();
        assert_eq!(e1.to_string(), e2.to_string());
    }
    let e1 = fast.forward(&mut [], Positions::Last).unwrap_err();
    let e2 = Decoder::forward(&burn, &mut [], Positions::Last).unwrap_err();
    assert_eq!(e1.to_string(), e2.to_string());
    // A cache of another model is refused, not misread.
    let other = fast_model(&variants()[0].1, Weights::F32, 1);
    let err = fast
        .forward(
            &mut [Feed::new(&[1], &mut other.new_cache())],
            Positions::Last,
        )
        .unwrap_err();
    assert!(err.to_string().contains("another model"), "{err}");
}

/// A native f32 folder read as q8_0 keeps no f32 copy of what it runs quantized, and runs the
/// same as the burn model on the de-quantized weights.
#[test]
fn folders_load_straight_into_the_kernels() {
    let (_, config) = &variants()[0];
    let burn = spread_model(config, 51);
    let dir = tempfile::tempdir().unwrap();
    save_native(
        dir.path(),
        "text",
        &burn,
        &serde_json::json!({}),
        &serde_json::json!({}),
    )
    .unwrap();
    let f32_model = load(dir.path(), Weights::F32, 1);
    let q8 = load(dir.path(), Weights::Q8_0, 1);
    let (Model::Kernels(a), Model::Kernels(b)) = (&f32_model, &q8) else {
        unreachable!()
    };
    assert_eq!(a.mapped_bytes(), a.matrix_bytes());
    assert_eq!(b.mapped_bytes(), 0);
    // Q8_0 is 34 bytes per 32 values: the model owns about a quarter of the f32 size.
    assert!(
        b.owned_bytes() < a.matrix_bytes() * 3 / 10,
        "{} {}",
        b.owned_bytes(),
        a.matrix_bytes()
    );
    assert_eq!(q8.describe(), "kernels, q8_0 weights, 1 threads");
    let ids = sequence(20, config.vocab_size, 5);
    assert_eq!(
        all_logits(&f32_model, &ids).data,
        all_logits(
            &FastModel::from_transformer(&burn, Weights::F32, 1).unwrap(),
            &ids
        )
        .data
    );
    let twin = burn_twin(b);
    assert!(max_diff(&all_logits(&q8, &ids).data, &all_logits(&twin, &ids).data) < 1e-4);
}

/// A warm decode step, through the `Model` the CLI uses, allocates nothing but the logits it
/// returns (counted on the calling thread; with 1 thread all of the work runs there).
#[test]
fn a_warm_decode_step_allocates_only_its_logits() {
    let (_, config) = &variants()[3];
    let dir = tempfile::tempdir().unwrap();
    save_native(
        dir.path(),
        "text",
        &spread_model(config, 61),
        &serde_json::json!({}),
        &serde_json::json!({}),
    )
    .unwrap();
    let vocab = config.vocab_size;
    let (for_logits, _) = allocations(|| Logits::new(vocab, &[1, 1], vec![0.0; 2 * vocab]));
    for (weights, threads) in [(Weights::F32, 1), (Weights::Q4_1, 1), (Weights::Q8_0, 2)] {
        let model = load(dir.path(), weights, threads);
        let (mut a, mut b) = (model.new_cache(), model.new_cache());
        let prompt = sequence(10, vocab, 1);
        model
            .forward(
                &mut [Feed::new(&prompt, &mut a), Feed::new(&prompt[..3], &mut b)],
                Positions::Last,
            )
            .unwrap();
        let mut next = [1u32, 2];
        for step in 0..20 {
            let (n, logits) = allocations(|| {
                let (ta, tb) = (&next[..1], &next[1..]);
                model
                    .forward(
                        &mut [Feed::new(ta, &mut a), Feed::new(tb, &mut b)],
                        Positions::Last,
                    )
                    .unwrap()
            });
            next = [argmax(logits.last(0)), argmax(logits.last(1))];
            // Warm after a few steps, and no 64-position cache block is crossed here.
            if step >= 3 {
                assert_eq!(n, for_logits, "{weights}, step {step}: {n} allocations");
            }
        }
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn block_formats_need_the_cpu() {
    let dir = root().join("../shared/reference/tiny-llama-gqa");
    let folder = ModelFolder::open(&dir).unwrap();
    let options = LoadOptions {
        device: Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        weights: Weights::Q8_0,
        threads: 1,
    };
    let err = folder.load_model(options).err().unwrap();
    assert!(err.to_string().contains("needs --device flex"), "{err}");
}

/// `first_token_condition` adds the condition row of the sequence's first token at every
/// position, and nothing else: with every row zero but one, a sequence that starts elsewhere
/// gets exactly the logits of the same weights without the condition, and one that starts with
/// that token differs at every position, on both paths (also after a rewind to the start). Such
/// a model is not a Llama: the exports refuse it.
#[test]
fn the_first_token_condition_reaches_every_position() {
    let conditioned =
        TransformerConfig::new(57, 64, 96, 2, 4, 2, 16, 96).with_first_token_condition(true);
    let plain = conditioned.clone().with_first_token_condition(false);
    let class = 5usize;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = spread_model(&conditioned, 31)
        .named_tensors()
        .into_iter()
        .map(|(n, d)| (n, d.shape().to_vec(), d.try_to_vec::<f32>().unwrap()))
        .collect();
    let (_, shape, rows) = tensors
        .iter_mut()
        .find(|(n, _, _)| n == "model.condition_embed.weight")
        .expect("a conditioned model has the condition embedding");
    let h = shape[1];
    for (r, row) in rows.chunks_mut(h).enumerate() {
        if r != class {
            row.fill(0.0);
        }
    }
    let without: Vec<_> = tensors
        .iter()
        .filter(|(n, _, _)| n != "model.condition_embed.weight")
        .cloned()
        .collect();
    let device = Device::flex();
    let with_burn = Transformer::load(&conditioned, &mut Tensors::new(tensors), &device).unwrap();
    let without_burn = Transformer::load(&plain, &mut Tensors::new(without), &device).unwrap();
    let with_fast = FastModel::from_transformer(&with_burn, Weights::F32, 2).unwrap();
    let without_fast = FastModel::from_transformer(&without_burn, Weights::F32, 2).unwrap();

    let mut other = sequence(24, 57, 2);
    other[0] = 9;
    let mut starts_with_class = other.clone();
    starts_with_class[0] = class as u32;
    let pairs: [(&dyn Fn(&[u32]) -> Logits, &dyn Fn(&[u32]) -> Logits); 2] = [
        (&|ids| all_logits(&with_burn, ids), &|ids| {
            all_logits(&without_burn, ids)
        }),
        (&|ids| all_logits(&with_fast, ids), &|ids| {
            all_logits(&without_fast, ids)
        }),
    ];
    for (with, without) in pairs {
        assert_eq!(with(&other).data, without(&other).data);
        let (a, b) = (with(&starts_with_class), without(&starts_with_class));
        for t in 0..24 {
            let d = max_diff(a.row(0, t), b.row(0, t));
            assert!(
                d > 1e-2,
                "position {t}: the condition changed its logits by only {d}"
            );
        }
    }

    rewinds_keep_or_forget_the_first_token(&with_burn, &starts_with_class, &other);
    rewinds_keep_or_forget_the_first_token(&with_fast, &starts_with_class, &other);

    for err in [
        jielong_nn::folder::to_hf_config(&conditioned, None, None).unwrap_err(),
        jielong_nn::gguf::hf_config(&conditioned, None, None).unwrap_err(),
    ] {
        assert!(err.to_string().contains("first_token_condition"), "{err}");
    }
}

/// A cache rewound to its first token keeps conditioning on it; rewound to empty, it forgets
/// it (`a` and `b` start with different tokens whose condition rows differ).
fn rewinds_keep_or_forget_the_first_token<D: Decoder>(model: &D, a: &[u32], b: &[u32]) {
    let last = |cache: &mut D::Cache, ids: &[u32]| {
        model
            .forward(&mut [Feed::new(ids, cache)], Positions::Last)
            .unwrap()
            .last(0)
            .to_vec()
    };
    let mut cache = model.new_cache();
    last(&mut cache, a);
    model.truncate_cache(&mut cache, 1);
    let again = last(&mut cache, &a[1..]);
    assert!(max_diff(&again, all_logits(model, a).last(0)) < 1e-5);
    model.truncate_cache(&mut cache, 0);
    let other = last(&mut cache, b);
    assert!(max_diff(&other, all_logits(model, b).last(0)) < 1e-5);
}

/// A [`FastModel`] that counts the calls that share sampling out over its threads.
struct CountingTasks<'a> {
    model: &'a FastModel,
    calls: std::sync::atomic::AtomicUsize,
}

impl Decoder for CountingTasks<'_> {
    type Cache = <FastModel as Decoder>::Cache;
    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }
    fn context_len(&self) -> usize {
        self.model.context_len()
    }
    fn new_cache(&self) -> Self::Cache {
        self.model.new_cache()
    }
    fn cache_len(&self, cache: &Self::Cache) -> usize {
        self.model.cache_len(cache)
    }
    fn truncate_cache(&self, cache: &mut Self::Cache, len: usize) {
        self.model.truncate_cache(cache, len)
    }
    fn forward(
        &self,
        feeds: &mut [Feed<'_, Self::Cache>],
        positions: Positions,
    ) -> anyhow::Result<Logits> {
        self.model.forward(feeds, positions)
    }
    fn run_tasks(&self, n: usize, task: &(dyn Fn(usize) + Sync)) {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.model.run_tasks(n, task)
    }
}

/// Once a batch's logits are large, the sequences' sampling runs on the kernels' threads
/// (`Decoder::run_tasks`); every sequence still draws exactly the tokens it draws alone, where
/// it samples on the calling thread.
#[test]
fn a_batch_sampled_on_the_kernels_threads_draws_what_each_sequence_draws_alone() {
    use jielong_core::{Flow, GenerateConfig, SamplerConfig, generate};
    let vocab = 8192;
    let fast = fast_model(
        &TransformerConfig::new(vocab, 32, 64, 1, 2, 2, 16, 64),
        Weights::F32,
        2,
    );
    let counted = CountingTasks {
        model: &fast,
        calls: Default::default(),
    };
    // Nine ragged prompts: 9 x 8,192 logits are enough to share out.
    let prompts: Vec<Vec<u32>> = (0..9).map(|s| sequence(2 + s % 4, vocab, s)).collect();
    let sampler = SamplerConfig {
        temperature: 1.5,
        ..Default::default()
    };
    let config = GenerateConfig::new(sampler, 5, 12);
    let batch = generate(&counted, &prompts, &config, &mut |_| Flow::Continue).unwrap();
    assert_eq!(
        counted.calls.load(std::sync::atomic::Ordering::Relaxed),
        12,
        "each step shared its sampling out"
    );
    for (i, prompt) in prompts.iter().enumerate() {
        let alone = GenerateConfig {
            seed: 5 + i as u64,
            ..config.clone()
        };
        let alone = generate(&fast, std::slice::from_ref(prompt), &alone, &mut |_| {
            Flow::Continue
        })
        .unwrap();
        assert_eq!(batch[i].ids, alone[0].ids, "sequence {i}");
    }
    // The draws are real draws, not one argmax repeated.
    let mut drawn: Vec<u32> = batch.iter().flat_map(|g| g.ids.clone()).collect();
    drawn.sort_unstable();
    drawn.dedup();
    assert!(drawn.len() > 50, "{} distinct tokens", drawn.len());
}
