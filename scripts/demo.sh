#!/usr/bin/env bash
# The main job on an embedded default: install what is missing, build, make a random
# ~100M-parameter Llama-shaped model (nothing is downloaded) and generate from it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"

model=build/demo-model-100m
if [ ! -f "$model/config.json" ]; then
    ./build/myrmex make-model "$model" --preset 100m --dtype bf16 --seed 1 --force
fi
./build/myrmex inspect "$model" | sed -n '1,8p;/^totals/,$p'
echo
./build/myrmex generate --model "$model" --prompt-ids 1,450,4996,17354,1701,432 --max-tokens 32 \
    --temperature 0.8 --top-p 0.95 --seed 7 --ignore-eos
