#!/usr/bin/env python3
"""Regenerates tests/fixtures/gguf-models/: small Llama-family models as GGUF files at every
weight type jielong reads, with reference outputs computed by an implementation independent of
jielong (transformers' own GGUF loader on PyTorch), for crates/nn/tests/gguf_models.rs. Tests
never run Python.

Models (the Hugging Face fixtures converted, plus two drawn here):

    qwen2-bias-tied        tests/fixtures/hf/qwen2-bias-tied       qwen2: q/k/v biases, tied, no Q/K permutation
    llama3-rope-headdim    tests/fixtures/hf/llama3-rope-headdim   llama: Llama 3 rope (rope_freqs tensor),
                                                                   head_dim 16 != 48/4 (attention.key_length),
                                                                   biases on q/k/v/o (q/k biases permuted)
    mistral-sharded-bf16   tests/fixtures/hf/mistral-sharded-bf16  llama (as llama.cpp converts Mistral): MQA
    tiny-llama-gqa         ../shared/reference/tiny-llama-gqa      llama: GQA; intermediate 172, so down_proj
                                                                   cannot be quantized to 32-blocks (F16 fallback)
    llama-w32              drawn here: every width a multiple of 32 (hidden 64, 4 heads / 2 KV heads of 16,
                           intermediate 128, 2 layers)
    llama-k256             drawn here: every width a multiple of 256 (hidden 256, 4 heads / 2 KV heads of 64,
                           intermediate 256, 2 layers), quantized to Q4_K (attention), Q5_K (MLP) and Q6_K
                           (embedding, output) by the simple K-quant quantizer below (gguf-py cannot quantize K-quants):
                           valid blocks, checked by de-quantizing them with gguf-py.

Conversion follows llama.cpp's convert_hf_to_gguf.py: gguf-py's tensor name map, the Q/K row
permutation (`LlamaModel.permute`) for llama (not qwen2), 1-D tensors F32, the hyper-parameter
keys its LlamaModel / Qwen2Model write, Llama 3's `rope_freqs.weight` divisors, and a fallback
to F16 for matrices whose rows are not whole blocks. (One deliberate difference: the converter
reads `original_max_position_embeddings` from the top level of config.json, where Llama 3 configs
do not have it, and so always uses 8192; the fixture's rope_scaling says 64, and the divisors are
computed with 64 so that the GGUF file is the same model.) Types the converter does not write
(Q4_0, Q4_1, Q5_0, Q5_1) are quantized with gguf.quants.quantize, as llama-quantize would (every
matrix at the one type, "pure").

References: each GGUF file is read by transformers 4.49's own GGUF loader
(`transformers.modeling_gguf_pytorch_utils.load_gguf_checkpoint`, which de-quantizes with
gguf-py and undoes the Q/K permutation itself) into the model class built from the source
config, and run in float32 on PyTorch. (`from_pretrained(gguf_file=...)` itself needs torch 2's
`with torch.device("meta")`; Debian's torch is 1.13, so the loader is called directly. Its
config-from-metadata path is not used: in 4.49 it ignores attention biases, `rope_freqs`
and `attention.key_length`, and has no "mistral" tensor map; the source config is given instead,
and the Mistral fixture runs as the equivalent LlamaForCausalLM, its sliding window of 256
being longer than any sequence here.)

Setup and use (from the repository root):

    apt-get install -y python3-torch
    /usr/bin/python3 -m venv --system-site-packages /work/venv-ggufmodel
    /work/venv-ggufmodel/bin/pip install transformers==4.49.0 gguf==0.19.0 safetensors tokenizers
    /work/venv-ggufmodel/bin/python scripts/make_gguf_model_fixtures.py

Deterministic (seeded); every check is an assertion.
"""

import json
import math
import platform
import sys
from pathlib import Path

import numpy as np
import torch

torch.distributed.is_available = lambda: False  # noqa: E731 (generate() crashes otherwise)

import gguf  # noqa: E402
import transformers  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "gguf-models"
HF = ROOT / "tests" / "fixtures" / "hf"
SHARED = ROOT.parent / "shared" / "reference"
TOKENIZER_DIR = SHARED / "tiny-llama-gqa"
SEED = 20261204
N_NEW = 20

