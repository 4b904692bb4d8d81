#!/usr/bin/env python3
"""Regenerates the small Hugging Face reference folders under tests/fixtures/hf/.

Each fixture is a tiny random-weight model saved by Hugging Face transformers itself
(`save_pretrained`), plus `reference.json` with greedy ids and logits computed by transformers
on PyTorch: an implementation independent of jielong's, to test jielong's Hugging Face loader
(crates/nn/src/folder.rs `from_hf_config`, crates/nn/src/model.rs `Transformer::load`).

    qwen2-bias-tied       Qwen2ForCausalLM: q/k/v biases (drawn, non-zero), tied embeddings,
                          grouped-query attention, rope_theta 1e6, use_sliding_window false.
    llama3-rope-headdim   LlamaForCausalLM: head_dim (16) != hidden / heads (48 / 4 = 12),
                          llama3 rope_scaling, attention_bias true (q/k/v AND o_proj biases).
    mistral-sharded-bf16  MistralForCausalLM: bfloat16 weights in 2+ shards with
                          model.safetensors.index.json, multi-query attention (1 kv head).

Setup (Debian's CPU torch; the PyPI torch wheel does not work on that machine):

    apt-get install -y python3-torch            # torch 1.13
    /usr/bin/python3 -m venv --system-site-packages /tmp/hfvenv
    /tmp/hfvenv/bin/pip install transformers==4.49.0 safetensors tokenizers
    /tmp/hfvenv/bin/python scripts/make_hf_fixtures.py [--out tests/fixtures/hf] [--only NAME]

It copies the 512-token tokenizer (tokenizer.json, tokenizer_config.json,
special_tokens_map.json) from /work/shared/reference/tiny-llama-gqa (override with
--tokenizer-dir), and writes into each fixture folder: config.json, generation_config.json,
the weights (model.safetensors, or shards + model.safetensors.index.json), the tokenizer
files, construction.json (how the weights were drawn) and reference.json (prompt, greedy ids,
logits, margins, versions). The run is deterministic (fixed seeds, one thread); every check
below is an assertion, so a successful run means all of them held.
"""

import argparse
import json
import math
import os
import shutil
import sys

import torch

# transformers 4.49's generate() crashes inside torch.distributed with Debian's torch 1.13 on
# this Python; the fixtures never use distributed code.
torch.distributed.is_available = lambda: False

import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import (  # noqa: E402
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

HF_STD = 0.02  # initializer_range: transformers draws every Linear and Embedding ~ N(0, 0.02^2)
N_NEW = 32  # greedy tokens appended
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]

# Prompts (TinyStories-like text, which the 512-token tokenizer was trained on). The tokenizer
# adds BOS (1) itself.
PROMPTS = {
    "qwen2-bias-tied": "Once upon a time, there was a little girl named Lily. She loved to play",
    "llama3-rope-headdim": (
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
        "park with her friends. One day, she saw a big red ball under a tree."
    ),
    "mistral-sharded-bf16": "Tom and his mom went to the store to buy some apples. Tom saw a big",
}


# ----------------------------------------------------------------------------------------------
# Fixture definitions


