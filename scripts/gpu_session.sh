#!/usr/bin/env bash
# Everything a GPU machine is for, in phases that each fit one 10-minute device call:
#   build     configure and build build-gpu (only this GPU's architecture)
#   test      the `gpu` CTest label: every CUDA op against ops_ref, fixture models, TP, bench
#   sanitize  compute-sanitizer memcheck and racecheck on the op tests (--quick)
#   bench     GEMM, attention, decode and all-reduce benchmarks; myrmex bench on dummy 13B/70B
#   tp        bench_allreduce; myrmex bench at tp 1, 2 and 4 (loopback) and tp 1 with
#             --graphs off, on dummy llama-2-7b
#
#   scripts/gpu_session.sh [PHASE...]     (default: build test sanitize)
#
# A typical lease: `build test sanitize` in one call, then `bench tp` in the next (the
# machine keeps build-gpu while it stays warm). Logs and JSON collect in gpu-out/; after
# every phase they are packed into $OUT/results.tgz beside $OUT/summary.txt, so a call cut
# short still brings back what finished (the device tool returns at most 8 files).
#
# The machine has no package registry: libcjson comes from .debs/*.deb (fetch with
# `apt-get download libcjson1 libcjson-dev` into .debs/ and carry it); serve and bench-serve
# are left out of the build when libmicrohttpd or libcurl is missing; NCCL is taken from
# the CUDA install or from Python's nvidia-nccl package.
# shellcheck disable=SC2317  # the phase_* functions are called by name
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
RESULTS=$PWD/gpu-out
OUT=${OUT:-$RESULTS}
mkdir -p "$RESULTS" "$OUT"
export PATH="$PATH:/usr/local/cuda/bin"
SUMMARY=$RESULTS/summary.txt
log() { echo "== $(date +%T) $*" | tee -a "$SUMMARY"; }
pack() {
    [ "$OUT" = "$RESULTS" ] && return
    tar czf "$OUT/results.tgz" -C "$RESULTS" . 2>/dev/null
    cp "$SUMMARY" "$OUT/summary.txt"
}
BUILD=build-gpu

