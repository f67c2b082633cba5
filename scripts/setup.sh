#!/usr/bin/env bash
# Installs what myrmex needs to build and test, with apt-get, when it is missing.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v git >/dev/null || need+=(git)
[ -f /usr/include/cjson/cJSON.h ] || need+=(libcjson-dev)
# libmicrohttpd: the HTTP server of `myrmex serve`; curl: its tests' client.
[ -f /usr/include/microhttpd.h ] || need+=(libmicrohttpd-dev)
command -v curl >/dev/null || need+=(curl)
# libcurl (multi interface): the HTTP client of `myrmex bench-serve`.
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || [ -f /usr/include/curl/curl.h ] ||
    [ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || need+=(libcurl4-openssl-dev)
# OpenMPI: tensor-parallel ranks in separate processes (mpirun) and their test.
command -v mpirun >/dev/null || need+=(openmpi-bin)
[ -f /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h ] || [ -f /usr/include/mpi.h ] ||
    dpkg -s libopenmpi-dev >/dev/null 2>&1 || need+=(libopenmpi-dev)
# The ASan/UBSan build links libasan/libubsan, which ship with gcc's build-essential.
# clang: the libFuzzer targets (scripts/fuzz.sh, and their short runs in the test suite).
command -v clang >/dev/null || need+=(clang)

if [ ${#need[@]} -gt 0 ]; then
    echo "myrmex setup: installing ${need[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

# cmake >= 3.25 is required (Debian 12 ships 3.25.1).
ver=$(cmake --version | head -1 | awk '{print $3}')
if [ "$(printf '%s\n3.25\n' "$ver" | sort -V | head -1)" != "3.25" ]; then
    echo "myrmex setup: cmake $ver is too old; 3.25 or newer is needed" >&2
    exit 1
fi

# Optional: the Python `tokenizers` package, for the differential tokenizer test (it is
# skipped without it). Never fatal: the build and every other test work without Python.
if command -v python3 >/dev/null && ! python3 -c "import tokenizers" 2>/dev/null; then
    echo "myrmex setup: installing the Python tokenizers package (for test_tokenizer_diff)"
    python3 -m pip install --quiet tokenizers 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages tokenizers 2>/dev/null ||
        echo "myrmex setup: could not install tokenizers; test_tokenizer_diff will be skipped"
fi

# Optional: the official `openai` Python package, for test_serve_openai (skipped without it).
if command -v python3 >/dev/null && ! python3 -c "import openai" 2>/dev/null; then
    echo "myrmex setup: installing the Python openai package (for test_serve_openai)"
    python3 -m pip install --quiet openai 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages openai 2>/dev/null ||
        echo "myrmex setup: could not install openai; test_serve_openai will be skipped"
fi