def fixture_specs():
    common = dict(
        vocab_size=512,
        bos_token_id=1,
        eos_token_id=2,
        hidden_act="silu",
        initializer_range=HF_STD,
    )
    return [
        dict(
            name="qwen2-bias-tied",
            cls=Qwen2ForCausalLM,
            config=Qwen2Config(
                **common,
                hidden_size=48,
                intermediate_size=128,
                num_hidden_layers=3,
                num_attention_heads=4,  # head_dim 12 (Qwen2Config has no head_dim)
                num_key_value_heads=2,
                max_position_embeddings=1024,
                rope_theta=1000000.0,
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
                use_sliding_window=False,
                # Real Qwen2 configs carry a sliding_window while use_sliding_window is false;
                # a loader must then ignore it (context 1024, not 512). transformers 4.49 still
                # applies config.sliding_window in one of its mask paths, so keep it above the
                # tested length (prompt + 32 new < 100) so that it cannot matter here.
                sliding_window=512,
                max_window_layers=3,
            ),
            seed=1,
            residual_gain=6.0,  # see target_stds
            bias_std={"q_proj": 0.5, "k_proj": 0.5, "v_proj": 0.2},  # q/k/v biases
            logits_rows_head=8,
            logits_rows_tail=0,
            save_dtype=torch.float32,
            shard=None,
        ),
        dict(
            name="llama3-rope-headdim",
            cls=LlamaForCausalLM,
            config=LlamaConfig(
                **common,
                hidden_size=48,
                intermediate_size=128,
                num_hidden_layers=3,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=16,  # != 48 / 4
                max_position_embeddings=512,
                rope_theta=10000.0,
                rope_scaling={
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 64,
                },
                rms_norm_eps=1e-5,
                tie_word_embeddings=False,
                attention_bias=True,  # Llama: q, k, v AND o_proj get biases
                mlp_bias=False,
            ),
            seed=2,
            bias_std={"q_proj": 0.5, "k_proj": 0.5, "v_proj": 0.1, "o_proj": 0.1},
            logits_rows_head=8,
            logits_rows_tail=8,  # the last prompt positions, past original_max_position_embeddings
            save_dtype=torch.float32,
            shard=None,
        ),
        dict(
            name="mistral-sharded-bf16",
            cls=MistralForCausalLM,
            config=MistralConfig(
                **common,
                hidden_size=64,
                intermediate_size=160,
                num_hidden_layers=3,
                num_attention_heads=4,  # head_dim 16
                num_key_value_heads=1,  # multi-query attention
                max_position_embeddings=1024,
                # Mistral-style window: equal to full attention for any length <= 256 (the
                # fixture's sequences are < 100); jielong takes min(1024, 256) = 256 as context.
                sliding_window=256,
                rope_theta=10000.0,
                rms_norm_eps=1e-5,
                tie_word_embeddings=False,
            ),
            seed=3,
            bias_std=None,
            logits_rows_head=8,
            logits_rows_tail=0,
            save_dtype=torch.bfloat16,
            shard="200KB",
        ),
    ]


# ----------------------------------------------------------------------------------------------
# Weights


def target_stds(cfg, residual_gain=1.0):
    """Standard deviations the weights are scaled to: those of tiny-llama-gqa (hidden 64) expressed
    per fan-in, so that every fixture has logits with real spread and a stable greedy path.
    residual_gain scales the two projections that write into the residual stream (o_proj,
    down_proj): with tied embeddings the logits are norm(x) . E, and unless the blocks outweigh
    the input token's own embedding in x, greedy decoding just repeats the last token."""
    h = cfg.hidden_size
    head_dim = getattr(cfg, "head_dim", None) or h // cfg.num_attention_heads
    q_width = cfg.num_attention_heads * head_dim
    return {
        "embed_tokens": 1.0,
        "q_proj": 1.5 / math.sqrt(h),
        "k_proj": 1.5 / math.sqrt(h),
        "v_proj": 1.0 / math.sqrt(h),
        "o_proj": residual_gain / math.sqrt(q_width),
        "gate_proj": 1.0 / math.sqrt(h),
        "up_proj": 1.0 / math.sqrt(h),
        "down_proj": residual_gain / math.sqrt(cfg.intermediate_size),
        "lm_head": 3.0 / math.sqrt(h),
    }