torch.set_num_threads(2)


# ---- vocabulary ------------------------------------------------------------------------------


def spm_vocab():
    """The 512-token tokenizer of tiny-llama-gqa as a llama (SentencePiece) GGUF vocabulary:
    tokens by id, scores from the merge order (the token a merge of rank r makes scores -r, so
    llama.cpp's highest-score-first merging follows the BPE ranks), types (unknown, control,
    byte, normal)."""
    t = json.loads((TOKENIZER_DIR / "tokenizer.json").read_text())
    vocab = t["model"]["vocab"]
    inv = {i: s for s, i in vocab.items()}
    tokens = [inv[i] for i in range(len(inv))]
    score = {}
    for rank, m in enumerate(t["model"]["merges"]):
        left, right = m if isinstance(m, list) else m.split(" ", 1)
        score.setdefault(left + right, -float(rank + 1))
    scores = [score.get(tok, 0.0) for tok in tokens]
    types = []
    for i, tok in enumerate(tokens):
        if tok == "<unk>":
            types.append(gguf.TokenType.UNKNOWN)
        elif tok in ("<s>", "</s>"):
            types.append(gguf.TokenType.CONTROL)
        elif len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">"):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    return tokens, scores, types


def add_vocab(w):
    tokens, scores, types = spm_vocab()
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.add_chat_template(
        "{% for m in messages %}{{ bos_token }}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}"
        "{% endfor %}{% if add_generation_prompt %}{{ bos_token }}assistant:{% endif %}"
    )
    return len(tokens)


# ---- conversion (llama.cpp's converter, in small) --------------------------------------------


def permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_divisors(cfg):
    """convert_hf_to_gguf.py LlamaModel.generate_extra_tensors (with the rope_scaling's own
    original_max_position_embeddings; see the module docstring)."""
    rs = cfg["rope_scaling"]
    base = cfg.get("rope_theta", 10000.0)
    dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor = rs.get("factor", 8.0)
    low = rs.get("low_freq_factor", 1.0)
    high = rs.get("high_freq_factor", 4.0)
    old = rs["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def to_gguf(path, arch, cfg, state, qtype_of, vocab=True, raw=None):
    """Writes `state` (Hugging Face names -> float32 arrays) as a GGUF file of `arch`.
    `qtype_of(hf_name, array)` gives each matrix's type; `raw` maps GGUF names to (bytes, type)
    for tensors given as ready blocks. Returns {gguf name: type name}."""
    arch_enum = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[arch]
    n_layers = cfg["num_hidden_layers"]
    name_map = gguf.get_tensor_name_map(arch_enum, n_layers)
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads

    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"jielong fixture {path.stem}")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(n_layers)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    if cfg.get("head_dim") is not None:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    if arch == "llama":
        w.add_vocab_size(cfg["vocab_size"])
        w.add_rope_dimension_count(head_dim)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    if vocab:
        assert add_vocab(w) == cfg["vocab_size"]

    types = {}
    for hf_name, data in state.items():
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        new = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        assert new is not None, hf_name
        if raw and new in raw:
            blocks, qt = raw[new]
            w.add_tensor(new, blocks, raw_shape=blocks.shape, raw_dtype=qt)
            types[new] = qt.name
            continue
        data = np.ascontiguousarray(data, dtype=np.float32)
        if arch == "llama" and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = permute(data, heads, heads)
        if arch == "llama" and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = permute(data, heads, kv_heads)
        qt = T.F32 if data.ndim == 1 else qtype_of(hf_name, data)
        if qt not in (T.F32, T.F16) and data.shape[-1] % gguf.GGML_QUANT_SIZES[qt][0] != 0:
            qt = T.F16  # the converter's fallback (gguf.QuantError -> F16)
        if qt == T.F32:
            w.add_tensor(new, data)
        elif qt == T.F16:
            w.add_tensor(new, data.astype(np.float16))
        else:
            q = gguf.quants.quantize(data, qt)
            w.add_tensor(new, q, raw_shape=q.shape, raw_dtype=qt)
        types[new] = qt.name
    if cfg.get("rope_scaling") and cfg["rope_scaling"].get("rope_type") == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_divisors(cfg))
        types["rope_freqs.weight"] = "F32"
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return types


