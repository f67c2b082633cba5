#!/usr/bin/env bash
# The whole test suite: install what is missing, build (CUDA files compiled when nvcc is
# present), run every CTest test (GPU tests report "skipped" without a GPU), then build the
# CPU tests again under AddressSanitizer + UndefinedBehaviorSanitizer and run them, and
# finally give each libFuzzer target a fixed 20,000 inputs (clang, same sanitizers).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

jobs=$(nproc)
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="$PATH:/usr/local/cuda/bin"
fi

echo "== build (release + CUDA when available)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"
echo "== tests"
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== build (ASan + UBSan, CPU only)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMYRMEX_SANITIZE=ON -DMYRMEX_CUDA=OFF
cmake --build build-asan -j"$jobs"
echo "== tests under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs" -L cpu

echo "== libFuzzer targets (clang, ASan + UBSan): 20,000 inputs each from a fixed seed"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DMYRMEX_FUZZ=ON -DMYRMEX_CUDA=OFF
cmake --build build-fuzz -j"$jobs" --target fuzz_config fuzz_safetensors fuzz_tokenizer fuzz_request
ctest --test-dir build-fuzz --output-on-failure -j"$jobs" -L fuzz
