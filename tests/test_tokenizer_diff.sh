#!/usr/bin/env bash
# Differential fuzz test of `myrmex tokenize` against the live Hugging Face `tokenizers`
# library on the fixture tokenizers (tests/tokenizer_diff.py): random strings from a fixed
# seed and a time-based seed (printed, for reproduction). Skipped (77) without python3, the
# `tokenizers` package, or the tokenize command.
#
# usage: test_tokenizer_diff.sh MYRMEX_BINARY FIXTURES_DIR
#        MYRMEX_TOKENIZER_DIFF_N=2000 for a longer run
set -uo pipefail

MYRMEX=${1:?usage: test_tokenizer_diff.sh MYRMEX_BINARY FIXTURES_DIR}
FIXTURES=${2:-$(dirname "$0")/fixtures}
HERE=$(cd "$(dirname "$0")" && pwd)

if ! command -v python3 >/dev/null 2>&1; then
    echo "skipped: no python3"
    exit 77
fi
if ! python3 -c "import tokenizers" >/dev/null 2>&1; then
    echo "skipped: the Python tokenizers package is not installed"
    exit 77
fi
if ! "$MYRMEX" tokenize --help >/dev/null 2>&1; then
    echo "skipped: $MYRMEX has no tokenize command"
    exit 77
fi
exec python3 "$HERE/tokenizer_diff.py" --myrmex "$MYRMEX" --fixtures "$FIXTURES" --n "${MYRMEX_TOKENIZER_DIFF_N:-500}"