def build_model(spec):
    """torch.manual_seed(seed); Cls(config) (transformers' own init: N(0, 0.02^2) weights, zero
    biases, unit norms); weights multiplied up to target_stds; then biases and norms drawn, in
    the order construction.json records."""
    cfg = spec["config"]
    torch.manual_seed(spec["seed"])
    model = spec["cls"](cfg).float().eval()
    stds = target_stds(cfg, spec.get("residual_gain", 1.0))
    multipliers = {k: v / HF_STD for k, v in stds.items()}
    with torch.no_grad():
        # named_parameters() lists a tied lm_head only once (as embed_tokens): no double scaling.
        for name, p in model.named_parameters():
            if not name.endswith(".weight") or "norm" in name:
                continue
            key = name.split(".")[-2]
            p.mul_(multipliers[key])
        bias_order = []
        if spec["bias_std"] is not None:
            for l, layer in enumerate(model.model.layers):
                for proj in ["q_proj", "k_proj", "v_proj", "o_proj"]:
                    lin = getattr(layer.self_attn, proj)
                    if lin.bias is not None:
                        lin.bias.copy_(torch.randn(lin.bias.shape) * spec["bias_std"][proj])
                        bias_order.append(f"model.layers.{l}.self_attn.{proj}.bias")
        for l, layer in enumerate(model.model.layers):
            for n in ["input_layernorm", "post_attention_layernorm"]:
                getattr(layer, n).weight.copy_(0.5 + torch.rand(cfg.hidden_size))
        model.model.norm.weight.copy_(0.5 + torch.rand(cfg.hidden_size))
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    construction = {
        "seed": f"torch.manual_seed({spec['seed']}) before {spec['cls'].__name__}(config) "
        f"(transformers {transformers.__version__}, torch {torch.__version__} Debian CPU)",
        "hf_init": "all Linear and Embedding weights ~ N(0, 0.02^2) (initializer_range 0.02), "
        "biases 0, RMSNorm weights 1",
        "target_stds_rule": "tiny-llama-gqa's stds (hidden 64) per fan-in: embed_tokens 1, q/k "
        "1.5/sqrt(hidden), v/gate/up 1/sqrt(hidden), o_proj residual_gain/sqrt(heads*head_dim), "
        "down_proj residual_gain/sqrt(intermediate), lm_head 3/sqrt(hidden)",
        "residual_gain": spec.get("residual_gain", 1.0),
        "target_stds": {k: v for k, v in stds.items() if not (k == "lm_head" and cfg.tie_word_embeddings)},
        "multipliers_applied_to_hf_init": {
            k: v for k, v in multipliers.items() if not (k == "lm_head" and cfg.tie_word_embeddings)
        },
        "biases": (
            f"after scaling, each drawn as torch.randn(n) * std with std by projection {spec['bias_std']}, in this order: "
            + ", ".join(bias_order[: len(bias_order) // cfg.num_hidden_layers]) + " ... for every layer"
            if bias_order
            else "none (the architecture has no attention biases)"
        ),
        "rmsnorm_weights": "then overwritten with 0.5 + torch.rand(hidden) in order: for each layer "
        "(input_layernorm, post_attention_layernorm), then the final norm",
        "tied_embeddings": bool(cfg.tie_word_embeddings),
        "n_params": sum(p.numel() for p in model.parameters()),
    }
    return model, construction


# ----------------------------------------------------------------------------------------------
# Reference computations


@torch.no_grad()
def full_logits(model, ids):
    """[len, vocab] next-token logits of one forward pass over ids, without a cache."""
    return model(torch.tensor([ids]), use_cache=False).logits[0].float()


@torch.no_grad()
def greedy(model, prompt_ids):
    out = model.generate(
        torch.tensor([prompt_ids]),
        do_sample=False,
        max_new_tokens=N_NEW,
        eos_token_id=None,
        pad_token_id=0,
        use_cache=True,
        return_dict_in_generate=True,
        output_logits=True,
    )
    new = out.sequences[0, len(prompt_ids):].tolist()
    assert len(new) == N_NEW, f"generate stopped early: {len(new)} tokens"
    return new, torch.stack([s[0].float() for s in out.logits])  # [N_NEW, vocab]


@torch.no_grad()
def greedy_nocache_loop(model, prompt_ids):
    ids = list(prompt_ids)
    for _ in range(N_NEW):
        ids.append(int(full_logits(model, ids)[-1].argmax()))
    return ids[len(prompt_ids):]


def rows(t):
    return [[round(float(x), 6) for x in row] for row in t]


def reference(model, spec, tok):
    cfg = spec["config"]
    text = PROMPTS[spec["name"]]
    prompt_ids = tok.encode(text).ids
    assert prompt_ids[0] == 1 and 20 <= len(prompt_ids) <= 100, (len(prompt_ids), prompt_ids[:3])

    new_ids, gen_logits = greedy(model, prompt_ids)
    loop_ids = greedy_nocache_loop(model, prompt_ids)
    assert loop_ids == new_ids, "greedy with and without the cache disagree"

    seq = prompt_ids + new_ids
    full = full_logits(model, seq)  # one pass over prompt + greedy ids
    path = full[len(prompt_ids) - 1: len(seq) - 1]  # the N_NEW steps' logits
    assert path.argmax(-1).tolist() == new_ids
    gen_vs_full = float((gen_logits - path).abs().max())
    assert gen_vs_full < 1e-3, gen_vs_full
    top5 = path.topk(5, dim=-1)
    margins = (top5.values[:, 0] - top5.values[:, 1]).tolist()

    prompt_logits = full_logits(model, prompt_ids)
    n_head = spec["logits_rows_head"]
    ref = {
        "fixture": spec["name"],
        "architecture": spec["cls"].__name__,
        "prompt_text": text,
        "prompt_ids": prompt_ids,
        "greedy_new_ids": new_ids,
        "n_new": N_NEW,
        "greedy_text": tok.decode(new_ids),
        "how": {
            "call": f"model.generate(torch.tensor([prompt_ids]), do_sample=False, max_new_tokens={N_NEW}, "
            "eos_token_id=None, pad_token_id=0, use_cache=True)",
            "note": "eos_token_id=None: no early stop on </s> (2); BOS (1) is not a stop token either",
            "dtype": "float32 (weights as saved, upcast to float32 where saved in bfloat16)",
            "attn_implementation": model.config._attn_implementation,
            "threads": torch.get_num_threads(),
        },
        "eos_in_greedy": [i for i, t in enumerate(new_ids) if t == 2],
        "bos_in_greedy": [i for i, t in enumerate(new_ids) if t == 1],
        "greedy_nocache_loop_equal": True,
        "max_abs_diff_generate_scores_vs_full_forward": gen_vs_full,
        "step_top5_ids": top5.indices.tolist(),
        "step_top5_logits": [[round(v, 6) for v in r] for r in top5.values.tolist()],
        "step_top1_top2_margin": margins,
        "min_margin": min(margins),
        "logits": {
            "note": f"next-token logits after each of the first {n_head} prompt prefixes, from one "
            "forward pass over input_ids without a cache",
            "input_ids": prompt_ids[:n_head],
            "values": rows(full_logits(model, prompt_ids[:n_head])),
        },
        "logit_stats": {
            "mean_std_over_vocab": float(path.std(-1).mean()),
            "max_abs": float(path.abs().max()),
        },
        "versions": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "tokenizers": tokenizers.__version__,
            "safetensors": safetensors.__version__,
        },
    }
    # The first rows of a pass over the whole prompt equal those of a pass over its first n.
    assert float((prompt_logits[:n_head] - full_logits(model, prompt_ids[:n_head])).abs().max()) < 1e-4
    n_tail = spec["logits_rows_tail"]
    if n_tail:
        pos = list(range(len(prompt_ids) - n_tail, len(prompt_ids)))
        ref["logits_tail"] = {
            "note": "next-token logits at the given positions (0-based; the row at position p "
            "follows prompt_ids[0..=p]) of one forward pass over the whole prompt (input_ids) "
            "without a cache",
            "input_ids": prompt_ids,
            "positions": pos,
            "values": rows(prompt_logits[pos]),
        }
    return ref, prompt_ids, prompt_logits


# ----------------------------------------------------------------------------------------------
# Checks that the fixture catches a loader that skips a feature


@torch.no_grad()
def ablation(model, prompt_ids, base_logits, what):
    """Max |logit difference| over the prompt when a feature is dropped from a copy of model."""
    cfg = model.config.to_dict()
    cls = type(model)
    alt_cfg = type(model.config).from_dict(cfg)
    if what == "rope_scaling":
        alt_cfg.rope_scaling = None
    alt = cls(alt_cfg).float().eval()
    alt.load_state_dict(model.state_dict())
    for layer in alt.model.layers:
        for proj in ["q_proj", "k_proj", "v_proj", "o_proj"]:
            lin = getattr(layer.self_attn, proj)
            if lin.bias is not None and (what == "biases" or what == f"{proj}.bias"):
                lin.bias.zero_()
    if what == "norms":
        for layer in alt.model.layers:
            layer.input_layernorm.weight.fill_(1.0)
            layer.post_attention_layernorm.weight.fill_(1.0)
        alt.model.norm.weight.fill_(1.0)
    d = (full_logits(alt, prompt_ids) - base_logits).abs()
    return alt, d


# ----------------------------------------------------------------------------------------------


def save(model, spec, out_dir, tok_dir):
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    to_save = model
    if spec["save_dtype"] != torch.float32:
        to_save = spec["cls"](spec["config"]).eval()
        to_save.load_state_dict(model.state_dict())
        to_save = to_save.to(spec["save_dtype"])
    kwargs = {"safe_serialization": True}
    if spec["shard"]:
        kwargs["max_shard_size"] = spec["shard"]
    to_save.save_pretrained(out_dir, **kwargs)
    for f in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(tok_dir, f), os.path.join(out_dir, f))


