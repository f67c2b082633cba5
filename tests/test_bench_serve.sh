#!/usr/bin/env bash
# myrmex bench-serve against a fake OpenAI-compatible server (tests/bench_fake_server.py:
# first token after 40 ms, then one every 10 ms): the JSON has every field, the latencies
# match the server's timeline, failed requests and goodput are counted, the request body is
# what an OpenAI server expects, and bad flags or an unreachable server fail clearly.
# Skipped (77) without python3.
#
# usage: test_bench_serve.sh MYRMEX_BINARY FIXTURES_DIR
set -euo pipefail

MYRMEX=${1:?usage: test_bench_serve.sh MYRMEX_BINARY FIXTURES_DIR}
"$MYRMEX" version | grep -q " bench-serve on" || { echo "skipped: this build left out bench-serve"; exit 77; }
HERE=$(cd "$(dirname "$0")" && pwd)
command -v python3 >/dev/null || { echo "python3 not found: skipped"; exit 77; }
if [[ -n "${MYRMEX_TMP:-}" ]]; then
    mkdir -p "$MYRMEX_TMP"
    SCRATCH=$(mktemp -d "$MYRMEX_TMP/bench-serve-XXXXXX")
else
    SCRATCH=$(mktemp -d)
fi
SERVER_PID=
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

python3 "$HERE/bench_fake_server.py" --port-file "$SCRATCH/port" --ttft-ms 40 --itl-ms 10 --log "$SCRATCH/requests.jsonl" &
SERVER_PID=$!
for _ in $(seq 100); do [[ -s $SCRATCH/port ]] && break; sleep 0.05; done
[[ -s $SCRATCH/port ]] || { echo "FAIL: the fake server did not start" >&2; exit 1; }
URL=http://127.0.0.1:$(cat "$SCRATCH/port")

# 1. Random prompts, a concurrency sweep and a Poisson rate, goodput at SLOs.
rc=0
"$MYRMEX" bench-serve --url "$URL" --num-prompts 12 --input-len 16 --output-len 6 --concurrency 1,4 \
    --request-rate inf,200 --slo-ttft-ms 1000 --slo-tpot-ms 1000 --seed 3 --json >"$SCRATCH/out.json" 2>"$SCRATCH/err" || rc=$?
[[ $rc -eq 0 ]] || fail "bench-serve exited $rc: $(cat "$SCRATCH/err")"
python3 - "$SCRATCH/out.json" "$SCRATCH/requests.jsonl" <<'EOF' || fail "sweep JSON checks"
import json, sys
doc = json.loads(open(sys.argv[1]).read())
bad = []
def need(cond, what):
    if not cond: bad.append(what)
need(doc["benchmark"] == "myrmex bench-serve", "benchmark")
m = doc["manifest"]
for k in ("commit", "dirty", "build_type", "c_flags", "compiler", "sanitize", "cuda", "cuda_version"):
    need(k in m["build"], "manifest.build." + k)
need(m["host"]["cpu_threads"] >= 1 and m["date_utc"].endswith("Z"), "manifest host/date")
need("status" in m["gpu"], "manifest.gpu")
s = doc["settings"]
need(s["model"] == "fake-model", "model from /v1/models")
need(s["num_prompts"] == 12 and s["input_len"] == 16 and s["output_len"] == 6 and s["prompts"] == "random", "settings")
need(s["url"].endswith("/v1/completions") and s["ignore_eos"] is True and s["seed"] == 3, "settings url/eos/seed")
need(s["slo_ms"] == {"ttft": 1000, "tpot": 1000, "e2el": 0}, "settings slo")
res = doc["results"]
need([(r["concurrency"], r["request_rate"]) for r in res] == [(1, "inf"), (1, 200), (4, "inf"), (4, 200)], "sweep points")
keys = {"concurrency", "request_rate", "completed", "failed", "duration_s", "input_tokens", "output_tokens",
        "request_throughput", "output_throughput", "total_token_throughput", "ttft_ms", "tpot_ms", "itl_ms",
        "e2el_ms", "good_requests", "goodput", "first_error"}
