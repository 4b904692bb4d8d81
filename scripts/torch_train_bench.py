#!/usr/bin/env python3
"""Training tokens/s of jielong's transformer layout in PyTorch: the reference for `jielong bench`.

The model is jielong's (crates/nn/src/model.rs) written again in PyTorch: pre-norm RMSNorm,
rotary positions ("rotate half", as Hugging Face's Llama), causal multi-head attention, a SwiGLU
MLP, an untied output layer, no biases. A step is what jielong's trainer does: cross-entropy over
every position, backward, global gradient-norm clipping to 1, AdamW (betas 0.9/0.99, eps 1e-8,
weight decay 0.1 on matrices only). Tokens are random (speed does not depend on them). The first
steps are not timed.

PyTorch 1.13 from Debian (`apt-get install python3-torch`) runs here; for a fair speed it needs
OpenBLAS with OpenMP (`apt-get install libopenblas0-openmp`) found first:

    LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \\
        /usr/bin/python3 scripts/torch_train_bench.py --shape nanogpt --threads 2

`--model DIR` takes the shape from a jielong model folder's `config.json` (batch 16 x
min(context, 256), as `jielong bench`); `--shape nanogpt` is nanoGPT's CPU configuration
(65 characters, 4 layers, 128 wide, 4 heads, context 64, batch 12) with jielong's layout.
`--layout gpt2` trains nanoGPT's own layout at that shape instead (learned positions,
LayerNorm, a 4x GELU MLP, the output layer tied to the embedding, linear layers without
biases as in nanoGPT's default; PyTorch 1.13's LayerNorm keeps its bias, 1,152 parameters):
the speed issue's training stretch target is this model's speed. Prints one JSON line.
"""

import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RmsNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(head_dim, context, theta):
    half = head_dim // 2
    inv_freq = 1.0 / theta ** (torch.arange(half, dtype=torch.float64) * 2 / head_dim)
    angles = torch.arange(context, dtype=torch.float32)[:, None] * inv_freq.float()[None, :]
    return angles.cos(), angles.sin()  # [context, half]


