#!/usr/bin/env bash
# Reproduces BENCHMARKS.md: `jielong bench` on every shipped model and on random models of
# llama2.c's "stories15M" / "stories260K" shapes (native and Hugging Face folders), printed as
# markdown rows. Run on an otherwise idle machine: bash scripts/bench.sh > /tmp/bench.md
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin jielong --example random_model
bin=target/release/jielong
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# stories15M: dim 288, 6 layers, 6 heads, 32000 tokens, hidden 768, context 256, output layer
# tied to the embedding (15.2M parameters); stories260K: dim 64, 5 layers, 8 heads (4 kv), 512
# tokens, hidden 172, context 512 (as ../shared/reference/tiny-llama-gqa).
target/release/examples/random_model "$tmp/stories15M" 32000 288 768 6 6 6 256 tied >/dev/null
target/release/examples/random_model "$tmp/stories260K" 512 64 172 5 8 4 512 >/dev/null

models=(models/shakespeare-char models/mnist-binary models/spoken-digits "$tmp/stories15M" "$tmp/stories260K")
[ -d ../shared/reference/tiny-llama-gqa ] && models+=(../shared/reference/tiny-llama-gqa)
echo "| model | parameters | load s | gen tok/s batch 1 | gen tok/s batch 16 | train tok/s (16 x context<=256) | peak MiB |"
echo "|---|---|---|---|---|---|---|"
for m in "${models[@]}"; do
  [ -d "$m" ] || continue
  "$bin" bench --model "$m" --format json | python3 -c '
import json, sys
r = json.load(sys.stdin)
name = r["model"].split("/")[-1]
cells = [name, format(r["parameters"], ","), "%.2f" % r["load_seconds"], "%.0f" % r["generate_tokens_per_second_batch1"],
         "%.0f" % r["generate_tokens_per_second_batch16"], "%.0f" % r["train_tokens_per_second"], ("%.0f" % r["peak_memory_mib"]) if r["peak_memory_mib"] is not None else "n/a"]
print("| " + " | ".join(cells) + " |")'
done

# Training speed on nanoGPT's CPU recipe shape (65 characters, 4 layers, 128 wide, 4 heads,
# context 64, batch 12), to compare with PyTorch on this machine.
target/release/examples/random_model "$tmp/nanogpt-cpu" 65 128 344 4 4 4 64 >/dev/null
"$bin" bench --model "$tmp/nanogpt-cpu" --train-batch 12 --format json | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("\nnanoGPT CPU shape (%s parameters), batch 12 x 64: train %.0f tok/s" % (format(r["parameters"], ","), r["train_tokens_per_second"]))'

# Audio: the real-time factor of drawing two seconds of speech, one clip and eight at once.
if [ -d models/spoken-digits ]; then
  for count in 1 8; do
    "$bin" generate audio --model models/spoken-digits --class 4 --seconds 2 --count "$count" --seed 1 \
      --out "$tmp/four.wav" 2>&1 | grep -o "[0-9]* samples/s, real-time factor [0-9.]*" | sed "s/^/spoken-digits, $count clip(s) at once: /"
  done
fi
