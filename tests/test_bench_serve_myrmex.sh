#!/usr/bin/env bash
# myrmex bench-serve against a real `myrmex serve` on the CPU: a tiny random model with the
# llama3 test tokenizer, random prompts at two concurrencies. Every request completes, the
# server's usage counts give the token totals exactly, and each request's latencies are there.
# (A random model emits special tokens and partial characters whose chunks carry no text:
# fewer ITL values than tokens is expected, the token counts come from usage.)
# Skipped (77) without python3.
#
# usage: test_bench_serve_myrmex.sh MYRMEX_BINARY FIXTURES_DIR
set -euo pipefail

MYRMEX=${1:?usage: test_bench_serve_myrmex.sh MYRMEX_BINARY FIXTURES_DIR}
"$MYRMEX" version | grep -q " serve on" || { echo "skipped: this build left out serve"; exit 77; }
"$MYRMEX" version | grep -q " bench-serve on" || { echo "skipped: this build left out bench-serve"; exit 77; }
FIXTURES=${2:?usage: test_bench_serve_myrmex.sh MYRMEX_BINARY FIXTURES_DIR}
command -v python3 >/dev/null || { echo "python3 not found: skipped"; exit 77; }
if [[ -n "${MYRMEX_TMP:-}" ]]; then
    mkdir -p "$MYRMEX_TMP"
    SCRATCH=$(mktemp -d "$MYRMEX_TMP/bench-serve-myrmex-XXXXXX")
else
    SCRATCH=$(mktemp -d)
fi
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

TOK=$FIXTURES/tokenizers/llama3
VOCAB=$(python3 -c '
import json, sys
t = json.load(open(sys.argv[1], encoding="utf-8"))
print(max(list(t["model"]["vocab"].values()) + [a["id"] for a in t.get("added_tokens", [])]) + 1)' "$TOK/tokenizer.json")
"$MYRMEX" make-model "$SCRATCH/model" --preset tiny --seed 3 --vocab "$VOCAB" --force >/dev/null
cp "$TOK"/tokenizer.json "$TOK"/tokenizer_config.json "$SCRATCH/model/"

"$MYRMEX" serve --model "$SCRATCH/model" --port 0 --device cpu --kv-blocks 256 2>"$SCRATCH/serve.err" &
SERVER_PID=$!
PORT=
for _ in $(seq 200); do
    PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$SCRATCH/serve.err" | grep -o '[0-9]*$' || true)
    [[ -n $PORT ]] && break
    sleep 0.05
done
[[ -n $PORT ]] || { echo "FAIL: myrmex serve did not start: $(cat "$SCRATCH/serve.err")" >&2; exit 1; }

rc=0
"$MYRMEX" bench-serve --url "http://127.0.0.1:$PORT" --num-prompts 6 --input-len 12 --output-len 8 --vocab 200 \
    --concurrency 1,3 --json >"$SCRATCH/out.json" 2>"$SCRATCH/err" || rc=$?
[[ $rc -eq 0 ]] || { echo "FAIL: bench-serve exited $rc: $(cat "$SCRATCH/err")" >&2; exit 1; }
python3 - "$SCRATCH/out.json" <<'EOF'
import json, sys
doc = json.loads(open(sys.argv[1]).read())
bad = []
if doc["settings"]["model"] != "model": bad.append("model id from /v1/models: %r" % doc["settings"]["model"])
for r in doc["results"]:
    if r["completed"] != 6 or r["failed"] != 0: bad.append("completed %d failed %d: %s" % (r["completed"], r["failed"], r["first_error"]))
    if r["output_tokens"] != 6 * 8 or r["input_tokens"] != 6 * 12: bad.append("usage counts %d %d" % (r["output_tokens"], r["input_tokens"]))
    if r["ttft_ms"]["n"] != 6 or r["e2el_ms"]["n"] != 6 or r["tpot_ms"]["n"] != 6: bad.append("per-request values")
    if not 0 < r["ttft_ms"]["p50"] <= r["e2el_ms"]["p50"]: bad.append("ttft <= e2el")
    if r["itl_ms"]["n"] > 6 * 7: bad.append("more ITL values than token gaps")
if [r["concurrency"] for r in doc["results"]] != [1, 3]: bad.append("sweep")
if bad:
    print("FAIL:", bad)
    sys.exit(1)
print("test_bench_serve_myrmex: all checks passed")
EOF
