#!/usr/bin/env bash
# The libFuzzer targets (tests/fuzz_*.c): config.json, safetensors, tokenizer.json and
# `serve` request bodies, under ASan + UBSan.
#
#   scripts/fuzz.sh [SECONDS]        build build-fuzz with clang, run every target SECONDS
#                                    each (default 60), growing its corpus build-fuzz/fuzz-NAME/;
#                                    a failing input is kept as build-fuzz/fuzz-NAME-crash-*
#   scripts/fuzz.sh --run BIN RUNS   one target, RUNS inputs from seed 1, from its seeds alone
#                                    (the CTest tests of label fuzz)
set -euo pipefail
[[ ${1:-} == --run ]] && set -- --run "$(realpath "$2")" "${3:-}" # before the cd below
cd "$(dirname "$0")/.."

# run BIN LIMIT: LIMIT is -runs=N or -max_total_time=S. The seeds are the fixtures the
# target reads (see each file's header); the corpus it grows is build-fuzz/fuzz-NAME/.
run() {
    local bin=$1 limit=$2 name
    name=$(basename "$bin")
    local corpus seeds
    corpus=$(dirname "$bin")/fuzz-${name#fuzz_}
    seeds=$corpus-seeds
    # A fixed-size run (the test suite) starts from the seeds alone, not from earlier runs.
    [[ $limit == -runs=* ]] && rm -rf "$corpus"
    rm -rf "$seeds" && mkdir -p "$corpus" "$seeds"
    case $name in
    fuzz_config) for f in tests/fixtures/*/config.json; do cp "$f" "$seeds/$(basename "$(dirname "$f")").json"; done ;;
    fuzz_safetensors) for m in bf16 f16 tied; do cp "tests/fixtures/$m/model.safetensors" "$seeds/$m"; done ;;
    fuzz_tokenizer) # 0: a tokenizer.json (small ones: each input loads one), 1: text, 2: ids
        printf '\0{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<0x41>":3},"merges":["a b"]},"added_tokens":[{"id":4,"content":"<s>","special":true}],"pre_tokenizer":{"type":"ByteLevel"},"decoder":{"type":"ByteLevel"}}' >"$seeds/bpe"
        printf '\0{"model":{"type":"BPE","vocab":{"\\u2581a":0,"b":1},"merges":[],"byte_fallback":true},"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"\\u2581"},{"type":"Replace","pattern":{"String":" "},"content":"\\u2581"}]},"decoder":{"type":"Sequence","decoders":[{"type":"ByteFallback"},{"type":"Fuse"}]}}' >"$seeds/sentencepiece"
        printf '\1Hello, world! 123 ünïcödé 🙂\n\ttabs' >"$seeds/text"
        printf '\2\1\0\2\0\3\0\377\177' >"$seeds/ids" ;;
    fuzz_request)
        printf '\0{"prompt":"hi","max_tokens":3,"logprobs":2,"echo":true}' >"$seeds/completion"
        printf '\1{"messages":[{"role":"user","content":"hi"}],"max_tokens":4,"stream":true}' >"$seeds/chat" ;;
    esac
    echo "== $name ($limit)"
    local rc=0
    "$bin" "$limit" -seed=1 -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 -artifact_prefix="$corpus-" \
        "$corpus" "$seeds" >"$corpus.log" 2>&1 || rc=$?
    grep -E "^stat::number_of_executed_units|^#[0-9]+ +DONE" "$corpus.log" || true
    if [[ $rc -ne 0 ]]; then # the input that failed is kept as $corpus-crash-* (or leak-, timeout-, oom-)
        grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$corpus.log" | head -8 || true
        echo "FAIL: $name exited $rc (log: $corpus.log)"
        return 1
    fi
}

if [[ ${1:-} == --run ]]; then
    run "$2" "-runs=${3:-20000}"
    exit
fi

seconds=${1:-60}
command -v clang >/dev/null || { echo "scripts/fuzz.sh needs clang (apt-get install clang)" >&2; exit 1; }
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DMYRMEX_FUZZ=ON -DMYRMEX_CUDA=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_config fuzz_safetensors fuzz_tokenizer fuzz_request
failed=0
for t in config safetensors tokenizer request; do
    run "build-fuzz/fuzz_$t" "-max_total_time=$seconds" || failed=1
done
exit $failed