# ---- K-quant blocks (a simple quantizer; gguf-py can only de-quantize these) ----------------


def f16(x):
    return np.asarray(x, dtype=np.float16)


def pack_scales_k4(sc, m):
    """8 six-bit scales and mins into ggml's 12 bytes (get_scale_min_k4's inverse)."""
    q = np.zeros(12, dtype=np.uint8)
    for j in range(8):
        if j < 4:
            q[j] |= sc[j] & 63
            q[j + 4] |= m[j] & 63
        else:
            q[j + 4] = (sc[j] & 0xF) | ((m[j] & 0xF) << 4)
            q[j - 4] |= (sc[j] >> 4) << 6
            q[j] |= (m[j] >> 4) << 6
    return q


def affine_subblocks(x, qmax):
    """Per 32-value sub-block: scale and min (value = d*sc*q - dmin*m) with 6-bit sc, m."""
    xs = x.reshape(8, 32)
    lo = np.minimum(xs.min(axis=1), 0.0)
    hi = xs.max(axis=1)
    scale = np.maximum(hi - lo, 1e-8) / qmax
    mins = -lo
    d = f16(scale.max() / 63).astype(np.float32)
    dmin = f16(max(mins.max(), 1e-8) / 63).astype(np.float32)
    sc = np.clip(np.round(scale / d), 1, 63).astype(np.uint8)
    m = np.clip(np.round(mins / dmin), 0, 63).astype(np.uint8)
    q = np.clip(np.round((xs + dmin * m[:, None]) / (d * sc[:, None])), 0, qmax).astype(np.uint8)
    return d, dmin, sc, m, q


def q4_k_block(x):
    d, dmin, sc, m, q = affine_subblocks(x, 15)
    qs = np.zeros(128, dtype=np.uint8)
    for c in range(4):
        qs[32 * c : 32 * c + 32] = q[2 * c] | (q[2 * c + 1] << 4)
    return np.concatenate([f16([d, dmin]).view(np.uint8), pack_scales_k4(sc, m), qs])


def q5_k_block(x):
    d, dmin, sc, m, q = affine_subblocks(x, 31)
    qs = np.zeros(128, dtype=np.uint8)
    qh = np.zeros(32, dtype=np.uint8)
    for c in range(4):
        qs[32 * c : 32 * c + 32] = (q[2 * c] & 0xF) | ((q[2 * c + 1] & 0xF) << 4)
    for j in range(8):
        qh |= ((q[j] >> 4) & 1).astype(np.uint8) << j
    return np.concatenate([f16([d, dmin]).view(np.uint8), pack_scales_k4(sc, m), qh, qs])


