#!/usr/bin/env bash
# Everything a GPU machine is for, in one run: build with the CUDA backend, the `gpu`
# tests, compute-sanitizer on the op tests, and the kernel benchmarks. Logs and JSON go to
# $OUT (default ./gpu-out). Meant for a machine without a package registry: Debian
# packages the build needs (libcjson) may be carried as .deb files in .debs/ (fetch them
# with `apt-get download libcjson1 libcjson-dev` in .debs/ on a machine that has apt).
#
#   scripts/gpu_session.sh [quick]     quick: tests only, no benchmarks
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PATH="$PATH:/usr/local/cuda/bin"
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

prefix_args=()
if ! pkg-config --exists libcjson 2>/dev/null && ls .debs/*.deb >/dev/null 2>&1; then
    mkdir -p /tmp/debroot
    for f in .debs/*.deb; do dpkg -x "$f" /tmp/debroot; done
    prefix_args=(-DCMAKE_PREFIX_PATH=/tmp/debroot/usr -DPKG_CONFIG_EXECUTABLE=/bin/false)
    export LD_LIBRARY_PATH="/tmp/debroot/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi

nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.txt"
log "build $(git rev-parse --short HEAD 2>/dev/null)"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release "${prefix_args[@]}" >"$OUT/cmake.log" 2>&1 &&
    cmake --build build-gpu -j"$(nproc)" >>"$OUT/cmake.log" 2>&1 || { log "BUILD FAILED"; tail -40 "$OUT/cmake.log"; exit 1; }

log "gpu tests"
ctest --test-dir build-gpu -L gpu --output-on-failure --timeout 300 >"$OUT/gpu_tests.log" 2>&1
tail -15 "$OUT/gpu_tests.log" | tee -a "$OUT/summary.txt"

log "compute-sanitizer"
for tool in memcheck racecheck; do
    compute-sanitizer --tool $tool --error-exitcode 9 build-gpu/gpu_test_ops tests/fixtures --quick \
        >"$OUT/sanitizer_$tool.log" 2>&1
    echo "$tool exit $?" | tee -a "$OUT/summary.txt"
    tail -5 "$OUT/sanitizer_$tool.log" >>"$OUT/summary.txt"
done

[ "${1:-}" = quick ] && exit 0
log "benchmarks"
build-gpu/bench_gemm --json "$OUT/gemm.json" >"$OUT/bench_gemm.txt" 2>&1; tail -60 "$OUT/bench_gemm.txt" >>"$OUT/summary.txt"
build-gpu/bench_attention --json "$OUT/attention.json" >"$OUT/bench_attention.txt" 2>&1; tail -40 "$OUT/bench_attention.txt" >>"$OUT/summary.txt"
build-gpu/bench_decode --preset llama-2-13b --batch 1,8,64 --json "$OUT/decode.json" >"$OUT/bench_decode.txt" 2>&1
cat "$OUT/bench_decode.txt" >>"$OUT/summary.txt"
build-gpu/bench_allreduce --json "$OUT/allreduce.json" >"$OUT/bench_allreduce.txt" 2>&1
cat "$OUT/bench_allreduce.txt" >>"$OUT/summary.txt"
# Per-token cost of tensor parallelism on one GPU: tp 1 against loopback tp 2 and 4.
for tp in 1 2 4; do
    build-gpu/myrmex bench --dummy llama-2-7b --tp $tp --comm loopback -b 1,8 -i 128 -o 64 -r 2 \
        >"$OUT/bench_tp$tp.txt" 2>&1
    { echo "== tp $tp (loopback)"; tail -8 "$OUT/bench_tp$tp.txt"; } >>"$OUT/summary.txt"
done
log "done"
