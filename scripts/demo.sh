#!/usr/bin/env bash
# The main job on an embedded default: install what is missing, build, and run `myrmex
# bench` on dummy weights made on the device (Llama-2-13B's shapes on a GPU, the ~100M
# small preset on a CPU; nothing is downloaded); then make a random ~100M-parameter model in
# Hugging Face format and generate from it. Arguments go to bench (e.g. --json).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"

./build/myrmex bench "$@"
echo

model=build/demo-model-100m
if [ ! -f "$model/config.json" ]; then
    ./build/myrmex make-model "$model" --preset 100m --dtype bf16 --seed 1 --force
fi
./build/myrmex inspect "$model" | sed -n '1,8p;/^totals/,$p'
echo
./build/myrmex generate --model "$model" --prompt-ids 1,450,4996,17354,1701,432 --max-tokens 32 \
    --temperature 0.8 --top-p 0.95 --seed 7 --ignore-eos
