#!/usr/bin/env bash
# myrmex bench on a GPU: dummy llama-2-7b weights made on the device run a small sweep; the
# JSON is complete, memory is the device's, and when NVML is present the energy per token,
# the idle power and the GPU manifest (name, driver, clocks, throttle flag) are measured.
# --profile-steps runs outside nsys too. Exit 77 (skipped) without a CUDA build or a GPU.
#
# usage: gpu_test_bench.sh MYRMEX_BINARY FIXTURES_DIR
set -euo pipefail

MYRMEX=${1:?usage: gpu_test_bench.sh MYRMEX_BINARY FIXTURES_DIR}
FIXTURES=${2:?usage: gpu_test_bench.sh MYRMEX_BINARY FIXTURES_DIR}
command -v python3 >/dev/null || { echo "python3 not found: skipped"; exit 77; }
if "$MYRMEX" version | grep -q "CUDA backend off"; then
    echo "a build without the CUDA backend: skipped"
    exit 77
fi
if [[ -n "${MYRMEX_TMP:-}" ]]; then
    mkdir -p "$MYRMEX_TMP"
    SCRATCH=$(mktemp -d "$MYRMEX_TMP/gpu-bench-XXXXXX")
else
    SCRATCH=$(mktemp -d)
fi
trap 'rm -rf "$SCRATCH"' EXIT

# A GPU at all? A tiny model on --device cuda tells.
rc=0
"$MYRMEX" bench --device cuda --dummy "$FIXTURES/gqa/config.json" -b 1 -i 2 -o 2 -r 1 --warmup 0 --idle-seconds 0 \
    >"$SCRATCH/o" 2>"$SCRATCH/e" || rc=$?
if [[ $rc -ne 0 ]] && grep -qF "no usable device" "$SCRATCH/e"; then
    echo "no CUDA device: skipped"
    exit 77
fi
[[ $rc -eq 0 ]] || { echo "FAIL: the probe run exited $rc: $(cat "$SCRATCH/e")" >&2; exit 1; }

rc=0
"$MYRMEX" bench --device cuda --dummy llama-2-7b -b 1,4 -i 128 -o 16 -r 2 --warmup 1 --idle-seconds 1 \
    --profile-steps 3:4 --json >"$SCRATCH/bench.json" 2>"$SCRATCH/e" || rc=$?
[[ $rc -eq 0 ]] || { echo "FAIL: bench on dummy llama-2-7b exited $rc: $(cat "$SCRATCH/e")" >&2; exit 1; }
python3 - "$SCRATCH/bench.json" <<'EOF'
import json, sys
doc = json.loads(open(sys.argv[1]).read())
bad = []
def need(cond, what):
    if not cond: bad.append(what)
need(doc["engine"]["device"].startswith("cuda:"), "device")
need(doc["model"]["name"] == "llama-2-7b" and doc["model"]["weight_bytes"] > 13e9, "7B bf16 weights")
need(doc["manifest"]["build"]["cuda"] is True, "CUDA build")
need(doc["settings"]["profile_steps"] == "3:4", "profile steps")
nvml = doc["manifest"]["gpu"].get("status") == "available"
for r in doc["results"]:
    b = r["batch"]
    need(r["requests"] == 2 * b and r["itl_ms"]["n"] == 2 * b * 15, "counts")
    need(r["decode_tokens_per_s"] > 0 and r["prefill_tokens_per_s"] > 0, "rates")
    need(r["peak_memory_source"] == "device_used" and r["peak_memory_bytes"] > doc["model"]["weight_bytes"], "memory")
    if nvml:
        e = r["energy"]
        need(e["status"] == "measured", "energy measured: %s" % e)
        need(e.get("joules_per_decode_token", 0) > 0 and e.get("joules_per_prefill_token", 0) > 0, "J/token > 0")
        need(isinstance(r["throttled"], bool) and r["throttle_reasons"], "throttle flag")
if nvml:
    g = doc["manifest"]["gpu"]
    need(g["start"]["name"] and g["start"]["driver"] and g["end"]["sm_clock_mhz"] is not None, "gpu manifest")
    need(doc["idle"]["status"] == "measured" and doc["idle"]["watts"] > 0, "idle power")
else:
    print("NVML unavailable here (%s): energy not checked" % doc["manifest"]["gpu"].get("reason"))
if bad:
    print("FAIL:", bad)
    sys.exit(1)
print("gpu_test_bench: all checks passed")
EOF
