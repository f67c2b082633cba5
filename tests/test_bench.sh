#!/usr/bin/env bash
# myrmex bench on the CPU: a tiny sweep on dummy weights from a fixture's config.json and on
# a fixture model directory produces complete JSON (every field checked, counts exact),
# energy is "unavailable" without NVML, CSV and the table have their rows, bad sweep flags
# exit 2 naming the problem, runtime problems exit 1, the plot script renders the JSON
# (when matplotlib is installed), tensor-parallel ranks on the CPU leave energy unavailable,
# and a dummy load draws its per-layer loading bar on a terminal only (script(1) provides one).
#
# usage: test_bench.sh MYRMEX_BINARY FIXTURES_DIR
set -euo pipefail

MYRMEX=${1:?usage: test_bench.sh MYRMEX_BINARY FIXTURES_DIR}
FIXTURES=${2:?usage: test_bench.sh MYRMEX_BINARY FIXTURES_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
command -v python3 >/dev/null || { echo "python3 not found: skipped"; exit 77; }
if [[ -n "${MYRMEX_TMP:-}" ]]; then
    mkdir -p "$MYRMEX_TMP"
    SCRATCH=$(mktemp -d "$MYRMEX_TMP/bench-XXXXXX")
else
    SCRATCH=$(mktemp -d)
fi
trap 'rm -rf "$SCRATCH"' EXIT
export MYRMEX_NVML_LIBRARY=$SCRATCH/no-libnvidia-ml.so.1 # energy must read "unavailable" even on a GPU host

failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
run() { # run WANT_RC ARGS...: myrmex bench ARGS, output in $SCRATCH/o and $SCRATCH/e
    local want=$1
    shift
    local rc=0
    "$MYRMEX" bench "$@" >"$SCRATCH/o" 2>"$SCRATCH/e" || rc=$?
    [[ $rc -eq $want ]] || fail "bench $* exited $rc, expected $want: $(head -c 400 "$SCRATCH/e")"
}

CPU=(--device cpu)

# 1. JSON of a 2 x 2 x 1 sweep on dummy weights of the gqa fixture's shape.
run 0 "${CPU[@]}" --dummy "$FIXTURES/gqa/config.json" -b 1,3 -i 5,9 -o 4 -r 2 --warmup 1 --seed 7 --json
cp "$SCRATCH/o" "$SCRATCH/bench.json"
python3 - "$SCRATCH/bench.json" "$FIXTURES/gqa/config.json" <<'EOF' || fail "JSON checks"
import json, sys
doc = json.loads(open(sys.argv[1]).read())
bad = []
def need(cond, what):
    if not cond: bad.append(what)
need(set(doc) == {"benchmark", "manifest", "model", "engine", "settings", "idle", "results"}, "top keys %s" % sorted(doc))
need(doc["benchmark"] == "myrmex bench", "benchmark")
m = doc["manifest"]
for k in ("commit", "dirty", "build_type", "c_flags", "compiler", "sanitize", "cuda", "cuda_version"):
    need(k in m["build"], "manifest.build." + k)
need(len(m["build"]["commit"]) >= 7, "commit baked in")
need(m["gpu"] == {"status": "unavailable", "reason": "no GPU in use"}, "manifest gpu unavailable")
need(m["host"]["cpu_threads"] >= 1 and len(m["date_utc"]) == 20, "host/date")
md = doc["model"]
need(md["source"] == "dummy" and md["name"] == sys.argv[2], "model source")
need(md["vocab_size"] == 128 and md["max_context"] == 256 and md["weight_bytes"] > 0 and md["load_seconds"] >= 0, "model")
e = doc["engine"]
need(e["device"].startswith("cpu") and "weights" in e["memory_plan"], "engine device/plan")
need(e["max_seqs"] >= 3 and e["max_batched_tokens"] >= 9 and e["kv_blocks"] >= 3 and e["block_size"] == 16, "engine sizes")
need(e["workspace_bytes"] > 0 and e["kv_bytes"] > 0 and e["gemm"] == "auto" and e["prefix_cache"] is True, "engine")
s = doc["settings"]
need(s == {"batch": [1, 3], "input_len": [5, 9], "output_len": [4], "warmup": 1, "repetitions": 2, "seed": 7,
           "profile_steps": None}, "settings %s" % s)
need(doc["idle"]["status"] == "unavailable" and doc["idle"]["reason"] == "no GPU in use", "idle unavailable")
res = doc["results"]
need([(r["batch"], r["input_len"], r["output_len"]) for r in res] == [(1, 5, 4), (1, 9, 4), (3, 5, 4), (3, 9, 4)], "order")
keys = {"batch", "input_len", "output_len", "repetitions", "requests", "ttft_ms", "tpot_ms", "itl_ms", "e2el_ms",
        "prefill_tokens_per_s", "decode_tokens_per_s", "output_tokens_per_s", "prefill_seconds", "decode_seconds",
        "prefill_tokens", "decode_tokens", "peak_memory_bytes", "peak_memory_source", "prefix_cache_hit_tokens",
        "energy", "throttled", "throttle_reasons", "first_step", "last_step"}
last = 0
for r in res:
    b, i, o = r["batch"], r["input_len"], r["output_len"]
    need(set(r) == keys, "result keys %s" % sorted(set(r) ^ keys))
    need(r["repetitions"] == 2 and r["requests"] == 2 * b, "requests")
    need(r["ttft_ms"]["n"] == 2 * b and r["tpot_ms"]["n"] == 2 * b and r["e2el_ms"]["n"] == 2 * b, "n")
    need(r["itl_ms"]["n"] == 2 * b * (o - 1), "itl n")
    for k in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"):
        q = r[k]
        need(set(q) == {"mean", "p50", "p90", "p99", "min", "max", "n"}, k)
        need(0 < q["min"] <= q["p50"] <= q["p90"] <= q["p99"] <= q["max"] and q["min"] <= q["mean"] <= q["max"], k + " order")
    need(r["e2el_ms"]["min"] >= r["ttft_ms"]["min"], "e2el >= ttft")
    need(abs(r["tpot_ms"]["mean"] * (o - 1) - (r["e2el_ms"]["mean"] - r["ttft_ms"]["mean"])) < 1e-6, "tpot definition")
    need(r["prefill_tokens"] == 2 * b * i, "prefill tokens")
    # every request's o - 1 later tokens come after the batch's last first token (all prefill in one step)
    need(r["decode_tokens"] == 2 * b * (o - 1), "decode tokens %d" % r["decode_tokens"])
    need(abs(r["prefill_tokens_per_s"] - r["prefill_tokens"] / r["prefill_seconds"]) < 1e-6 * r["prefill_tokens_per_s"], "prefill rate")
    need(abs(r["decode_tokens_per_s"] - r["decode_tokens"] / r["decode_seconds"]) < 1e-6 * r["decode_tokens_per_s"], "decode rate")
    need(r["output_tokens_per_s"] > 0, "output rate")
    need(r["peak_memory_bytes"] > 0 and r["peak_memory_source"] == "process_peak_rss", "memory")
    need(r["prefix_cache_hit_tokens"] == 0, "random prompts share no prefix")
    need(r["energy"] == {"status": "unavailable", "reason": "no GPU in use"}, "energy unavailable")
    need(r["throttled"] is None and r["throttle_reasons"] is None, "throttle unknown without NVML")
    # 2 measured batches of 1 prefill step + o - 1 decode steps each
    need(r["last_step"] - r["first_step"] + 1 == 2 * o and r["first_step"] > last, "steps %d-%d" % (r["first_step"], r["last_step"]))
    last = r["last_step"]
if bad:
    print("bad:", bad)
    sys.exit(1)
EOF

# 1b. Results that cannot be written (a full disk) fail the run with a reason, in every format.
if [[ -w /dev/full ]]; then
    for fmt in --json --csv ""; do
        rc=0
        "$MYRMEX" bench "${CPU[@]}" --dummy "$FIXTURES/gqa/config.json" -b 1 -i 5 -o 2 -r 1 --warmup 0 $fmt \
            >/dev/full 2>"$SCRATCH/e" || rc=$?
        [[ $rc -eq 1 ]] && grep -q "cannot write standard output" "$SCRATCH/e" ||
            fail "bench ${fmt:-(table)} to a full disk exited $rc: $(tail -1 "$SCRATCH/e")"
    done
fi

# 2. A model directory, the table.
run 0 "${CPU[@]}" --model "$FIXTURES/gqa" -b 2 -i 6 -o 3 -r 1 --warmup 0
for want in "model: $FIXTURES/gqa (weights from disk)" "TTFT p50/p99" "J/tok dec" "energy unavailable: no GPU in use"; do
    grep -qF -- "$want" "$SCRATCH/o" || fail "table lacks '$want': $(cat "$SCRATCH/o")"
done
grep -qE '^ +2 +6 +3 \|' "$SCRATCH/o" || fail "table row for b=2 i=6 o=3"

# 3. CSV: the header and one row per configuration.
run 0 "${CPU[@]}" --model "$FIXTURES/gqa" -b 1,2 -i 4 -o 2,3 -r 1 --warmup 0 --csv
[[ $(wc -l <"$SCRATCH/o") -eq 5 ]] || fail "CSV has $(wc -l <"$SCRATCH/o") lines, expected 5"
head -1 "$SCRATCH/o" | grep -q '^batch,input_len,output_len,requests,ttft_ms_mean,' || fail "CSV header"
grep -q '^2,4,3,2,.*,unavailable,unavailable,unknown$' "$SCRATCH/o" || fail "CSV row: $(cat "$SCRATCH/o")"

# 4. Bad sweeps and flags: exit 2 with the reason, nothing on stdout.
usage() {
    local msg=$1
    shift
    run 2 "$@"
    grep -qF -- "$msg" "$SCRATCH/e" || fail "bench $*: expected '$msg' in: $(cat "$SCRATCH/e")"
    [[ ! -s $SCRATCH/o ]] || fail "bench $* printed to stdout on a usage error"
}
G=(--model "$FIXTURES/gqa")
usage "-b: 0 is not in [1, 65536]" "${G[@]}" -b 1,0
usage "invalid value '1,x' for -b" "${G[@]}" -b 1,x
usage "-i: -5 is not in [1, 16777216]" "${G[@]}" -i -5
usage "-o: 0 is not in [1, 16777216]" "${G[@]}" --output-len 0
usage "-r must be >= 1" "${G[@]}" -r 0
usage "--warmup must be >= 0" "${G[@]}" --warmup -1
usage "give --json or --csv, not both" "${G[@]}" --json --csv
usage "give --model or --dummy, not both" "${G[@]}" --dummy small-100m
usage "--profile-steps 'x' is not A:B" "${G[@]}" --profile-steps x
usage "--profile-steps 5:2 needs 1 <= A <= B" "${G[@]}" --profile-steps 5:2
usage "--idle-seconds must be in [0, 600]" "${G[@]}" --idle-seconds -1
usage "unknown option '--batches'" "${G[@]}" --batches 4
if "$MYRMEX" version | grep -q "CUDA backend off"; then
    usage "--profile-steps needs a build with the CUDA backend" "${G[@]}" --profile-steps 1:2
fi

# 5. Runtime failures: exit 1 with the named error.
run 1 "${CPU[@]}" --dummy no-such-preset -b 1 -i 2 -o 2
grep -qF "unknown model preset 'no-such-preset'" "$SCRATCH/e" || fail "unknown preset: $(cat "$SCRATCH/e")"
run 1 "${CPU[@]}" "${G[@]}" -b 1 -i 250 -o 10
grep -qF "exceeds the model's context of 256" "$SCRATCH/e" || fail "context: $(cat "$SCRATCH/e")"

# 6. The plot script on that JSON (skipped without matplotlib).
if python3 -c "import matplotlib" 2>/dev/null; then
    python3 "$HERE/../scripts/plot_bench.py" "$SCRATCH/bench.json" --out "$SCRATCH/plots" >"$SCRATCH/o" 2>"$SCRATCH/e" ||
        fail "plot_bench.py: $(cat "$SCRATCH/e")"
    for png in bench_latency.png bench_throughput.png; do
        [[ -s $SCRATCH/plots/$png ]] || fail "no $png"
    done
    [[ ! -e $SCRATCH/plots/bench_energy.png ]] || fail "an energy chart without measured energy"
else
    echo "matplotlib not installed: plot check skipped"
fi

# 7. --tp 2 on the CPU (thread ranks): no GPU among the ranks, so energy stays unavailable.
run 0 "${CPU[@]}" --tp 2 --dummy "$FIXTURES/gqa/config.json" -b 2 -i 4 -o 3 -r 1 --warmup 0 --json
python3 - "$SCRATCH/o" <<'EOF' || fail "tp 2 JSON checks"
import json, sys
doc = json.loads(open(sys.argv[1]).read())
ok = doc["manifest"]["gpu"] == {"status": "unavailable", "reason": "no GPU in use"} and "tp 2 over threads" in doc["engine"]["memory_plan"]
ok = ok and doc["idle"]["status"] == "unavailable" and len(doc["results"]) == 1
ok = ok and doc["results"][0]["energy"] == {"status": "unavailable", "reason": "no GPU in use"} and doc["results"][0]["requests"] == 2
sys.exit(0 if ok else 1)
EOF

# 8. The loading bar, per layer for dummy weights as for a directory: on a terminal, never
#    into a pipe.
TINY=(--dummy "$FIXTURES/gqa/config.json" -b 1 -i 2 -o 2 -r 1 --warmup 0)
run 0 "${CPU[@]}" "${TINY[@]}"
! grep -qF "loading weights" "$SCRATCH/e" || fail "a loading bar written into a pipe"
if command -v script >/dev/null; then
    rc=0
    script -qec "$(printf '%q ' "$MYRMEX" bench "${CPU[@]}" "${TINY[@]}")" /dev/null </dev/null >"$SCRATCH/tty" 2>&1 || rc=$?
    [[ $rc -eq 0 ]] || fail "bench on a terminal exited $rc: $(head -c 400 "$SCRATCH/tty")"
    for want in "loading weights [###############...............] 1/2" "loading weights [##############################] 2/2"; do
        grep -qF -- "$want" "$SCRATCH/tty" || fail "no '$want' on a terminal: $(head -c 400 "$SCRATCH/tty")"
    done
else
    echo "script(1) not installed: terminal check skipped"
fi

if [[ $failures -ne 0 ]]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "test_bench: all checks passed"
