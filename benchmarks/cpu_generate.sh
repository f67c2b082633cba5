#!/usr/bin/env bash
# CPU reference-path throughput: makes the ~100M-parameter preset model (bf16) and times
# `myrmex generate` at 1 thread and at all cores, three runs each, printing the median
# prefill and decode tokens/s. The CPU path is the correctness reference, not the product;
# these figures only show that it is usable for tests and demos.
#
#   benchmarks/cpu_generate.sh [BUILD_DIR]     (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
model=$build/bench-model-100m
[ -f "$model/config.json" ] || "$build/myrmex" make-model "$model" --preset 100m --dtype bf16 --seed 1 --force >/dev/null

prompt=$(seq -s, 1 64) # 64 prompt tokens
median() { sort -g | sed -n 2p; }
for threads in 1 "$(nproc)"; do
    pre=() dec=()
    for run in 1 2 3; do
        out=$(OMP_NUM_THREADS=$threads "$build/myrmex" generate --model "$model" --prompt-ids "$prompt" \
              --max-tokens 64 --ignore-eos --json)
        pre+=("$(python3 -c 'import json,sys; print(json.load(sys.stdin)["timings"]["prefill_tokens_per_second"])' <<<"$out")")
        dec+=("$(python3 -c 'import json,sys; print(json.load(sys.stdin)["timings"]["decode_tokens_per_second"])' <<<"$out")")
    done
    printf 'threads %-3s prefill %8.1f tokens/s   decode %6.1f tokens/s   (median of 3; %s)\n' "$threads" \
        "$(printf '%s\n' "${pre[@]}" | median)" "$(printf '%s\n' "${dec[@]}" | median)" "$(uname -m), $(nproc) cores"
done
