#!/usr/bin/env python3
"""Single-thread encode throughput: myrmex against the Hugging Face `tokenizers` library.

Builds a multi-MB text (default >= 4 MB) from the fixture corpus generator
(tests/make_tokenizer_fixtures.py, its own seed, valid UTF-8: prose in ~20 languages, code,
numbers, emoji, whitespace runs, special-token strings, 1000+ character words; documents
joined by "\\n"), then for each fixture tokenizer (default llama3 and llama2) encodes the
WHOLE text in one call, without special tokens, on both sides:

  * HF: Tokenizer.encode(text, add_special_tokens=False) with RAYON_NUM_THREADS=1 and
    TOKENIZERS_PARALLELISM=false set before the import (a single encode call does not use
    the thread pool anyway; encode_batch would). Best of --repeat runs; the Python call
    overhead is included (negligible at this size). The time to decode the bytes to str is
    not included.
  * myrmex: `myrmex tokenize --model DIR --repeat N --json < text`, which encodes N times
    on one thread and prints the encode time (excluding load and output) on stderr. Best of
    the runs is taken as the total / N (the command reports the sum).

Also per-document HF throughput (each "\\n"-separated document encoded by its own encode
call), as real prompts are short. The ids of both sides are compared (must be identical).

  python3 benchmarks/tokenizer_bench.py --myrmex build-rel/myrmex [--mb 4] [--repeat 3]
                                        [--names llama3,llama2,gpt2,mistral]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import make_tokenizer_fixtures as mtf  # noqa: E402

BENCH_SEED = 31337


def build_text(mb):
    code = mtf.code_lines_from_stdlib()
    docs, n = [], 0
    chunk = 0
    while n < mb * 1e6:
        items, _ = mtf.make_corpus(BENCH_SEED + chunk, 5000, code, with_fixed=(chunk == 0), invalid=False)
        for b in items:
            try:
                docs.append(b.decode("utf-8"))  # the fixed cases include invalid UTF-8: left out
            except UnicodeDecodeError:
                continue
            n += len(b) + 1
        chunk += 1
    return docs


def bench_hf(tok, text, docs, repeat):
    best = float("inf")
    ids = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        e = tok.encode(text, add_special_tokens=False)
        best = min(best, time.perf_counter() - t0)
        ids = e.ids
    t0 = time.perf_counter()
    n_doc_tokens = 0
    for d in docs:
        n_doc_tokens += len(tok.encode(d, add_special_tokens=False).ids)
    per_doc = time.perf_counter() - t0
    return ids, best, per_doc, n_doc_tokens


def bench_myrmex(myrmex, d, path, repeat, runs=2):
    best = float("inf")
    ids = None
    for _ in range(runs):
        with open(path, "rb") as f:
            p = subprocess.run([myrmex, "tokenize", "--model", d, "--repeat", str(repeat), "--json"], stdin=f,
                               capture_output=True, timeout=1200)
        if p.returncode != 0:
            raise SystemExit(f"myrmex tokenize failed: {p.stderr.decode(errors='replace')}")
        m = re.search(r"bench: op=encode .*seconds=([0-9.]+)", p.stderr.decode())
        if not m:
            raise SystemExit(f"no bench line in: {p.stderr.decode(errors='replace')}")
        best = min(best, float(m.group(1)) / repeat)
        ids = json.loads(p.stdout)["ids"]
    return ids, best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--myrmex", help="the myrmex binary (omit to measure HF only)")
    ap.add_argument("--mb", type=float, default=4.0, help="text size in MB (10^6 bytes)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--names", default="llama3,llama2")
    args = ap.parse_args()

    import tokenizers
    from tokenizers import Tokenizer

    docs = build_text(args.mb)
    text = "\n".join(docs)
    data = text.encode("utf-8")
    mb = len(data) / 1e6
    print(f"text: {len(docs)} documents, {len(data)} bytes ({mb:.2f} MB), {len(text)} characters; "
          f"tokenizers {tokenizers.__version__} (RAYON_NUM_THREADS=1, single encode calls); "
          f"{os.cpu_count()} CPUs; {os.uname().machine}")
    rows = []
    with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as f:
        f.write(data)
        path = f.name
    try:
        for name in args.names.split(","):
            d = os.path.join(ROOT, "tests", "fixtures", "tokenizers", name)
            tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
            hf_ids, hf_s, hf_doc_s, hf_doc_tokens = bench_hf(tok, text, docs, args.repeat)
            row = {"name": name, "tokens": len(hf_ids), "hf_s": hf_s, "hf_doc_s": hf_doc_s}
            if args.myrmex:
                mx_ids, mx_s = bench_myrmex(args.myrmex, d, path, args.repeat)
                row.update(mx_s=mx_s, equal=mx_ids == hf_ids)
                if mx_ids != hf_ids:
                    first = next((i for i, (a, b) in enumerate(zip(mx_ids, hf_ids)) if a != b),
                                 min(len(mx_ids), len(hf_ids)))
                    row["diff"] = f"first difference at id #{first} of {len(hf_ids)} (myrmex {len(mx_ids)} ids)"
            rows.append(row)
    finally:
        os.unlink(path)

    hdr = (f"| tokenizer | tokens | HF whole text MB/s | HF tokens/s | HF per-doc MB/s | myrmex MB/s | "
           f"myrmex tokens/s | myrmex / HF | ids equal |")
    print()
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for r in rows:
        hf_mbs = mb / r["hf_s"]
        cells = [r["name"], f"{r['tokens']}", f"{hf_mbs:.2f}", f"{r['tokens'] / r['hf_s']:.0f}",
                 f"{mb / r['hf_doc_s']:.2f}"]
        if "mx_s" in r:
            cells += [f"{mb / r['mx_s']:.2f}", f"{r['tokens'] / r['mx_s']:.0f}", f"{r['hf_s'] / r['mx_s']:.2f}x",
                      "yes" if r["equal"] else "NO"]
        else:
            cells += ["-", "-", "-", "-"]
        print("| " + " | ".join(cells) + " |")
    for r in rows:
        if r.get("diff"):
            print(f"{r['name']}: ids differ: {r['diff']}")
    return 0 if all(r.get("equal", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
