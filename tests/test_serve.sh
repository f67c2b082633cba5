#!/usr/bin/env bash
# myrmex serve end to end, mode 'core' of tests/serve_test.py (see its docstring).
# usage: test_serve.sh MYRMEX_BINARY FIXTURES_DIR   (scratch files under $MYRMEX_TMP or mktemp)
set -euo pipefail
MYRMEX=${1:?usage: test_serve.sh MYRMEX_BINARY FIXTURES_DIR}
"$MYRMEX" version | grep -q " serve on" || { echo "skipped: this build left out serve"; exit 77; }
command -v python3 >/dev/null || { echo "skipped: python3 is not installed"; exit 77; }
if [[ -n "${MYRMEX_TMP:-}" ]]; then
    mkdir -p "$MYRMEX_TMP"
    SCRATCH=$(mktemp -d "$MYRMEX_TMP/serve-core-XXXXXX")
else
    SCRATCH=$(mktemp -d)
fi
trap 'rm -rf "$SCRATCH"' EXIT
python3 "$(dirname "$0")/serve_test.py" core "$MYRMEX" "$SCRATCH"