for r in res:
    need(set(r) == keys, "result keys %s" % sorted(set(r) ^ keys))
    need(r["completed"] == 12 and r["failed"] == 0 and r["first_error"] is None, "all completed")
    need(r["input_tokens"] == 12 * 16 and r["output_tokens"] == 12 * 6, "token counts")
    d = r["duration_s"]
    need(abs(r["request_throughput"] - 12 / d) < 1e-6 * 12 / d, "request throughput")
    need(abs(r["output_throughput"] - 72 / d) < 1e-6 * 72 / d, "output throughput")
    need(abs(r["total_token_throughput"] - (72 + 192) / d) < 1e-6 * 264 / d, "total throughput")
    for k in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"):
        need(set(r[k]) == {"mean", "p50", "p90", "p99", "min", "max", "n"}, k + " keys")
        need(r[k]["min"] <= r[k]["p50"] <= r[k]["p90"] <= r[k]["p99"] <= r[k]["max"], k + " order")
    need(r["ttft_ms"]["n"] == 12 and r["tpot_ms"]["n"] == 12 and r["itl_ms"]["n"] == 12 * 5, "counts")
    # The server's timeline: TTFT >= 40 ms, ITL >= 10 ms, E2EL >= 90 ms (generous upper bounds: a busy 2-core VM)
    need(40 <= r["ttft_ms"]["p50"] < 400, "ttft %.1f" % r["ttft_ms"]["p50"])
    need(9.5 <= r["itl_ms"]["p50"] < 100 and 9.5 <= r["tpot_ms"]["p50"] < 100, "itl/tpot %.1f" % r["itl_ms"]["p50"])
    need(90 <= r["e2el_ms"]["p50"] < 1000, "e2el")
    # TPOT per request = (E2EL - TTFT) / 5: the means agree
    need(abs(r["tpot_ms"]["mean"] - (r["e2el_ms"]["mean"] - r["ttft_ms"]["mean"]) / 5) < 1e-6, "tpot definition")
    need(r["good_requests"] == 12 and abs(r["goodput"] - r["request_throughput"]) < 1e-9, "goodput")
# Concurrency 1 runs one at a time: its duration is about 12 E2ELs; concurrency 4 is faster.
need(res[0]["duration_s"] >= 12 * 0.09 and res[2]["duration_s"] < res[0]["duration_s"], "concurrency takes effect")
reqs = [json.loads(l) for l in open(sys.argv[2])]
need(len(reqs) == 48, "requests sent: %d" % len(reqs))
r0 = reqs[0]
need(r0["model"] == "fake-model" and r0["stream"] is True and r0["max_tokens"] == 6, "request body")
need(r0["stream_options"] == {"include_usage": True} and r0["ignore_eos"] is True, "stream options")
need(isinstance(r0["prompt"], list) and len(r0["prompt"]) == 16 and all(0 <= t < 32000 for t in r0["prompt"]), "ids")
if bad:
    print("bad:", bad)
    sys.exit(1)
EOF

# 1b. Results that cannot be written (a full disk) fail the run with a reason.
if [[ -w /dev/full ]]; then
    for fmt in --json ""; do
        rc=0
        "$MYRMEX" bench-serve --url "$URL" --num-prompts 2 --input-len 4 --output-len 2 $fmt >/dev/full \
            2>"$SCRATCH/err" || rc=$?
        [[ $rc -eq 1 ]] && grep -q "cannot write standard output" "$SCRATCH/err" ||
            fail "bench-serve ${fmt:-(table)} to a full disk exited $rc: $(tail -1 "$SCRATCH/err")"
    done
fi

# 2. JSONL prompts with a failing and a broken request; a tight TTFT SLO no one meets.
cat >"$SCRATCH/prompts.jsonl" <<'EOF'
{"prompt": "hello there", "max_tokens": 3}
{"prompt_ids": [1, 2, 3, 4]}

{"prompt": "FAIL please"}
{"prompt": "BROKEN stream"}
EOF
rc=0
"$MYRMEX" bench-serve --url "$URL/" --model m1 --prompts "$SCRATCH/prompts.jsonl" --num-prompts 4 --output-len 5 \
    --concurrency 2 --slo-ttft-ms 1 --ignore-eos off --json >"$SCRATCH/out2.json" 2>"$SCRATCH/err" || rc=$?