deps() {
    # Another image, another compiler: its new warnings are logged, not fatal, there.
    cmake_args=(-DCMAKE_BUILD_TYPE=Release -DMYRMEX_WERROR=OFF)
    if ! pkg-config --exists libcjson 2>/dev/null && ls .debs/*.deb >/dev/null 2>&1; then
        mkdir -p /tmp/debroot
        for f in .debs/*.deb; do dpkg -x "$f" /tmp/debroot; done
        cmake_args+=(-DCMAKE_PREFIX_PATH=/tmp/debroot/usr)
        export LD_LIBRARY_PATH="/tmp/debroot/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
    fi
    pkg-config --exists libmicrohttpd 2>/dev/null || cmake_args+=(-DMYRMEX_SERVE=OFF)
    [ -e /usr/include/curl/curl.h ] || [ -e /usr/include/x86_64-linux-gnu/curl/curl.h ] ||
        cmake_args+=(-DMYRMEX_BENCH_SERVE=OFF)
    # NCCL: Python's wheel ships libnccl.so.2 and nccl.h but no libnccl.so for find_library.
    if ! ls /usr/local/cuda/lib64/libnccl.so /usr/lib/x86_64-linux-gnu/libnccl.so >/dev/null 2>&1; then
        lib=$(find /opt /usr -name 'libnccl.so.2' -path '*nvidia/nccl*' 2>/dev/null | head -1)
        if [ -n "$lib" ]; then
            dir=$(dirname "$lib")
            cmake_args+=(-DNCCL_LIBRARY="$lib" -DNCCL_INCLUDE="$(dirname "$dir")/include")
            export LD_LIBRARY_PATH="$dir:${LD_LIBRARY_PATH:-}"
        fi
    fi
    # Only this machine's architecture: the full set is CI's job.
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)
    [ "$cap" = 90 ] && cap=90a
    [ -n "$cap" ] && cmake_args+=(-DMYRMEX_CUDA_ARCHS="$cap")
}

phase_build() {
    nvidia-smi --query-gpu=name,driver_version,compute_cap,clocks.max.sm,power.limit --format=csv | tee "$RESULTS/gpu.txt"
    log "build $(git rev-parse --short HEAD 2>/dev/null) ${cmake_args[*]}"
    timeout 540 cmake -S . -B $BUILD "${cmake_args[@]}" >"$RESULTS/cmake.log" 2>&1 &&
        timeout 540 cmake --build $BUILD -j"$(nproc)" >>"$RESULTS/cmake.log" 2>&1 ||
        { log "BUILD FAILED"; tail -40 "$RESULTS/cmake.log" | tee -a "$SUMMARY"; return 1; }
    grep "myrmex:" "$RESULTS/cmake.log" | tee -a "$SUMMARY"
}

phase_test() {
    log "gpu tests"
    # test_cuda_host (label cpu) also checks, on a GPU, that it is used and cuBLAS loads.
    timeout 500 ctest --test-dir $BUILD -R '^gpu_test_|^test_cuda_host$' --output-on-failure --timeout 240 \
        >"$RESULTS/gpu_tests.log" 2>&1
    grep -E "Test +#|tests passed|FAILED|Failed" "$RESULTS/gpu_tests.log" | tee -a "$SUMMARY"
}

phase_sanitize() {
    log "compute-sanitizer"
    for tool in memcheck racecheck; do
        timeout 270 compute-sanitizer --tool $tool --error-exitcode 9 $BUILD/gpu_test_ops tests/fixtures --quick \
            >"$RESULTS/sanitizer_$tool.log" 2>&1
        echo "$tool exit $?" | tee -a "$SUMMARY"
        tail -5 "$RESULTS/sanitizer_$tool.log" >>"$SUMMARY"
    done
}

phase_bench() {
    log "benchmarks"
    timeout 150 $BUILD/bench_gemm --json "$RESULTS/gemm.json" >"$RESULTS/bench_gemm.txt" 2>&1
    tail -60 "$RESULTS/bench_gemm.txt" >>"$SUMMARY"
    pack
    timeout 90 $BUILD/bench_attention --json "$RESULTS/attention.json" >"$RESULTS/bench_attention.txt" 2>&1
    tail -40 "$RESULTS/bench_attention.txt" >>"$SUMMARY"
    timeout 60 $BUILD/bench_decode --preset llama-2-13b --batch 1,8,64 --json "$RESULTS/decode.json" \
        >"$RESULTS/bench_decode.txt" 2>&1
    cat "$RESULTS/bench_decode.txt" >>"$SUMMARY"
    pack
    # The issue's headline figures: dummy 13B at batch 1, 8, 64 and 70B at 1 and 8, with energy.
    timeout 150 $BUILD/myrmex bench --dummy llama-2-13b -b 1,8,64 -i 128 -o 128 -r 3 --json \
        >"$RESULTS/bench_13b.json" 2>"$RESULTS/bench_13b.err"
    tail -3 "$RESULTS/bench_13b.err" >>"$SUMMARY"
    timeout 150 $BUILD/myrmex bench --dummy llama-2-70b -b 1,8 -i 128 -o 64 -r 2 --json \
        >"$RESULTS/bench_70b.json" 2>"$RESULTS/bench_70b.err"
    tail -3 "$RESULTS/bench_70b.err" >>"$SUMMARY"
}

phase_tp() {
    log "tensor parallelism"
    timeout 60 $BUILD/bench_allreduce --json "$RESULTS/allreduce.json" >"$RESULTS/bench_allreduce.txt" 2>&1
    cat "$RESULTS/bench_allreduce.txt" >>"$SUMMARY"
    # Per-token cost of tensor parallelism on one GPU: tp 1 against loopback tp 2 and 4.
    for tp in 1 2 4; do
        timeout 100 $BUILD/myrmex bench --dummy llama-2-7b --tp $tp --comm loopback -b 1,8 -i 128 -o 64 -r 2 \
            >"$RESULTS/bench_tp$tp.txt" 2>&1
        { echo "== tp $tp (loopback)"; tail -8 "$RESULTS/bench_tp$tp.txt"; } >>"$SUMMARY"
        pack
    done
    # What decode graphs save: tp 1 with every op launched.
    timeout 100 $BUILD/myrmex bench --dummy llama-2-7b --graphs off -b 1,8 -i 128 -o 64 -r 2 \
        >"$RESULTS/bench_tp1_graphs_off.txt" 2>&1
    { echo "== tp 1, --graphs off"; tail -8 "$RESULTS/bench_tp1_graphs_off.txt"; } >>"$SUMMARY"
}

deps
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(build test sanitize)
rc=0
for p in "${phases[@]}"; do
    case $p in
    build | test | sanitize | bench | tp) ;;
    *) echo "unknown phase '$p' (build, test, sanitize, bench, tp)" >&2; exit 2 ;;
    esac
    if [ "$p" != build ] && [ ! -x $BUILD/myrmex ]; then
        log "no $BUILD/myrmex: run the build phase first"
        rc=1
        break
    fi
    "phase_$p" || { rc=1; pack; [ "$p" = build ] && break; }
    pack
done
log "done (exit $rc)"
pack
exit $rc
