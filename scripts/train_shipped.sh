#!/usr/bin/env bash
# Trains every model shipped in models/ from scratch, one after the other, with the commands
# their MODEL.md files record. Hours of CPU: run it in the background. A run that is stopped
# (Ctrl-C, a reboot) continues where it stopped when this script is run again (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${JIELONG:-target/release/jielong}

train() { # modality data out config
  local args=(train "$1" --data "$2" --out "$3" --config "$4")
  if [ -f "$3/MODEL.md" ]; then
    echo "== $3 is trained (it has a MODEL.md)"
    return
  fi
  [ -f "$3/checkpoint/state.json" ] && args+=(--resume)
  echo "== $(date +%T) ${args[*]}"
  "$bin" "${args[@]}"
}

train text  ../shared/data/text/tinyshakespeare.txt   models/shakespeare-char examples/configs/shakespeare-char.json
train image ../shared/data/images/mnist                models/mnist-binary     examples/configs/mnist-binary.json
train image ../shared/data/images/mnist                models/mnist-stochastic examples/configs/mnist-stochastic.json
[ -d datasets/espeak-digits/out ] || sh datasets/espeak-digits/make.sh datasets/espeak-digits/out
train audio datasets/spoken-digits/sources.txt         models/spoken-digits    examples/configs/spoken-digits.json
train image ../shared/data/images/mnist                models/mnist-patches    examples/configs/mnist-patches.json
train image ../shared/data/images/twemoji_sheet_clean_16px.png models/twemoji-palette examples/configs/twemoji-palette.json
echo "== $(date +%T) done"