def q6_k_block(x):
    xg = x.reshape(16, 16)
    amax = np.abs(xg).max(axis=1)
    scale = np.maximum(amax, 1e-8) / 31
    d = f16(scale.max() / 127).astype(np.float32)
    sc = np.clip(np.round(scale / d), 1, 127).astype(np.int8)
    q = np.clip(np.round(xg / (d * sc[:, None].astype(np.float32))) + 32, 0, 63).astype(np.uint8).reshape(256)
    ql = np.zeros(128, dtype=np.uint8)
    qh = np.zeros(64, dtype=np.uint8)
    for half in range(2):
        for r in range(128):
            v = q[half * 128 + r]
            ql[half * 64 + r % 64] |= (v & 0xF) << (4 * (r // 64))
            qh[half * 32 + r % 32] |= (v >> 4) << (2 * (r // 32))
    return np.concatenate([ql, qh, sc.view(np.uint8), f16([d]).view(np.uint8)])


def kquantize(x, qt):
    block = {T.Q4_K: q4_k_block, T.Q5_K: q5_k_block, T.Q6_K: q6_k_block}[qt]
    rows = [np.concatenate([block(r[i : i + 256]) for i in range(0, r.size, 256)]) for r in x]
    out = np.stack(rows)
    # Valid blocks: gguf-py de-quantizes them to within a quantization step of the input.
    back = gguf.quants.dequantize(out, qt)
    assert back.shape == x.shape
    err = np.abs(back - x).max() / np.abs(x).max()
    assert err < {T.Q4_K: 0.12, T.Q5_K: 0.06, T.Q6_K: 0.03}[qt], (qt, err)
    return out


# ---- models ----------------------------------------------------------------------------------


def source_model(folder):
    model = AutoModelForCausalLM.from_pretrained(str(folder), torch_dtype=torch.float32)
    cfg = json.loads((folder / "config.json").read_text())
    ref = json.loads((folder / "reference.json").read_text())
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    if cfg.get("tie_word_embeddings"):
        state.pop("lm_head.weight", None)
    return cfg, state, ref["prompt_ids"]


def drawn_model(rng, hidden, inter, layers, heads, kv_heads, tied):
    head_dim = hidden // heads
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 512,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": 512,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": tied,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    n = lambda *shape, std: (rng.standard_normal(shape) * std).astype(np.float32)  # noqa: E731
    gain = lambda k: (0.5 + rng.random(k)).astype(np.float32)  # noqa: E731
    s = {"model.embed_tokens.weight": n(512, hidden, std=1.0)}
    for i in range(layers):
        p = f"model.layers.{i}."
        s[p + "input_layernorm.weight"] = gain(hidden)
        s[p + "self_attn.q_proj.weight"] = n(heads * head_dim, hidden, std=1.5 / math.sqrt(hidden))
        s[p + "self_attn.k_proj.weight"] = n(kv_heads * head_dim, hidden, std=1.5 / math.sqrt(hidden))
        s[p + "self_attn.v_proj.weight"] = n(kv_heads * head_dim, hidden, std=1 / math.sqrt(hidden))
        s[p + "self_attn.o_proj.weight"] = n(hidden, heads * head_dim, std=1 / math.sqrt(hidden))
        s[p + "post_attention_layernorm.weight"] = gain(hidden)
        s[p + "mlp.gate_proj.weight"] = n(inter, hidden, std=1 / math.sqrt(hidden))
        s[p + "mlp.up_proj.weight"] = n(inter, hidden, std=1 / math.sqrt(hidden))
        s[p + "mlp.down_proj.weight"] = n(hidden, inter, std=1 / math.sqrt(inter))
    s["model.norm.weight"] = gain(hidden)
    if not tied:
        s["lm_head.weight"] = n(512, hidden, std=3 / math.sqrt(hidden))
    prompt = json.loads((TOKENIZER_DIR / "reference.json").read_text())["prompt_ids"]
    return cfg, s, prompt


def hf_class_and_config(cfg):
    """The model class to run a fixture in, from its source config (Mistral as the equivalent
    Llama: no biases, and the window of 256 is longer than any sequence here)."""
    c = dict(cfg)
    c.pop("architectures", None)
    c.pop("transformers_version", None)
    if c["model_type"] == "qwen2":
        return Qwen2ForCausalLM, Qwen2Config(**c)
    if c["model_type"] == "mistral":
        assert c.get("sliding_window", 0) >= 256
        c.pop("sliding_window", None)
        c["model_type"] = "llama"
    c.pop("model_type", None)
    return LlamaForCausalLM, LlamaConfig(**c)


def reference(path, cfg, prompt):
    """The fixture run by transformers from its own reading of the GGUF file."""
    cls, config = hf_class_and_config(cfg)
    config.torch_dtype = torch.float32
    torch.manual_seed(0)
    model = cls(config).float().eval()
    parsed = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)
    sd = parsed["tensors"]
    reader = gguf.GGUFReader(str(path))
    n_file = len([t for t in reader.tensors if t.name != "rope_freqs.weight"])
    assert len(sd) == n_file, (len(sd), n_file, sorted(sd))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    allowed = {"lm_head.weight"} if config.tie_word_embeddings else set()
    assert set(missing) <= allowed and not unexpected, (missing, unexpected)
    model.tie_weights()

    ids = torch.tensor([prompt])
    with torch.no_grad():
        logits = model(ids).logits[0]  # [len, vocab]
        seq = list(prompt)
        margins, new = [], []
        for _ in range(N_NEW):
            last = model(torch.tensor([seq])).logits[0, -1]
            top = torch.topk(last, 2)
            margins.append(float(top.values[0] - top.values[1]))
            nxt = int(top.indices[0])
            new.append(nxt)
            seq.append(nxt)
        gen = model.generate(
            ids, do_sample=False, max_new_tokens=N_NEW, eos_token_id=None, pad_token_id=0
        )[0, len(prompt) :].tolist()
    assert gen == new, (gen, new)
    assert len(set(new)) > 3, f"degenerate greedy output {new}"
    n = len(prompt)
    positions = sorted({0, 1, n // 2, n - 2, n - 1})
    return {
        "prompt_ids": prompt,
        "logits": {
            "positions": positions,
            "values": [[round(float(v), 6) for v in logits[p]] for p in positions],
        },
        "logit_std": round(float(logits.std()), 3),
        "greedy_new_ids": new,
        "min_margin": round(min(margins), 6),
        "how": "transformers.modeling_gguf_pytorch_utils.load_gguf_checkpoint (de-quantized by "
        "gguf-py, Q/K un-permuted by transformers) into the source config's model class, float32; "
        "logits from one forward pass without a cache; greedy ids from full forward passes, equal "
        "to generate(do_sample=False)",
    }


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    fixtures = []  # (file name, arch, cfg, state, prompt, qtype_of, raw)

    def every(qt):
        return lambda name, data: qt

    cfg, state, prompt = source_model(HF / "qwen2-bias-tied")
    for qt in (T.F32, T.F16):
        fixtures.append((f"qwen2-bias-tied.{qt.name.lower()}.gguf", "qwen2", cfg, state, prompt[:24], every(qt), None))
    cfg, state, prompt = source_model(HF / "llama3-rope-headdim")
    fixtures.append(("llama3-rope-headdim.f32.gguf", "llama", cfg, state, prompt, every(T.F32), None))
    cfg, state, prompt = source_model(HF / "mistral-sharded-bf16")
    for qt in (T.BF16, T.Q8_0, T.Q4_0):
        fixtures.append((f"mistral-sharded-bf16.{qt.name.lower()}.gguf", "llama", cfg, state, prompt[:24], every(qt), None))
    cfg, state, prompt = source_model(TOKENIZER_DIR)
    fixtures.append(("tiny-llama-gqa.q4_1.gguf", "llama", cfg, state, prompt, every(T.Q4_1), None))
    cfg, state, prompt = drawn_model(rng, 64, 128, 2, 4, 2, tied=False)
    for qt in (T.Q5_0, T.Q5_1):
        fixtures.append((f"llama-w32.{qt.name.lower()}.gguf", "llama", cfg, state, prompt, every(qt), None))
    cfg, state, prompt = drawn_model(rng, 256, 256, 2, 4, 2, tied=False)
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg["num_hidden_layers"])
    raw = {}
    for hf_name, data in state.items():
        if data.ndim != 2:
            continue
        qt = T.Q6_K if "embed" in hf_name or "lm_head" in hf_name else T.Q5_K if ".mlp." in hf_name else T.Q4_K
        if hf_name.endswith("q_proj.weight"):
            data = permute(data, heads, heads)
        if hf_name.endswith("k_proj.weight"):
            data = permute(data, heads, kv)
        raw[name_map.get_name(hf_name, try_suffixes=(".weight",))] = (kquantize(data, qt), qt)
    fixtures.append(("llama-k256.kquants.gguf", "llama", cfg, state, prompt, every(T.F32), raw))

    index = []
    for name, arch, cfg, state, prompt, qtype_of, raw in fixtures:
        path = OUT / name
        types = to_gguf(path, arch, cfg, state, qtype_of, raw=raw)
        ref = reference(path, cfg, prompt)
        ref["gguf"] = name
        ref["architecture"] = arch
        ref["tensor_types"] = types
        stem = name[: -len(".gguf")]
        (OUT / f"{stem}.json").write_text(json.dumps(ref, indent=1) + "\n")
        summary = {
            "file": name,
            "bytes": path.stat().st_size,
            "types": sorted(set(types.values())),
            "prompt_len": len(prompt),
            "min_margin": ref["min_margin"],
            "logit_std": ref["logit_std"],
        }
        index.append(summary)
        print(json.dumps(summary))
    (OUT / "index.json").write_text(
        json.dumps(
            {
                "fixtures": index,
                "seed": SEED,
                "versions": {
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "gguf": "0.19.0",
                    "numpy": np.__version__,
                },
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
