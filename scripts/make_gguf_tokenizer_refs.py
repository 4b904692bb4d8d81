#!/usr/bin/env python3
"""Writes the small GGUF tokenizer fixtures of tests/fixtures/gguf-tokenizer/.

Each fixture is a vocabulary-only GGUF file (metadata, no tensors) that llama.cpp can load
with `vocab_only`; `scripts/make_gguf_tokenizer_refs.mjs` then asks llama.cpp for the token ids
of tests/fixtures/gguf-tokenizer/strings.json. Neither script is needed by the tests.

  * bpe-<pre>.gguf, one per pre-tokenizer jielong supports (default, gpt-2, llama-bpe, qwen2,
    smollm): `tokenizer.ggml.model = "gpt2"`, byte-level BPE made from GPT-2's own files
    (../shared/data/tokenizers/gpt2) cut to its first 3,000 merges, so 3,256 tokens, plus
    control tokens (<|endoftext|>, <|im_start|>, <|im_end|>), one user-defined token
    (<jielong>) and one normal token that no merge makes ("Ġjielong", which only a
    pre-tokenizer that ignores merges, llama-bpe, emits whole).
  * spm.gguf and spm-noprefix.gguf: `tokenizer.ggml.model = "llama"`, SentencePiece BPE with
    scores from ../shared/data/tokenizers/sentencepiece/botchan_en_bpe_1000.model, with the
    256 byte-fallback tokens <0x00>..<0xFF> inserted after </s> (as in Llama's vocabulary),
    control and user-defined tokens appended; the second one without the dummy prefix space
    and with add_bos false / add_eos true.

Usage (from the repository root, in a venv with the PyPI packages `gguf` and `sentencepiece`):
    python scripts/make_gguf_tokenizer_refs.py [--shared ../shared] [--out tests/fixtures/gguf-tokenizer]
"""

import argparse
import json
from pathlib import Path

import gguf
import sentencepiece

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

N_MERGES = 3000
BPE_PRES = {
    # pre name -> (add_bos_token to write, add_eos_token to write); None = leave the key out so
    # that llama.cpp's default for that pre applies (true for llama-bpe, false otherwise).
    "default": (None, True),
    "gpt-2": (True, None),
    "llama-bpe": (None, None),
    "qwen2": (False, None),
    "smollm": (False, False),
}


def writer(path: Path) -> gguf.GGUFWriter:
    """A GGUF writer with the few Llama hyper-parameters llama.cpp reads before the vocabulary."""
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_name(path.stem)
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(16)
    return w


def finish(w: gguf.GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gpt2_vocabulary(shared: Path):
    """GPT-2's byte alphabet and first N_MERGES merges: token 256 + i is merge i's result."""
    encoder = json.loads((shared / "data/tokenizers/gpt2/encoder.json").read_text("utf-8"))
    lines = (shared / "data/tokenizers/gpt2/vocab.bpe").read_text("utf-8").split("\n")
    merges = [l for l in lines[1:] if l][:N_MERGES]
    by_id = {i: t for t, i in encoder.items()}
    tokens = [by_id[i] for i in range(256 + N_MERGES)]
    for i, m in enumerate(merges):
        assert tokens[256 + i] == m.replace(" ", ""), (i, m)
    types = [NORMAL] * len(tokens)
    extra = [
        ("<|endoftext|>", CONTROL),
        ("<|im_start|>", CONTROL),
        ("<|im_end|>", CONTROL),
        ("<jielong>", USER_DEFINED),
        ("Ġjielong", NORMAL),
    ]
    for t, ty in extra:
        tokens.append(t)
        types.append(ty)
    return tokens, types, merges


def write_bpe(out: Path, shared: Path) -> None:
    tokens, types, merges = gpt2_vocabulary(shared)
    eot = tokens.index("<|endoftext|>")
    for pre, (add_bos, add_eos) in BPE_PRES.items():
        w = writer(out / f"bpe-{pre}.gguf")
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        w.add_bos_token_id(eot)
        w.add_eos_token_id(tokens.index("<|im_end|>"))
        if add_bos is not None:
            w.add_add_bos_token(add_bos)
        if add_eos is not None:
            w.add_add_eos_token(add_eos)
        w.add_chat_template(
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
        )
        finish(w)


def write_spm(out: Path, shared: Path) -> None:
    sp = sentencepiece.SentencePieceProcessor(
        model_file=str(shared / "data/tokenizers/sentencepiece/botchan_en_bpe_1000.model")
    )
    pieces, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        pieces.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(
            UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i) else BYTE if sp.is_byte(i)
            else UNUSED if sp.is_unused(i) else NORMAL
        )
    assert pieces[:3] == ["<unk>", "<s>", "</s>"], pieces[:3]
    assert BYTE not in types, "the model already has byte pieces"
    # Byte fallback pieces go right after </s>, where Llama's vocabulary has them.
    byte_pieces = [f"<0x{b:02X}>" for b in range(256)]
    pieces = pieces[:3] + byte_pieces + pieces[3:]
    scores = scores[:3] + [0.0] * 256 + scores[3:]
    types = types[:3] + [BYTE] * 256 + types[3:]
    for t, ty in [("<|im_start|>", CONTROL), ("<|im_end|>", CONTROL), ("<sep>", USER_DEFINED)]:
        pieces.append(t)
        scores.append(0.0)
        types.append(ty)

    for name, prefix, add_bos, add_eos in [("spm", None, None, None), ("spm-noprefix", False, False, True)]:
        w = writer(out / f"{name}.gguf")
        w.add_tokenizer_model("llama")
        w.add_token_list(pieces)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_unk_token_id(0)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        if prefix is not None:
            w.add_add_space_prefix(prefix)
        if add_bos is not None:
            w.add_add_bos_token(add_bos)
        if add_eos is not None:
            w.add_add_eos_token(add_eos)
        w.add_chat_template(
            "{% for m in messages %}{{ bos_token }}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}"
        )
        finish(w)


def main() -> None:
    repo = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=repo.parent / "shared")
    ap.add_argument("--out", type=Path, default=repo / "tests/fixtures/gguf-tokenizer")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    write_bpe(args.out, args.shared)
    write_spm(args.out, args.shared)


if __name__ == "__main__":
    main()