def rotate(x, cos, sin):
    """x: [batch, heads, len, head_dim]; cos/sin: [len, head_dim / 2]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        h, q, kv = a["hidden_size"], a["num_heads"] * a["head_dim"], a["num_kv_heads"] * a["head_dim"]
        self.heads, self.kv_heads, self.head_dim = a["num_heads"], a["num_kv_heads"], a["head_dim"]
        self.input_layernorm = RmsNorm(h, a["rms_norm_eps"])
        self.q_proj = nn.Linear(h, q, bias=False)
        self.k_proj = nn.Linear(h, kv, bias=False)
        self.v_proj = nn.Linear(h, kv, bias=False)
        self.o_proj = nn.Linear(q, h, bias=False)
        self.post_attention_layernorm = RmsNorm(h, a["rms_norm_eps"])
        i = a["intermediate_size"]
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)

    def forward(self, x, cos, sin, causal):
        b, n, _ = x.shape
        y = self.input_layernorm(x)
        split = lambda t, heads: t.view(b, n, heads, self.head_dim).transpose(1, 2)
        q = rotate(split(self.q_proj(y), self.heads), cos, sin)
        k = rotate(split(self.k_proj(y), self.kv_heads), cos, sin)
        v = split(self.v_proj(y), self.kv_heads)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        # PyTorch 1.13 has no scaled_dot_product_attention: the plain composition.
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(causal, float("-inf"))
        out = F.softmax(scores, dim=-1) @ v  # [b, heads, n, hd]
        x = x + self.o_proj(out.transpose(1, 2).reshape(b, n, -1))
        y = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(y)) * self.up_proj(y))


class Transformer(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed_tokens = nn.Embedding(a["vocab_size"], a["hidden_size"])
        self.layers = nn.ModuleList([Block(a) for _ in range(a["num_layers"])])
        self.norm = RmsNorm(a["hidden_size"], a["rms_norm_eps"])
        self.lm_head = nn.Linear(a["hidden_size"], a["vocab_size"], bias=False)
        cos, sin = rope_tables(a["head_dim"], a["context_len"], a.get("rope_theta", 10000.0))
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, ids, targets):
        n = ids.shape[1]
        cos, sin = self.cos[:n], self.sin[:n]
        causal = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, causal)
        logits = self.lm_head(self.norm(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


class GptBlock(nn.Module):
    """nanoGPT's block: pre-norm LayerNorm, causal attention, a 4x GELU MLP."""

    def __init__(self, a):
        super().__init__()
        h = a["hidden_size"]
        self.heads = a["num_heads"]
        self.ln_1 = nn.LayerNorm(h, elementwise_affine=True)
        self.c_attn = nn.Linear(h, 3 * h, bias=False)
        self.c_proj = nn.Linear(h, h, bias=False)
        self.ln_2 = nn.LayerNorm(h, elementwise_affine=True)
        self.c_fc = nn.Linear(h, 4 * h, bias=False)
        self.mlp_proj = nn.Linear(4 * h, h, bias=False)

    def forward(self, x, causal):
        b, n, h = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(h, dim=2)
        split = lambda t: t.view(b, n, self.heads, h // self.heads).transpose(1, 2)
        q, k, v = split(q), split(k), split(v)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(h // self.heads)
        out = F.softmax(scores.masked_fill(causal, float("-inf")), dim=-1) @ v
        x = x + self.c_proj(out.transpose(1, 2).reshape(b, n, h))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class Gpt(nn.Module):
    """nanoGPT's model: token and learned position embeddings, GptBlocks, a tied output layer."""

    def __init__(self, a):
        super().__init__()
        h = a["hidden_size"]
        self.wte = nn.Embedding(a["vocab_size"], h)
        self.wpe = nn.Embedding(a["context_len"], h)
        self.blocks = nn.ModuleList([GptBlock(a) for _ in range(a["num_layers"])])
        self.ln_f = nn.LayerNorm(h)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, ids, targets):
        n = ids.shape[1]
        causal = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
        x = self.wte(ids) + self.wpe(torch.arange(n))
        for block in self.blocks:
            x = block(x, causal)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def nanogpt_shape():
    hidden, heads = 128, 4
    return {
        "vocab_size": 65, "hidden_size": hidden, "intermediate_size": 344, "num_layers": 4,
        "num_heads": heads, "num_kv_heads": heads, "head_dim": hidden // heads,
        "context_len": 64, "rms_norm_eps": 1e-5,
    }, 12, 64


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=["nanogpt"], help="a named shape")
    p.add_argument("--model", help="a jielong model folder: its architecture section")
    p.add_argument("--layout", choices=["jielong", "gpt2"], default="jielong",
                   help="jielong's transformer or nanoGPT's own (with --shape nanogpt)")
    p.add_argument("--batch", type=int, help="windows per step (default: 12 nanogpt, 16 folders)")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    if args.model:
        with open(f"{args.model}/config.json") as f:
            arch = json.load(f)["architecture"]
        batch, seq = 16, min(arch["context_len"], 256)
        name = args.model
    else:
        arch, batch, seq = nanogpt_shape()
        name = "nanogpt"
    batch = args.batch or batch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = Gpt(arch) if args.layout == "gpt2" else Transformer(arch)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4, betas=(0.9, 0.99), eps=1e-8,
    )
    vocab = arch["vocab_size"]

    def step():
        ids = torch.randint(vocab, (batch, seq + 1))
        loss = model(ids[:, :-1], ids[:, 1:])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({
        "model": name,
        "layout": args.layout,
        "parameters": params,
        "train_batch": f"{batch} x {seq}",
        "threads": args.threads,
        "ld_library_path": os.environ.get("LD_LIBRARY_PATH", ""),
        "train_tokens_per_second": args.steps * batch * seq / seconds,
    }))


if __name__ == "__main__":
    main()
