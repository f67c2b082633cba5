#!/usr/bin/env bash
# Tensor parallelism across processes: `mpirun -np 2 myrmex generate --tp 2` (one rank per
# process) and `--tp 4` (two ranks per process, on threads, the processes joined over MPI)
# on the CPU backend give exactly the output of one process with --tp 1 (and with --tp 2
# threads), several prompts at once; processes with different options or checkpoints refuse
# to start; and when a rank dies or stalls, in either layout, the
# run fails within the comm timeout with a non-zero exit instead of hanging. Skipped (77)
# without mpirun or when the binary was built without MPI.
#
# usage: test_tp_mpi.sh MYRMEX_BINARY FIXTURES_DIR
set -uo pipefail

MYRMEX=${1:?usage: test_tp_mpi.sh MYRMEX_BINARY FIXTURES_DIR}
FIXTURES=${2:?usage: test_tp_mpi.sh MYRMEX_BINARY FIXTURES_DIR}
command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }
"$MYRMEX" version | grep -q "MPI on" || { echo "myrmex built without MPI: skipped"; exit 77; }

SCRATCH=$(mktemp -d "${MYRMEX_TMP:-/tmp}/tp-mpi-XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
# CI runs as root in a container: allow it, oversubscribe 2 cores, talk over loopback TCP.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
# OpenMPI's own allocations are not ours to leak-check under ASan.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
MPIRUN=(mpirun -np 2)

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

cat >"$SCRATCH/prompts.jsonl" <<'JSONL'
{"prompt_ids": [1, 5, 9, 23, 17, 4, 88, 3], "max_tokens": 10}
{"prompt_ids": [7, 7, 7], "max_tokens": 12}
{"prompt_ids": [100, 2, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76], "max_tokens": 6}
{"prompt_ids": [42], "max_tokens": 9, "temperature": 0.7, "seed": 5}
JSONL
MODEL="$FIXTURES/gqa"
common=(generate --model "$MODEL" --device cpu --prompts "$SCRATCH/prompts.jsonl" --json --kv-blocks 64
        --block-size 4 --max-batched-tokens 16 --max-seqs 3)
# Each result's generated ids and finish reason (timings differ from run to run).
tokens_only() { grep -o '"output_ids":\[[^]]*\],"finish_reason":"[a-z]*"' "$1"; }

"$MYRMEX" "${common[@]}" --tp 1 >"$SCRATCH/one.json" 2>"$SCRATCH/one.err" || fail "tp 1 exited $?: $(cat "$SCRATCH/one.err")"
"$MYRMEX" "${common[@]}" --tp 2 >"$SCRATCH/threads.json" 2>"$SCRATCH/threads.err" ||
    fail "tp 2 threads exited $?: $(cat "$SCRATCH/threads.err")"
timeout 120 "${MPIRUN[@]}" "$MYRMEX" "${common[@]}" --tp 2 >"$SCRATCH/mpi.json" 2>"$SCRATCH/mpi.err" ||
    fail "mpirun -np 2 exited $?: $(tail -5 "$SCRATCH/mpi.err")"
timeout 120 "${MPIRUN[@]}" "$MYRMEX" "${common[@]}" --tp 4 >"$SCRATCH/mpi4.json" 2>"$SCRATCH/mpi4.err" ||
    fail "mpirun -np 2 --tp 4 exited $?: $(tail -5 "$SCRATCH/mpi4.err")"
n=$(tokens_only "$SCRATCH/one.json" | wc -l)
[[ $n -eq 4 ]] || fail "tp 1 printed $n results, expected 4"
diff <(tokens_only "$SCRATCH/one.json") <(tokens_only "$SCRATCH/threads.json") >/dev/null ||
    fail "tp 2 (threads) tokens differ from tp 1"
diff <(tokens_only "$SCRATCH/one.json") <(tokens_only "$SCRATCH/mpi.json") >/dev/null ||
    fail "mpirun -np 2 tokens differ from tp 1: $(diff <(tokens_only "$SCRATCH/one.json") <(tokens_only "$SCRATCH/mpi.json") | head -4)"
diff <(tokens_only "$SCRATCH/one.json") <(tokens_only "$SCRATCH/mpi4.json") >/dev/null ||
    fail "mpirun -np 2 --tp 4 tokens differ from tp 1: $(diff <(tokens_only "$SCRATCH/one.json") <(tokens_only "$SCRATCH/mpi4.json") | head -4)"

# Layouts that cannot work are refused clearly: --tp not a multiple of the processes, and a
# comm that cannot span processes.
refused() { # expected-message args...
    local want=$1
    shift
    timeout 60 "${MPIRUN[@]}" "$MYRMEX" "${common[@]}" "$@" >/dev/null 2>"$SCRATCH/refused.err"
    local rc=$?
    [[ $rc -ne 0 && $rc -ne 124 ]] || fail "mpirun with $* exited $rc, expected a clear failure"
    grep -q "$want" "$SCRATCH/refused.err" || fail "mpirun with $*: no '$want': $(grep myrmex "$SCRATCH/refused.err" | head -2)"
}
refused "give --tp 2" --tp 1
refused "give --tp 2 or a multiple" --tp 3
refused "cannot span the processes" --tp 4 --comm threads

# Processes that loaded different options or a different checkpoint refuse to start (MPMD:
# process 1 gets its own command line): --max-seqs 2 against 3, and a copy of the model
# whose first tensor's first byte differs.
mismatch() { # expected-message args-of-process-1...
    local want=$1
    shift
    timeout 60 mpirun -np 1 "$MYRMEX" "${common[@]}" --tp 2 : -np 1 "$MYRMEX" "${common[@]}" --tp 2 "$@" \
        >/dev/null 2>"$SCRATCH/mismatch.err"
    local rc=$?
    [[ $rc -ne 0 && $rc -ne 124 ]] || fail "processes with different $want: mpirun exited $rc"
    grep -q "$want differs" "$SCRATCH/mismatch.err" ||
        fail "processes with different $want: $(grep myrmex "$SCRATCH/mismatch.err" | head -2)"
}
mismatch "the model config or options" --max-seqs 2
cp -r "$MODEL" "$SCRATCH/other"
python3 - "$SCRATCH/other/model.safetensors" <<'EOF' || fail "could not perturb the checkpoint"
import struct, sys
with open(sys.argv[1], "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    f.seek(8 + n)
    b = f.read(1)
    f.seek(8 + n)
    f.write(bytes([b[0] ^ 0x40]))
EOF
mismatch "the checkpoint" --model "$SCRATCH/other"

# Faults: rank R exits, or stalls, at its 5th collective (mid-step): with one rank per
# process (R 1: process 1), and with two (R 3: process 1's second rank, on a thread).
for spec in 2:1 4:3; do
    tp=${spec%%:*} rank=${spec##*:}
    for kind in exit stall; do
        start=$(date +%s)
        timeout 60 "${MPIRUN[@]}" -x MYRMEX_FAULT="$rank:$kind:5" "$MYRMEX" "${common[@]}" --tp "$tp" --comm-timeout 2 \
            >/dev/null 2>"$SCRATCH/fault.err"
        rc=$?
        took=$(($(date +%s) - start))
        what="fault $kind of rank $rank with --tp $tp"
        [[ $rc -ne 0 ]] || fail "$what: mpirun exited 0"
        [[ $rc -ne 124 ]] || fail "$what: the run hung (killed by timeout after 60 s)"
        [[ $took -le 30 ]] || fail "$what: took ${took}s to fail"
        if [[ $kind == stall ]]; then
            grep -q "waited" "$SCRATCH/fault.err" || fail "$what: no timeout report: $(tail -3 "$SCRATCH/fault.err")"
        fi
    done
done

if [[ $failures -gt 0 ]]; then
    echo "$failures failure(s)"
    exit 1
fi
echo "test_tp_mpi: ok"
