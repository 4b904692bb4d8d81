//! Open models through the real `jielong` binary: Hugging Face folders against references
//! computed by transformers, tokenizers against reference ids (transformers' and tiktoken's),
//! chat over a kept KV cache, export to a Llama folder, and a clear error for every broken
//! Hugging Face folder.
//!
//! Every expected value comes from a committed reference file or is derived here independently:
//! - `../shared/reference/tiny-llama-gqa/reference.json` and `tests/fixtures/hf/*/reference.json`
//!   (logits and greedy ids from transformers; see the READMEs beside them);
//! - `tests/fixtures/gpt2/reference.json` (GPT-2 ids from tiktoken; made by
//!   `scripts/make_tokenizer_fixtures.py`);
//! - chat: the conversation is rendered here by string formatting from the template's
//!   semantics, tokenized with `jielong tokenize` and continued with `jielong generate
//!   --prompt-ids --greedy` (both checked against references above), and the cache reuse that
//!   follows (the longest common prefix of what was fed and the new prompt) is computed here.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers

/// The shared reference model (read-only in CI).
fn tiny_llama() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/tiny-llama-gqa")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A fresh path in the scratch folder (tests run in parallel threads).
fn temp(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    scratch().join(format!("hf-{}-{name}", N.fetch_add(1, Ordering::Relaxed)))
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn rows_of(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn csv(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// `jielong logits` for `ids`: one row of next-token logits per position.
fn logits(model: &Path, ids: &[u32]) -> Vec<Vec<f64>> {
    let out = temp("logits.json");
    ok(&[
        "logits",
        "--model",
        p(model),
        "--prompt-ids",
        &csv(ids),
        "--out",
        p(&out),
    ]);
    let rows = rows_of(&read_json(&out)["logits"]);
    assert_eq!(rows.len(), ids.len(), "one row per prompt position");
    rows
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "rows of different lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// `jielong generate text --prompt-ids ... --greedy --format json`.
fn greedy(model: &Path, ids: &[u32], n: usize, extra: &[&str]) -> Value {
    let n = n.to_string();
    let mut args = vec!["generate", "text", "--model", p(model), "--prompt-ids"];
    let ids = csv(ids);
    args.extend([
        ids.as_str(),
        "--greedy",
        "--max-new-tokens",
        &n,
        "--format",
        "json",
    ]);
    args.extend(extra);
    ok_json(&args)
}

/// `jielong tokenize --tokenizer T --text TEXT`.
fn tokenize(tokenizer: &Path, text: &str) -> Vec<u32> {
    let out = stdout(&ok(&[
        "tokenize",
        "--tokenizer",
        p(tokenizer),
        "--text",
        text,
    ]));
    ids_of(
        &serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("tokenize printed no array ({e}): {out}")),
    )
}

/// A writable copy of a model folder's files in a fresh scratch folder.
fn copy_of(from: &Path, name: &str) -> PathBuf {
    let to = temp(name);
    copy_files(from, &to, &[]);
    for entry in std::fs::read_dir(&to).unwrap() {
        let path = entry.unwrap().path();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&path, perms).unwrap();
    }
    to
}

/// Rewrites a JSON file of a folder.
fn edit_json(path: &Path, change: impl FnOnce(&mut Value)) {
    let mut v = read_json(path);
    change(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 1. Reference models: logits and greedy ids computed by transformers.

/// Checks a Hugging Face folder against its reference: the logits rows to 1e-4 and the greedy
/// continuation id for id. `logit_sets` names the reference's logits objects (`input_ids`,
/// `values` and, for rows of a longer prompt, `positions`) with a label for messages.
fn check_reference(dir: &Path, logit_sets: &[(&str, &str)]) {
    let r = read_json(&dir.join("reference.json"));
    for (key, what) in logit_sets {
        let set = &r[*key];
        let input = ids_of(&set["input_ids"]);
        let want = rows_of(&set["values"]);
        let positions: Vec<usize> = match set["positions"].as_array() {
            Some(ps) => ps.iter().map(|x| x.as_u64().unwrap() as usize).collect(),
            None => (0..want.len()).collect(),
        };
        assert_eq!(positions.len(), want.len());
        let got = logits(dir, &input);
        for (&pos, row) in positions.iter().zip(&want) {
            assert_eq!(
                got[pos].len(),
                row.len(),
                "{}: vocabulary size of the logits",
                dir.display()
            );
            let diff = max_abs_diff(&got[pos], row);
            assert!(
                diff < 1e-4,
                "{}: {what} position {pos}: max |diff| {diff} >= 1e-4",
                dir.display()
            );
        }
    }

    // Greedy decoding. jielong stops at the EOS ids of generation_config.json; the references
    // were made with eos_token_id=None. If EOS is on the reference path, jielong must stop
    // exactly there (the EOS itself is not part of `ids`); otherwise it gives every id.
    let prompt = ids_of(&r["prompt_ids"]);
    let want = ids_of(&r["greedy_new_ids"]);
    let eos: Vec<u32> = match &read_json(&dir.join("generation_config.json"))["eos_token_id"] {
        Value::Number(n) => vec![n.as_u64().unwrap() as u32],
        list @ Value::Array(_) => ids_of(list),
        _ => Vec::new(),
    };
    assert!(
        !eos.is_empty(),
        "{}: generation_config.json names the EOS",
        dir.display()
    );
    let eos_on_path = want.iter().position(|id| eos.contains(id));
    if let Some(listed) = r["eos_in_greedy"].as_array() {
        assert_eq!(
            listed.is_empty(),
            eos_on_path.is_none(),
            "{}: the reference's eos_in_greedy",
            dir.display()
        );
    }
    let g = greedy(dir, &prompt, want.len(), &[]);
    // (None of the four references has EOS on its greedy path, so all ids are compared.)
    match eos_on_path {
        Some(stop) => {
            assert_eq!(
                ids_of(&g["ids"]),
                want[..stop],
                "{}: greedy ids up to EOS",
                dir.display()
            );
            assert_eq!(g["finish"], "end");
        }
        None => {
            assert_eq!(ids_of(&g["ids"]), want, "{}: greedy ids", dir.display());
            assert_eq!(g["finish"], "max_tokens");
        }
    }
    assert_eq!(ids_of(&g["prompt_ids"]), prompt);

    // The prompt text through the folder's tokenizer gives the reference ids: BOS first for a
    // generation prompt (the tokenizer's post-processor), none from `jielong tokenize`.
    let text = r["prompt_text"].as_str().unwrap();
    let g = ok_json(&[
        "generate",
        "text",
        "--model",
        p(dir),
        "--prompt",
        text,
        "--max-new-tokens",
        "1",
        "--greedy",
        "--format",
        "json",
    ]);
    assert_eq!(
        ids_of(&g["prompt_ids"]),
        prompt,
        "{}: the prompt text encodes to the reference ids",
        dir.display()
    );
    assert_eq!(
        tokenize(dir, text),
        prompt[1..],
        "{}: tokenize adds no special tokens",
        dir.display()
    );
}

/// The acceptance criterion: the shared reference Llama (grouped-query attention), logits of the
/// first 8 positions to 1e-4 and all 64 greedy ids.
#[test]
fn tiny_llama_gqa_matches_the_reference() {
    let dir = tiny_llama();
    let r = read_json(&dir.join("reference.json"));
    // Its reference's layout, checked so that a changed file cannot make the test vacuous.
    let first8 = &r["logits_first8_positions"];
    assert_eq!(ids_of(&first8["input_ids"]), ids_of(&r["prompt_ids"])[..8]);
    assert_eq!(rows_of(&first8["values"]).len(), 8);
    assert_eq!(ids_of(&r["greedy_new_ids"]).len(), 64);
    check_reference(&dir, &[("logits_first8_positions", "first 8 positions")]);
}

/// Qwen2: q/k/v biases, tied embeddings, use_sliding_window false.
#[test]
fn qwen2_bias_tied_matches_its_reference() {
    check_reference(
        &fixture("hf/qwen2-bias-tied"),
        &[("logits", "first 8 positions")],
    );
}

/// Llama 3: head_dim != hidden/heads, llama3 rope_scaling (rows past the original context),
/// biases on all four attention projections.
#[test]
fn llama3_rope_headdim_matches_its_reference() {
    let dir = fixture("hf/llama3-rope-headdim");
    let tail = &read_json(&dir.join("reference.json"))["logits_tail"];
    assert!(
        ids_of(&tail["positions"]).iter().all(|&p| p >= 64),
        "the tail rows lie past original_max_position_embeddings"
    );
    check_reference(
        &dir,
        &[("logits", "first 8 positions"), ("logits_tail", "tail")],
    );
}

/// Mistral: bf16 weights in two shards with an index, multi-query attention.
#[test]
fn mistral_sharded_bf16_matches_its_reference() {
    check_reference(
        &fixture("hf/mistral-sharded-bf16"),
        &[("logits", "first 8 positions")],
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Broken Hugging Face folders: clear errors that name what is wrong.

#[test]
fn broken_hf_folders_get_clear_errors() {
    // Each broken folder fails `logits` and `generate text` (which loads the same way) with
    // every needle.
    let mut cases = Vec::new();
    let mut run = |dir: &Path, needles: &[&str]| {
        let out = temp("x.json");
        cases.push(bad_with(
            &[
                "logits",
                "--model",
                p(dir),
                "--prompt-ids",
                "1,2",
                "--out",
                p(&out),
            ],
            needles,
        ));
        cases.push(bad_with(
            &[
                "generate",
                "text",
                "--model",
                p(dir),
                "--prompt",
                "Once",
                "--max-new-tokens",
                "2",
            ],
            needles,
        ));
    };
    let reference = tiny_llama();
    let config = read_json(&reference.join("config.json"));
    let layers = config["num_hidden_layers"].as_u64().unwrap();
    let (hidden, inter) = (
        config["hidden_size"].as_u64().unwrap(),
        config["intermediate_size"].as_u64().unwrap(),
    );

    // An architecture jielong does not implement is named.
    let dir = copy_of(&reference, "gpt2-arch");
    edit_json(&dir.join("config.json"), |c| {
        c["architectures"] = json!(["GPT2LMHeadModel"])
    });
    run(&dir, &["GPT2LMHeadModel", "LlamaForCausalLM"]);

    // One layer more than the weights hold: the first missing tensor is named.
    let dir = copy_of(&reference, "more-layers");
    edit_json(&dir.join("config.json"), |c| {
        c["num_hidden_layers"] = json!(layers + 1)
    });
    run(&dir, &[&format!("model.layers.{layers}."), "no tensor"]);

    // A wrong intermediate size: the tensor and both shapes.
    let dir = copy_of(&reference, "wrong-shape");
    edit_json(&dir.join("config.json"), |c| {
        c["intermediate_size"] = json!(inter + 8)
    });
    run(
        &dir,
        &[
            "model.layers.0.mlp.gate_proj.weight",
            &format!("[{inter}, {hidden}]"),
            &format!("[{}, {hidden}]", inter + 8),
        ],
    );

    // One layer fewer: the weights of the last layer are left over and named.
    let dir = copy_of(&reference, "fewer-layers");
    edit_json(&dir.join("config.json"), |c| {
        c["num_hidden_layers"] = json!(layers - 1)
    });
    run(
        &dir,
        &[&format!("model.layers.{}.", layers - 1), "does not use"],
    );

    // An unsupported rope_scaling type is named (both spellings of the key).
    for (key, kind) in [("rope_type", "yarn"), ("type", "linear")] {
        let dir = copy_of(&reference, "rope");
        edit_json(&dir.join("config.json"), |c| {
            c["rope_scaling"] = json!({ key: kind, "factor": 4.0 })
        });
        run(&dir, &[kind, "rope_scaling"]);
    }

    // Other activations than SiLU are refused, not run as SiLU.
    let dir = copy_of(&reference, "gelu");
    edit_json(&dir.join("config.json"), |c| {
        c["hidden_act"] = json!("gelu")
    });
    run(&dir, &["gelu"]);

    // config.json that is not JSON; no weights at all.
    let dir = copy_of(&reference, "bad-config");
    std::fs::write(dir.join("config.json"), "{ \"architectures\": [").unwrap();
    run(&dir, &["config.json", "not valid JSON"]);
    let dir = copy_of(&reference, "no-weights");
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    run(&dir, &["model.safetensors"]);

    // Sharded folders: a truncated shard, garbage in a shard, a shard listed in the index but
    // missing, an index without its weight map.
    let sharded = fixture("hf/mistral-sharded-bf16");
    let index = read_json(&sharded.join("model.safetensors.index.json"));
    let mut shards: Vec<String> = index["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    shards.sort();
    shards.dedup();
    assert_eq!(shards.len(), 2);
    let dir = copy_of(&sharded, "truncated-shard");
    let bytes = std::fs::read(dir.join(&shards[1])).unwrap();
    std::fs::write(dir.join(&shards[1]), &bytes[..bytes.len() - 1000]).unwrap();
    run(&dir, &[&shards[1], "safetensors"]);
    let dir = copy_of(&sharded, "garbage-shard");
    std::fs::write(dir.join(&shards[0]), b"not a safetensors file at all").unwrap();
    run(&dir, &[&shards[0], "safetensors"]);
    let dir = copy_of(&sharded, "missing-shard");
    std::fs::remove_file(dir.join(&shards[0])).unwrap();
    run(&dir, &[&shards[0]]);
    let dir = copy_of(&sharded, "no-weight-map");
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"metadata": {}}"#,
    )
    .unwrap();
    run(&dir, &["weight_map"]);

    // Without tokenizer.json the weights still give logits, but text cannot be encoded.
    let dir = copy_of(&reference, "no-tokenizer");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    ok(&[
        "logits",
        "--model",
        p(&dir),
        "--prompt-ids",
        "1,2",
        "--out",
        p(&temp("x.json")),
    ]);
    cases.extend([
        bad_with(
            &[
                "generate",
                "text",
                "--model",
                p(&dir),
                "--prompt",
                "Once upon a time",
                "--max-new-tokens",
                "2",
            ],
            &["tokenizer.json"],
        ),
        bad_with(
            &["tokenize", "--tokenizer", p(&dir), "--text", "Once"],
            &["tokenizer.json"],
        ),
        bad_with(
            &["chat", "--model", p(&dir), "--max-new-tokens", "2"],
            &["tokenizer.json"],
        ),
    ]);

    // Bad prompts for `logits`: ids outside the vocabulary, longer than the context.
    let vocab = config["vocab_size"].as_u64().unwrap();
    let out = temp("x.json");
    let context = config["max_position_embeddings"].as_u64().unwrap() as usize;
    cases.extend([
        bad_with(
            &[
                "logits",
                "--model",
                p(&reference),
                "--prompt-ids",
                &format!("1,{vocab}"),
                "--out",
                p(&out),
            ],
            &[&vocab.to_string(), "outside"],
        ),
        bad_with(
            &[
                "logits",
                "--model",
                p(&reference),
                "--prompt-ids",
                &csv(&vec![5; context + 1]),
                "--out",
                p(&out),
            ],
            &["context"],
        ),
    ]);
    all_fail(cases);
    assert!(!out.exists(), "nothing is written on failure");
}

// ---------------------------------------------------------------------------------------------
// 3. Tokenizers against reference ids.

#[test]
fn llama_tokenizer_gives_the_reference_ids_without_special_tokens() {
    let dir = tiny_llama();
    let r = read_json(&dir.join("reference.json"));
    let text = r["prompt_text"].as_str().unwrap();
    let prompt = ids_of(&r["prompt_ids"]);
    assert_eq!(prompt[0], 1, "the reference prompt starts with BOS");
    assert_eq!(tokenize(&dir, text), prompt[1..]);
    // The folder and its tokenizer.json are the same tokenizer.
    assert_eq!(tokenize(&dir.join("tokenizer.json"), text), prompt[1..]);
}

#[test]
fn split_takes_the_separator_literally() {
    let dir = tiny_llama();
    // A separator made of regex metacharacters, around pieces that contain some of them alone.
    let sep = ".*|";
    let pieces = [
        "Once upon a time.",
        "there was a | girl",
        "",
        "she saw * a big (red) ball?",
        "a.b|c",
    ];
    let file = temp("pieces.txt");
    std::fs::write(&file, pieces.join(sep)).unwrap();
    let out = stdout(&ok(&[
        "tokenize",
        "--tokenizer",
        p(&dir),
        "--file",
        p(&file),
        "--split",
        sep,
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), pieces.len(), "one array per piece:\n{out}");
    for (line, piece) in lines.iter().zip(pieces) {
        let got = ids_of(&serde_json::from_str(line).unwrap());
        let want = if piece.is_empty() {
            Vec::new()
        } else {
            tokenize(&dir, piece)
        };
        assert_eq!(got, want, "piece {piece:?}");
    }
    // Without --split the file is one text; a separator that does not occur gives one piece.
    let whole = stdout(&ok(&[
        "tokenize",
        "--tokenizer",
        p(&dir),
        "--file",
        p(&file),
    ]));
    assert_eq!(
        ids_of(&serde_json::from_str(whole.trim()).unwrap()),
        tokenize(&dir, &pieces.join(sep))
    );
    let one = stdout(&ok(&[
        "tokenize",
        "--tokenizer",
        p(&dir),
        "--file",
        p(&file),
        "--split",
        "@@none@@",
    ]));
    assert_eq!(one.lines().count(), 1);
    all_fail(vec![
        bad(
            &[
                "tokenize",
                "--tokenizer",
                p(&dir),
                "--file",
                p(&file),
                "--split",
                "",
            ],
            "separator",
        ),
        bad(
            &[
                "tokenize",
                "--tokenizer",
                p(&temp("missing")),
                "--text",
                "a",
            ],
            "tokenizer",
        ),
    ]);
}

/// GPT-2's byte-level BPE (tokenizer.json built from GPT-2's vocabulary and merges) against
/// tiktoken's ids for the same texts: BOM, contractions, numbers, runs of spaces, newlines, tabs,
/// CRLF, accents, CJK, emoji with ZWJ and flags, and the special token inside a text.
#[test]
fn gpt2_tokenizer_matches_tiktoken() {
    let dir = fixture("gpt2");
    let r = read_json(&dir.join("reference.json"));
    let texts: Vec<&str> = r["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let want: Vec<Vec<u32>> = r["ids"].as_array().unwrap().iter().map(ids_of).collect();
    assert_eq!(texts.len(), want.len());
    assert!(texts.len() >= 20, "the reference has {} texts", texts.len());
    let sep = "<<.*|>>";
    assert!(
        texts.iter().all(|t| !t.contains(sep)),
        "the separator occurs in a text"
    );
    let file = temp("gpt2-texts.txt");
    std::fs::write(&file, texts.join(sep)).unwrap();
    let tokenizer = dir.join("tokenizer.json");
    let out = stdout(&ok(&[
        "tokenize",
        "--tokenizer",
        p(&tokenizer),
        "--file",
        p(&file),
        "--split",
        sep,
    ]));
    let got: Vec<Vec<u32>> = out
        .lines()
        .map(|l| ids_of(&serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(got.len(), texts.len(), "one line per text:\n{out}");
    for ((text, got), want) in texts.iter().zip(&got).zip(&want) {
        assert_eq!(got, want, "text {text:?}");
    }
    // --text gives the same as a piece of --file.
    assert_eq!(tokenize(&tokenizer, texts[4]), want[4]);
}

// ---------------------------------------------------------------------------------------------
// 5. Chat through the command line.

/// Llama 2 chat's template as meta-llama ships it.
const LLAMA2_TEMPLATE: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}\
{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}\
{% set system_message = false %}{% endif %}{% for message in loop_messages %}\
{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\
{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}\
{% if loop.index0 == 0 and system_message != false %}\
{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}\
{% else %}{% set content = message['content'] %}{% endif %}\
{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}\
{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/// The Llama 2 template's output, written out by hand (`<s>`/`</s>` are the tokenizer's BOS and
/// EOS, which the 512-token vocabulary has).
fn llama2_render(messages: &[(String, String)]) -> String {
    let (system, rest) = match messages.first() {
        Some((role, content)) if role == "system" => (Some(content.as_str()), &messages[1..]),
        _ => (None, messages),
    };
    let mut out = String::new();
    for (i, (role, content)) in rest.iter().enumerate() {
        let content = match (i, system) {
            (0, Some(s)) => format!("<<SYS>>\n{s}\n<</SYS>>\n\n{content}"),
            _ => content.clone(),
        };
        match role.as_str() {
            "user" => out += &format!("<s>[INST] {} [/INST]", content.trim()),
            "assistant" => out += &format!(" {} </s>", content.trim()),
            other => panic!("role {other}"),
        }
    }
    out
}

const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}\
{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

fn chatml_render(messages: &[(String, String)]) -> String {
    let mut out: String = messages
        .iter()
        .map(|(role, content)| format!("<|im_start|>{role}\n{content}<|im_end|>\n"))
        .collect();
    out += "<|im_start|>assistant\n";
    out
}

/// jielong's built-in template (a folder without tokenizer_config.json): `role: content` lines.
fn builtin_render(messages: &[(String, String)]) -> String {
    let mut out: String = messages
        .iter()
        .map(|(role, content)| format!("{role}: {content}\n"))
        .collect();
    out += "assistant:";
    out
}

/// A copy of tiny-llama-gqa whose tokenizer_config.json carries `template` (or none), with
/// `context` positions when given.
fn chat_model(name: &str, template: Option<&str>, context: Option<usize>) -> PathBuf {
    let dir = copy_of(&tiny_llama(), name);
    match template {
        Some(t) => edit_json(&dir.join("tokenizer_config.json"), |c| {
            c["chat_template"] = json!(t)
        }),
        None => std::fs::remove_file(dir.join("tokenizer_config.json")).unwrap(),
    }
    if let Some(n) = context {
        edit_json(&dir.join("config.json"), |c| {
            c["max_position_embeddings"] = json!(n)
        });
    }
    dir
}

/// What `jielong chat` reports for a turn on stderr.
#[derive(Debug, PartialEq)]
enum Report {
    Dropped(usize),
    Turn { n: usize, fed: usize, reused: usize },
}

/// How the reference drops old exchanges when the conversation no longer fits: whole exchanges
/// (a user message and the reply to it), oldest first, never the system prompt, until the prompt
/// and the longest reply fit and the prompt fills at most half the context.
enum Drops {
    /// Computed by the reference itself.
    Exchanges,
    /// As many exchanges as `jielong chat` reported for each overflow, in order; the reference
    /// checks they were the oldest, that the system prompt stayed, and that one fewer would not
    /// have met the rule.
    AsReported(Vec<usize>),
}

/// `jielong chat` rebuilt from parts checked elsewhere: renders the conversation with `render`,
/// tokenizes it with `jielong tokenize`, draws the reply with `jielong generate --prompt-ids
/// --greedy`, drops the oldest messages (never the system prompt) when the prompt and the
/// longest reply do not fit, and reuses the longest prefix of what the cache holds.
struct ReferenceChat {
    dir: PathBuf,
    render: fn(&[(String, String)]) -> String,
    context: usize,
    max_new: usize,
    stops: Vec<String>,
    drops: Drops,
    messages: Vec<(String, String)>,
    /// The tokens the model has been fed (the last drawn token never is).
    cached: Vec<u32>,
    turns: usize,
    reports: Vec<Report>,
    stdout: String,
}

impl ReferenceChat {
    fn new(
        dir: &Path,
        render: fn(&[(String, String)]) -> String,
        max_new: usize,
        system: Option<&str>,
    ) -> Self {
        let context = read_json(&dir.join("config.json"))["max_position_embeddings"]
            .as_u64()
            .unwrap() as usize;
        Self {
            dir: dir.to_path_buf(),
            render,
            context,
            max_new,
            stops: Vec::new(),
            drops: Drops::Exchanges,
            messages: system
                .map(|s| vec![("system".to_string(), s.to_string())])
                .unwrap_or_default(),
            cached: Vec::new(),
            turns: 0,
            reports: Vec::new(),
            stdout: String::new(),
        }
    }

    fn user(&mut self, line: &str) {
        self.messages.push(("user".into(), line.into()));
        let mut ids = tokenize(&self.dir, &(self.render)(&self.messages));
        let fits = |ids: &[u32]| ids.len() + self.max_new <= self.context;
        let settled = |ids: &[u32]| fits(ids) && ids.len() <= self.context / 2;
        let mut dropped = 0;
        if !fits(&ids) {
            let first = self
                .messages
                .iter()
                .position(|(r, _)| r != "system")
                .unwrap();
            match &mut self.drops {
                Drops::Exchanges => {
                    while !settled(&ids) && self.messages.len() - first >= 3 {
                        self.messages.drain(first..first + 2); // a user message and the reply to it
                        dropped += 1;
                        ids = tokenize(&self.dir, &(self.render)(&self.messages));
                    }
                    assert!(fits(&ids), "the test's last message alone must fit");
                }
                Drops::AsReported(counts) => {
                    assert!(
                        !counts.is_empty(),
                        "the conversation overflows here but chat dropped nothing"
                    );
                    dropped = counts.remove(0);
                    assert!(
                        dropped >= 1 && self.messages.len() - first > 2 * dropped,
                        "chat dropped {dropped} exchanges"
                    );
                    self.messages.drain(first..first + 2 * (dropped - 1));
                    let fewer = tokenize(&self.dir, &(self.render)(&self.messages));
                    assert!(
                        !settled(&fewer),
                        "dropping {} exchange(s) would have been enough",
                        dropped - 1
                    );
                    self.messages.drain(first..first + 2);
                    ids = tokenize(&self.dir, &(self.render)(&self.messages));
                    assert!(
                        fits(&ids),
                        "after dropping {dropped} exchange(s) the conversation still does not fit"
                    );
                }
            }
        }
        if dropped > 0 {
            self.reports.push(Report::Dropped(dropped));
            self.cached.clear();
        }
        let mut reused = self
            .cached
            .iter()
            .zip(&ids)
            .take_while(|(a, b)| a == b)
            .count();
        if reused == ids.len() {
            reused -= 1;
        }
        self.turns += 1;
        self.reports.push(Report::Turn {
            n: self.turns,
            fed: ids.len() - reused,
            reused,
        });
        let mut extra = Vec::new();
        for s in &self.stops {
            extra.extend(["--stop", s.as_str()]);
        }
        let g = greedy(&self.dir, &ids, self.max_new, &extra);
        let new = ids_of(&g["ids"]);
        let text = g["text"].as_str().unwrap().to_string();
        self.stdout += &text;
        self.stdout.push('\n');
        self.cached = ids;
        self.cached.extend(&new);
        if g["finish"] != "end" {
            self.cached.pop();
        }
        self.messages
            .push(("assistant".into(), text.trim_end().to_string()));
    }

    fn reset(&mut self) {
        self.messages.retain(|(r, _)| r == "system");
        self.cached.clear();
        self.turns = 0;
    }
}

/// Runs `jielong chat` with `lines` on stdin; returns (stdout, stderr).
fn chat(dir: &Path, lines: &[&str], extra: &[&str]) -> (String, String) {
    let mut args = vec!["chat", "--model", p(dir)];
    args.extend(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_jielong"))
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jielong chat starts");
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "jielong {args:?} failed:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    (out, err)
}

/// The `[turn ...]` and `[context full ...]` lines of chat's stderr.
fn reports(stderr: &str) -> Vec<Report> {
    let number = |s: &str| {
        s.parse::<usize>()
            .unwrap_or_else(|_| panic!("not a number {s:?} in {stderr}"))
    };
    stderr
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.trim_start_matches('[').split_whitespace().collect();
            match words.as_slice() {
                ["turn", n, fed, "new", "tokens", "fed,", reused, ..] => Some(Report::Turn {
                    n: number(n.trim_end_matches(':')),
                    fed: number(fed),
                    reused: number(reused),
                }),
                ["context", "full:", "dropped", "the", k, ..] => Some(Report::Dropped(number(k))),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn chat_reuses_the_cache_and_feeds_only_the_new_turn() {
    let dir = chat_model("chat-llama2", Some(LLAMA2_TEMPLATE), None);
    let max_new = 12;
    let lines = ["hello", "how are you", "tell me about the park"];
    let mut want = ReferenceChat::new(&dir, llama2_render, max_new, None);
    for l in lines {
        want.user(l);
    }
    let mut input = lines.to_vec();
    input.extend(["/quit", "never read"]);
    let (out, err) = chat(&dir, &input, &["--max-new-tokens", "12", "--greedy"]);
    assert!(!err.contains("error"), "{err}");
    assert_eq!(reports(&err), want.reports, "stderr:\n{err}");
    assert_eq!(
        out, want.stdout,
        "the replies are the greedy continuations of the rendered conversation"
    );

    // What the reuse means: each turn after the first reuses at least the whole previous
    // prompt and feeds only the new user message (and whatever of the reply re-encodes
    // differently), far less than the conversation.
    let first = tokenize(&dir, &llama2_render(&[("user".into(), "hello".into())]));
    match (&want.reports[0], &want.reports[1]) {
        (
            Report::Turn {
                fed: f1, reused: 0, ..
            },
            Report::Turn { fed, reused, .. },
        ) => {
            assert_eq!(*f1, first.len());
            assert!(
                *reused >= first.len(),
                "turn 2 reuses the whole first prompt ({reused} < {})",
                first.len()
            );
            // The random model's replies hold byte tokens that decode to U+FFFD and re-encode
            // differently, so reuse usually stops inside the reply; the exact count is the
            // reference's above.
            let second = tokenize(&dir, &llama2_render(&want.messages[..3]));
            assert_eq!(fed + reused, second.len());
        }
        other => panic!("unexpected reports {other:?}"),
    }
}

#[test]
fn chat_commands_reset_probs_and_unknown_ones() {
    let dir = chat_model("chat-commands", Some(LLAMA2_TEMPLATE), None);
    let system = "You answer briefly.";
    let mut want = ReferenceChat::new(&dir, llama2_render, 6, Some(system));
    want.user("hello");
    want.user("how are you");
    want.reset();
    want.user("hello");
    let lines = [
        "hello",
        "/probs 3",
        "how are you",
        "/probs 0",
        "/frobnicate now",
        "/probs many",
        "/reset",
        "hello",
        "/quit",
    ];
    let (out, err) = chat(
        &dir,
        &lines,
        &["--max-new-tokens", "6", "--greedy", "--system", system],
    );
    assert_eq!(reports(&err), want.reports, "stderr:\n{err}");
    // After /reset the conversation starts over: turn 1 again, nothing reused, the same prompt
    // (the system prompt is kept) and, greedy, the same reply.
    assert_eq!(want.reports[0], want.reports[2]);
    assert!(err.contains("[conversation reset]"), "{err}");
    // Unknown commands and a bad /probs argument are answered, and the chat goes on.
    assert!(err.contains("unknown command /frobnicate"), "{err}");
    assert!(err.contains("/probs needs a number"), "{err}");
    assert!(!err.contains("error:"), "{err}");
    // /probs 3: one line per drawn token of turn 2 with three candidates, the first (greedy)
    // marked as drawn; off again for turn 3.
    let prob_lines: Vec<&str> = out.lines().filter(|l| l.contains('%')).collect();
    let replies: Vec<&str> = want.stdout.lines().collect();
    assert!(!prob_lines.is_empty() && prob_lines.len() <= 6, "{out}");
    for l in &prob_lines {
        assert_eq!(l.matches('%').count(), 3, "{l}");
        let star = l
            .find('*')
            .unwrap_or_else(|| panic!("no drawn mark in {l}"));
        assert!(
            star > l.find('%').unwrap() && star < l.match_indices('%').nth(1).unwrap().0,
            "greedy draws the first: {l}"
        );
    }
    assert!(out.starts_with(&format!("{}\n", replies[0])), "{out}");
    assert!(
        out.ends_with(&format!("{}\n", replies[0])),
        "the reply after /reset equals the first one:\n{out}"
    );
}

/// A ChatML conversation that outgrows a 160-token context.
const SMALL_CONTEXT: usize = 160;
const LONG_LINES: [&str; 5] = [
    "once upon a time there was a little girl",
    "she loved to play outside in the park",
    "one day she saw a big red ball under a tree",
    "she ran to get it and her friends came too",
    "what happened at the end of the day",
];

#[test]
fn chat_drops_the_oldest_turns_when_the_context_fills_and_keeps_the_system_prompt() {
    let dir = chat_model("chat-small", Some(CHATML_TEMPLATE), Some(SMALL_CONTEXT));
    let system = "Keep this system prompt.";
    let (out, err) = chat(
        &dir,
        &LONG_LINES,
        &["--max-new-tokens", "12", "--greedy", "--system", system],
    );
    assert!(!err.contains("error"), "{err}");
    let got = reports(&err);
    // How many messages to drop is checked by chat_drops_whole_exchanges (ignored: a bug); here
    // the reference follows chat's counts and checks the rest: the dropped messages are the
    // oldest, the system prompt stays (the re-encoded prompt is exactly system + the rest), no
    // fewer would have fit, every turn is answered with the greedy continuation.
    let counts: Vec<usize> = got
        .iter()
        .filter_map(|r| {
            if let Report::Dropped(k) = r {
                Some(*k)
            } else {
                None
            }
        })
        .collect();
    assert!(
        counts.len() >= 2,
        "the test must fill the context more than once:\n{err}"
    );
    let mut want = ReferenceChat::new(&dir, chatml_render, 12, Some(system));
    want.drops = Drops::AsReported(counts);
    for l in LONG_LINES {
        want.user(l);
    }
    assert_eq!(got, want.reports, "stderr:\n{err}");
    assert_eq!(want.messages[0], ("system".to_string(), system.to_string()));
    // Every turn printed a reply line (the replies' text is checked by
    // streamed_text_is_the_whole_reply, ignored: a bug in streaming cuts some short).
    assert!(out.lines().count() >= LONG_LINES.len(), "{out}");

    // A message that cannot fit even alone is refused, and the chat goes on.
    let long = "the park ".repeat(60);
    let (_, err) = chat(
        &dir,
        &[&long, "hello"],
        &["--max-new-tokens", "12", "--greedy"],
    );
    assert!(err.contains("do not fit"), "{err}");
    assert!(
        err.contains("[turn 1:"),
        "the next message is answered: {err}"
    );
}

/// Dropping must remove whole exchanges: a lone user message dropped leaves its reply first,
/// an orphan answer (ChatML renders it), and Llama 2's template, which checks that roles
/// alternate, then refuses every later turn.
#[test]
fn chat_drops_whole_exchanges() {
    let cases: [(&str, fn(&[(String, String)]) -> String, usize, &[&str]); 2] = [
        (CHATML_TEMPLATE, chatml_render, SMALL_CONTEXT, &LONG_LINES),
        (
            LLAMA2_TEMPLATE,
            llama2_render,
            96,
            &[
                "tell me a story about a little girl",
                "what happened next in the park",
                "and then what did she do with the ball",
                "one more time please",
            ],
        ),
    ];
    for (template, render, context, lines) in cases {
        let dir = chat_model("chat-exchanges", Some(template), Some(context));
        let system = "Be brief.";
        let mut want = ReferenceChat::new(&dir, render, 8, Some(system));
        for l in lines {
            want.user(l);
        }
        assert!(
            want.reports.iter().any(|r| matches!(r, Report::Dropped(_))),
            "the test must fill the context"
        );
        let (out, err) = chat(
            &dir,
            lines,
            &["--max-new-tokens", "8", "--greedy", "--system", system],
        );
        assert!(!err.contains("error"), "{err}");
        assert_eq!(reports(&err), want.reports, "stderr:\n{err}");
        assert!(out.lines().count() >= lines.len(), "{out}");
    }
}

#[test]
fn chat_without_a_template_uses_the_builtin_one() {
    let dir = chat_model("chat-builtin", None, None);
    let mut want = ReferenceChat::new(&dir, builtin_render, 10, None);
    want.stops = vec!["\nuser:".into(), "\nsystem:".into()];
    want.user("hello");
    want.user("how are you");
    let (out, err) = chat(
        &dir,
        &["hello", "how are you"],
        &["--max-new-tokens", "10", "--greedy"],
    );
    assert_eq!(reports(&err), want.reports, "stderr:\n{err}");
    assert_eq!(out, want.stdout);
}

// ---------------------------------------------------------------------------------------------
// 6. Export to a Hugging Face (Llama) folder.

#[test]
fn export_round_trip_gives_identical_logits_ids_and_generation() {
    let native = tiny_text_model();
    let out = temp("exported");
    ok(&["export", "--model", p(native), "--to", "hf", p(&out)]);
    for file in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let config = read_json(&out.join("config.json"));
    assert_eq!(config["architectures"], json!(["LlamaForCausalLM"]));
    assert_eq!(config["model_type"], "llama");
    let arch = &read_json(&native.join("config.json"))["architecture"];
    assert_eq!(config["vocab_size"], arch["vocab_size"]);
    assert_eq!(config["num_hidden_layers"], arch["num_layers"]);
    assert_eq!(config["max_position_embeddings"], arch["context_len"]);

    let text = "ROMEO:\nWhat, ho! Is this the way? I'll go, sir.";
    let ids = tokenize(native, text);
    assert_eq!(ids.len(), text.chars().count(), "a character model");
    assert_eq!(
        tokenize(&out, text),
        ids,
        "the exported tokenizer gives the same ids"
    );
    assert_eq!(
        logits(&out, &ids[..20]),
        logits(native, &ids[..20]),
        "identical logits"
    );
    let prompt = [
        "generate",
        "text",
        "--prompt",
        "KING RICHARD",
        "--greedy",
        "--max-new-tokens",
        "30",
        "--format",
        "json",
    ];
    let run = |m: &Path| {
        let mut args = prompt.to_vec();
        args.extend(["--model", p(m)]);
        ok_json(&args)
    };
    let (a, b) = (run(native), run(&out));
    assert_eq!(a, b, "the same greedy generation");
    assert_eq!(a["ids"].as_array().unwrap().len(), 30);

    // What cannot be exported; an image model (a native folder whose modality is image) is
    // refused before anything is written.
    let image = copy_of(native, "image-model");
    edit_json(&image.join("config.json"), |c| {
        c["modality"] = json!("image")
    });
    let target = temp("image-export");
    let (again, again2, again3) = (temp("again"), temp("again"), temp("again"));
    let missing = temp("missing");
    all_fail(vec![
        bad(
            &[
                "export",
                "--model",
                p(&tiny_llama()),
                "--to",
                "hf",
                p(&again),
            ],
            "already a Hugging Face folder",
        ),
        bad(
            &["export", "--model", p(&out), "--to", "hf", p(&again2)],
            "already a Hugging Face folder",
        ),
        bad(
            &["export", "--model", p(native), "--to", "hf", p(native)],
            "another path",
        ),
        bad(
            &["export", "--model", p(&missing), "--to", "hf", p(&again3)],
            "does not exist",
        ),
        bad(
            &["export", "--model", p(&image), "--to", "hf", p(&target)],
            "image model",
        ),
    ]);
    assert!(!target.exists());
}

#[test]
fn exported_character_model_refuses_unknown_characters_like_the_native_one() {
    let native = tiny_text_model();
    let out = temp("exported-unknown");
    ok(&["export", "--model", p(native), "--to", "hf", p(&out)]);
    all_fail(vec![
        bad(
            &["tokenize", "--tokenizer", p(native), "--text", "ROMEO 接龍"],
            "not in this model's vocabulary",
        ),
        bad(
            &["tokenize", "--tokenizer", p(&out), "--text", "ROMEO 接龍"],
            "vocabulary",
        ),
        bad(
            &[
                "generate",
                "text",
                "--model",
                p(&out),
                "--prompt",
                "ROMEO 接龍",
                "--max-new-tokens",
                "2",
            ],
            "vocabulary",
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// Export to GGUF and back.

/// A native character model as an f32 GGUF file runs exactly as the folder does: the same
/// token ids (llama.cpp's tokenizer rules on the exported vocabulary), the same logits, the
/// same greedy text; and the file exports back to a Hugging Face folder with the same weights.
#[test]
fn native_model_exports_to_gguf_and_runs_the_same() {
    let native = tiny_text_model();
    let file = temp("native.gguf");
    ok(&["export", "--model", p(native), "--to", "gguf", p(&file)]);
    let text = "ROMEO:\nWhat, ho! Is this the way?";
    let ids = tokenize(native, text);
    assert_eq!(
        tokenize(&file, text),
        ids,
        "the GGUF vocabulary gives the same ids"
    );
    assert_eq!(
        logits(&file, &ids),
        logits(native, &ids),
        "identical f32 logits"
    );
    let run = |m: &Path| greedy(m, &ids, 25, &[])["ids"].clone();
    assert_eq!(run(&file), run(native), "the same greedy generation");

    let (from_native, from_gguf) = (temp("hf-native"), temp("hf-gguf"));
    ok(&[
        "export",
        "--model",
        p(native),
        "--to",
        "hf",
        p(&from_native),
    ]);
    ok(&["export", "--model", p(&file), "--to", "hf", p(&from_gguf)]);
    assert!(
        std::fs::read(from_native.join("model.safetensors")).unwrap()
            == std::fs::read(from_gguf.join("model.safetensors")).unwrap(),
        "f32 through GGUF is bit-exact"
    );
}

/// Hugging Face folder → GGUF (each weight type) → Hugging Face folder → GGUF → Hugging Face
/// folder: f32 and f16 keep every bit of what they hold, q8_0 and q4_0 give the same
/// de-quantized tensors the second time round; each file runs as its de-quantized weights do.
#[test]
fn gguf_round_trips_keep_the_weights() {
    let source = tiny_llama();
    let ids = [1u32, 45, 100, 200, 300, 411];
    let reference = logits(&source, &ids);
    for ty in ["f32", "f16", "q8_0", "q4_0"] {
        let (a, b) = (temp(&format!("{ty}-a.gguf")), temp(&format!("{ty}-b.gguf")));
        let (hf_a, hf_b) = (temp(&format!("{ty}-a")), temp(&format!("{ty}-b")));
        ok(&[
            "export",
            "--model",
            p(&source),
            "--to",
            "gguf",
            "--weights",
            ty,
            p(&a),
        ]);
        ok(&["export", "--model", p(&a), "--to", "hf", p(&hf_a)]);
        ok(&[
            "export",
            "--model",
            p(&hf_a),
            "--to",
            "gguf",
            "--weights",
            ty,
            p(&b),
        ]);
        ok(&["export", "--model", p(&b), "--to", "hf", p(&hf_b)]);
        let weights = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
        assert!(
            weights(&hf_a) == weights(&hf_b),
            "{ty}: the same de-quantized tensors"
        );
        // The file runs its own types (de-quantized in registers, f32 activations): the same
        // logits as the f32 folder of its de-quantized weights, to float rounding.
        let worst = |x: &[Vec<f64>], y: &[Vec<f64>]| {
            x.iter()
                .zip(y)
                .map(|(x, y)| max_abs_diff(x, y))
                .fold(0.0, f64::max)
        };
        let rows = logits(&a, &ids);
        let off = worst(&rows, &logits(&hf_a, &ids));
        assert!(off < 1e-4, "{ty}: {off} from its de-quantized weights");
        if ty == "f32" {
            let off = worst(&rows, &reference);
            assert!(off < 1e-5, "f32: {off} from the source folder");
        }
    }
    let image = copy_of(tiny_text_model(), "image-for-gguf");
    edit_json(&image.join("config.json"), |c| {
        c["modality"] = json!("image")
    });
    let (target, target2) = (temp("refused.gguf"), temp("refused2.gguf"));
    all_fail(vec![
        bad(
            &["export", "--model", p(&image), "--to", "gguf", p(&target)],
            "only text models can be exported",
        ),
        bad_with(
            &[
                "export",
                "--model",
                p(&source),
                "--to",
                "gguf",
                "--weights",
                "q3_k",
                p(&target2),
            ],
            &["--weights", "q3_k", "q8_0"],
        ),
        bad(
            &[
                "export",
                "--model",
                p(&source),
                "--to",
                "hf",
                "--weights",
                "q8_0",
                p(&target2),
            ],
            "--weights",
        ),
    ]);
    assert!(!target.exists() && !target2.exists());
}

/// SmolLM2-135M-Instruct, the 4-bit file people download, answers a question in chat.
#[test]
#[ignore = "needs SmolLM2"]
fn smollm2_knows_the_capital_of_france() {
    let file = smollm2();
    let (out, _) = chat(
        &file,
        &["What is the capital of France?"],
        &["--greedy", "--max-new-tokens", "30"],
    );
    assert!(out.contains("Paris"), "the reply: {out}");
    // The same model exported to f32 and to q8_0 gives the same answer.
    let q8 = temp("smollm2-q8_0.gguf");
    ok(&[
        "export",
        "--model",
        p(&file),
        "--to",
        "gguf",
        "--weights",
        "q8_0",
        p(&q8),
    ]);
    let (again, _) = chat(
        &q8,
        &["What is the capital of France?"],
        &["--greedy", "--max-new-tokens", "30"],
    );
    assert!(again.contains("Paris"), "the q8_0 reply: {again}");
}

/// The SmolLM2 file `scripts/fetch-smollm2.sh` fetches.
fn smollm2() -> PathBuf {
    let path = std::env::var_os("JIELONG_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(".cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-smollm2.sh",
        path.display()
    );
    path
}

// ---------------------------------------------------------------------------------------------
// Streaming.

/// What is streamed to the terminal is the whole decoded text. A Llama tokenizer's ByteFallback
/// decoder turns a valid byte token into U+FFFD once an invalid byte follows it, so an earlier
/// decode is not a prefix of a later one; TextStream has then already printed the byte's
/// character, `printed` falls inside a U+FFFD, and nothing more is printed for that reply.
#[test]
fn streamed_text_is_the_whole_reply() {
    let dir = tiny_llama();
    for prompt in ["hello", "Once upon a time", "Lily and Tom"] {
        let args = [
            "generate",
            "text",
            "--model",
            p(&dir),
            "--prompt",
            prompt,
            "--greedy",
            "--max-new-tokens",
            "40",
        ];
        let streamed = stdout(&ok(&args));
        let mut json_args = args.to_vec();
        json_args.extend(["--format", "json"]);
        let whole = ok_json(&json_args);
        assert_eq!(
            streamed,
            format!("{prompt}{}\n", whole["text"].as_str().unwrap()),
            "prompt {prompt:?}"
        );
    }
    // The same in chat: every reply printed whole.
    let dir = chat_model("chat-stream", Some(CHATML_TEMPLATE), Some(SMALL_CONTEXT));
    let system = "Keep this system prompt.";
    let (out, err) = chat(
        &dir,
        &LONG_LINES,
        &["--max-new-tokens", "12", "--greedy", "--system", system],
    );
    let counts: Vec<usize> = reports(&err)
        .iter()
        .filter_map(|r| {
            if let Report::Dropped(k) = r {
                Some(*k)
            } else {
                None
            }
        })
        .collect();
    let mut want = ReferenceChat::new(&dir, chatml_render, 12, Some(system));
    want.drops = Drops::AsReported(counts);
    for l in LONG_LINES {
        want.user(l);
    }
    assert_eq!(out, want.stdout);
}
