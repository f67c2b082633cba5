#!/usr/bin/env bash
# myrmex bench on a GPU: dummy llama-2-7b weights made on the device run a small sweep; the
# JSON is complete, memory is the device's, and when NVML is present the energy per token,
# the idle power and the GPU manifest (name, driver, clocks, throttle flag) are measured.
# --profile-steps runs outside nsys too. With --tp 2 the energy and the manifest cover the
# ranks' GPUs (one for loopback, two for nccl). Exit 77 (skipped) without a CUDA build or a GPU.
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
    device = int(doc["engine"]["device"].split()[0].split(":")[1])
    need([x["cuda_index"] for x in g["gpus"]] == [device], "one GPU listed: %s" % g["gpus"])
    need(g["gpus"][0]["start"]["name"] == g["start"]["name"] and doc["idle"]["gpus"] == 1, "one GPU is the sum")
    need(all(r["energy"]["gpus"] == 1 for r in doc["results"]), "energy of one GPU")
else:
    print("NVML unavailable here (%s): energy not checked" % doc["manifest"]["gpu"].get("reason"))
if bad:
    print("FAIL:", bad)
    sys.exit(1)
EOF

# --tp 2: loopback ranks share one GPU, nccl ranks take two; energy and manifest list each once.
rc=0
"$MYRMEX" bench --device cuda --tp 2 --dummy "$FIXTURES/gqa/config.json" -b 1,2 -i 8 -o 8 -r 1 --warmup 0 \
    --idle-seconds 0.2 --json >"$SCRATCH/tp2.json" 2>"$SCRATCH/e" || rc=$?
[[ $rc -eq 0 ]] || { echo "FAIL: bench --tp 2 exited $rc: $(cat "$SCRATCH/e")" >&2; exit 1; }
python3 - "$SCRATCH/tp2.json" <<'EOF'
import json, sys
doc = json.loads(open(sys.argv[1]).read())
bad = []
def need(cond, what):
    if not cond: bad.append(what)
g = doc["manifest"]["gpu"]
if g.get("status") == "available":
    idx = [x["cuda_index"] for x in g["gpus"]]
    loopback = "loopback" in doc["engine"]["memory_plan"]
    need(len(idx) == (1 if loopback else 2) and len(set(idx)) == len(idx), "GPUs %s (%s)" % (idx, doc["engine"]["memory_plan"]))
    need(len(idx) == 1 or g["start"]["name"].startswith("2 x ") or " + " in g["start"]["name"], "combined name")
    need(doc["idle"]["status"] == "measured" and doc["idle"]["gpus"] == len(idx), "idle over the GPUs")
    for r in doc["results"]:
        need(r["energy"]["status"] == "measured" and r["energy"]["gpus"] == len(idx), "energy over the GPUs")
        need(isinstance(r["throttled"], bool), "throttle flag")
else:
    print("NVML unavailable here (%s): tp 2 energy not checked" % g.get("reason"))
if bad:
    print("FAIL:", bad)
    sys.exit(1)
print("gpu_test_bench: all checks passed")
EOF