def weight_files(out_dir):
    idx = os.path.join(out_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        return sorted(set(json.load(open(idx))["weight_map"].values()))
    return ["model.safetensors"]


def stored_tensors(out_dir):
    names = {}
    for f in weight_files(out_dir):
        with safe_open(os.path.join(out_dir, f), "pt") as s:
            for k in s.keys():
                names[k] = (f, s.get_slice(k).get_dtype(), s.get_slice(k).get_shape())
    return names


def make(spec, out_root, tok_dir, tok):
    name = spec["name"]
    out_dir = os.path.join(out_root, name)
    print(f"== {name}", flush=True)
    model, construction = build_model(spec)
    save(model, spec, out_dir, tok_dir)

    # Reference from the saved folder, read back into a float32 model (bf16 weights upcast).
    loaded = spec["cls"].from_pretrained(out_dir, torch_dtype=torch.float32).eval()
    stored = stored_tensors(out_dir)
    checks = {"stored_tensors": len(stored), "weight_files": weight_files(out_dir)}
    dtypes = sorted({v[1] for v in stored.values()})
    checks["stored_dtypes"] = dtypes
    cfg = spec["config"]
    if cfg.tie_word_embeddings:
        assert "lm_head.weight" not in stored, "tied model saved lm_head.weight"
    else:
        assert "lm_head.weight" in stored
    if spec["save_dtype"] == torch.bfloat16:
        assert dtypes == ["BF16"], dtypes
        assert len(checks["weight_files"]) >= 2, checks["weight_files"]
        # The loaded float32 weights are exactly the bf16 ones, upcast.
        for n, p in loaded.state_dict().items():
            q = model.state_dict()[n].to(torch.bfloat16).float()
            assert torch.equal(p, q), n
        construction["saved_as"] = (
            "weights drawn in float32 as above, then rounded to bfloat16 (model.to(torch.bfloat16)) "
            f"and saved with save_pretrained(max_shard_size={spec['shard']!r}, safe_serialization=True)"
        )
    else:
        assert dtypes == ["F32"], dtypes
        for n, p in loaded.state_dict().items():
            assert torch.equal(p, model.state_dict()[n]), n
        construction["saved_as"] = "float32, save_pretrained(safe_serialization=True)"
    if spec["bias_std"] is not None:
        bias_names = sorted(k for k in stored if k.endswith(".bias"))
        checks["bias_tensors"] = bias_names
        for k in bias_names:
            assert float(loaded.state_dict()[k].abs().max()) > 0.1, k

    ref, prompt_ids, prompt_logits = reference(loaded, spec, tok)
    if spec["save_dtype"] == torch.bfloat16:
        ref["how"]["note_dtype"] = (
            "reference computed by the saved bfloat16 weights upcast to float32 "
            "(from_pretrained(torch_dtype=torch.float32)), then float32 arithmetic throughout; a "
            "loader that converts bf16 to f32 on load should match to float32 accuracy"
        )

    # Sensitivity: logits when a feature is dropped must differ clearly from the reference.
    sens = {}
    features = ["norms"]
    if spec["bias_std"] is not None:
        features.append("biases")
        features += [f"{proj}.bias" for proj in spec["bias_std"]]
    if getattr(cfg, "rope_scaling", None):
        features.append("rope_scaling")
    for what in features:
        alt, d = ablation(loaded, prompt_ids, prompt_logits, what)
        entry = {
            "max_abs_logit_diff_all_prompt_rows": float(d.max()),
            "max_abs_logit_diff_first8_rows": float(d[:8].max()),
            "mean_abs_logit_diff_all_prompt_rows": float(d.mean()),
        }
        if spec["logits_rows_tail"]:
            entry["max_abs_logit_diff_tail_rows"] = float(d[-spec["logits_rows_tail"]:].max())
        alt_new, _ = greedy(alt, prompt_ids)
        entry["greedy_ids_differ_at_step"] = next(
            (i for i, (a, b) in enumerate(zip(alt_new, ref["greedy_new_ids"])) if a != b), None
        )
        assert float(d.max()) > 0.5, (what, float(d.max()))
        sens[f"without_{what}"] = entry
    ref["sensitivity"] = {
        "note": "how far transformers' own logits move (over the whole prompt) when the feature "
        "is dropped from the model: a loader that ignores it misses by about this much",
        **sens,
    }
    if getattr(cfg, "rope_scaling", None):
        assert sens["without_rope_scaling"]["max_abs_logit_diff_tail_rows"] > 1.0

    construction["checks"] = checks
    with open(os.path.join(out_dir, "construction.json"), "w") as f:
        json.dump(construction, f, indent=1)
        f.write("\n")
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(ref, f)
        f.write("\n")
    for x in os.listdir(out_dir):
        os.chmod(os.path.join(out_dir, x), 0o644)  # save_pretrained leaves the weights 0600
    size = sum(os.path.getsize(os.path.join(out_dir, x)) for x in os.listdir(out_dir))
    assert size < 1_000_000, size
    print(
        f"   {size} bytes, files {checks['weight_files']}, min_margin {ref['min_margin']:.4f}, "
        f"logit std {ref['logit_stats']['mean_std_over_vocab']:.2f}",
        flush=True,
    )
    for k, v in sens.items():
        print(f"   {k}: {v}", flush=True)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "hf"))
    ap.add_argument("--tokenizer-dir", default="/work/shared/reference/tiny-llama-gqa")
    ap.add_argument("--only", default=None, help="make only this fixture")
    args = ap.parse_args()
    assert transformers.__version__ == "4.49.0", "the fixtures were made with transformers 4.49.0"
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    tok = tokenizers.Tokenizer.from_file(os.path.join(args.tokenizer_dir, "tokenizer.json"))
    specs = [s for s in fixture_specs() if args.only in (None, s["name"])]
    if not specs:
        sys.exit(f"no fixture named {args.only}")
    for spec in specs:
        make(spec, os.path.normpath(args.out), args.tokenizer_dir, tok)


if __name__ == "__main__":
    main()