[[ $rc -eq 0 ]] || fail "bench-serve with prompts exited $rc: $(cat "$SCRATCH/err")"
python3 - "$SCRATCH/out2.json" <<'EOF' || fail "prompt-file JSON checks"
import json, sys
doc = json.loads(open(sys.argv[1]).read())
r = doc["results"][0]
bad = []
if doc["settings"]["model"] != "m1" or doc["settings"]["prompts"].split("/")[-1] != "prompts.jsonl": bad.append("settings")
if doc["settings"]["ignore_eos"] is not False: bad.append("ignore_eos off")
if r["completed"] != 2 or r["failed"] != 2: bad.append("completed %d failed %d" % (r["completed"], r["failed"]))
if r["output_tokens"] != 3 + 5: bad.append("output tokens %d" % r["output_tokens"])
if r["input_tokens"] != 2 + 4: bad.append("input tokens from usage %d" % r["input_tokens"])
if not r["first_error"] or ("HTTP 500" not in r["first_error"] and "broken on purpose" not in r["first_error"]):
    bad.append("first error %r" % r["first_error"])
if r["good_requests"] != 0 or r["goodput"] != 0: bad.append("goodput with a 1 ms TTFT SLO")
if bad:
    print("bad:", bad)
    sys.exit(1)
EOF

# 3. The text report.
rc=0
"$MYRMEX" bench-serve --url "$URL" --num-prompts 2 --input-len 4 --output-len 2 >"$SCRATCH/out.txt" 2>&1 || rc=$?
[[ $rc -eq 0 ]] || fail "text report exited $rc"
for want in "Successful requests:" "Request throughput (req/s):" "TTFT (ms):" "TPOT (ms):" "ITL  (ms):" "E2EL (ms):"; do
    grep -qF -- "$want" "$SCRATCH/out.txt" || fail "text report lacks '$want'"
done

# 4. Bad flags (exit 2, the reason named) and an unreachable server (exit 1).
usage() {
    local msg=$1
    shift
    local rc=0
    "$MYRMEX" bench-serve "$@" >"$SCRATCH/o" 2>"$SCRATCH/e" || rc=$?
    [[ $rc -eq 2 ]] || fail "bench-serve $* exited $rc, expected 2"
    grep -qF -- "$msg" "$SCRATCH/e" || fail "bench-serve $*: expected '$msg' in: $(cat "$SCRATCH/e")"
}
usage "--request-rate values must be > 0 or inf" --url "$URL" --request-rate 0
usage "--request-rate values must be > 0 or inf" --url "$URL" --request-rate 1,x
usage "--request-rate: an empty value" --url "$URL" --request-rate 1,
usage "--concurrency values must be >= 1" --url "$URL" --concurrency 4,0
usage "invalid value" --url "$URL" --concurrency 4,x
usage "--num-prompts must be >= 1" --url "$URL" --num-prompts 0
usage "--url must start with http://" --url "$(cat "$SCRATCH/port")"
usage "--ignore-eos must be on or off" --ignore-eos yes
usage "/v1/chat/completions needs text prompts" --endpoint /v1/chat/completions
rc=0
"$MYRMEX" bench-serve --url http://127.0.0.1:1 --model x --num-prompts 2 --input-len 2 --output-len 2 >"$SCRATCH/o" 2>"$SCRATCH/e" || rc=$?
[[ $rc -eq 1 ]] || fail "an unreachable server exited $rc, expected 1"
grep -qF "all 2 requests to http://127.0.0.1:1/v1/completions failed" "$SCRATCH/e" || fail "unreachable: $(cat "$SCRATCH/e")"
rc=0
"$MYRMEX" bench-serve --url "$URL" --prompts "$SCRATCH/nope.jsonl" >"$SCRATCH/o" 2>"$SCRATCH/e" || rc=$?
[[ $rc -eq 1 ]] || fail "a missing prompt file exited $rc, expected 1"
echo '{"prompt": 5}' >"$SCRATCH/bad.jsonl"
rc=0
"$MYRMEX" bench-serve --url "$URL" --prompts "$SCRATCH/bad.jsonl" >"$SCRATCH/o" 2>"$SCRATCH/e" || rc=$?
[[ $rc -eq 1 ]] && grep -qF "bad.jsonl:1:" "$SCRATCH/e" || fail "a bad prompt line: rc $rc, $(cat "$SCRATCH/e")"

if [[ $failures -ne 0 ]]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "test_bench_serve: all checks passed"
