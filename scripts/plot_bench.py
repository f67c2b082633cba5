#!/usr/bin/env python3
"""Renders `myrmex bench --json` and `myrmex bench-serve --json` output to PNG charts.

usage: scripts/plot_bench.py RESULT.json [MORE.json ...] [--out DIR]

From `bench` files (one line per input/output length, one file per model):
  bench_latency.png    TTFT p50 and TPOT p50 (ms) against batch size
  bench_throughput.png decode tokens/s against batch size
  bench_energy.png     joules per decode token and per prefill token against batch size
                       (only configurations whose energy was measured)
From `bench-serve` files:
  serve_throughput.png output tokens/s against concurrency (one line per request rate)
  serve_latency.png    TTFT p50 / ITL p50 (ms) against concurrency

Each chart names the model (or URL) and the GPU from the run's manifest. Needs
matplotlib (`pip install matplotlib`); exits 3 with a message when it is missing.
"""
import argparse
import json
import os
import sys


def load(paths):
    docs = []
    for p in paths:
        with open(p) as f:
            doc = json.load(f)
        doc["_path"] = p
        docs.append(doc)
    return docs


def gpu_name(doc):
    gpu = doc.get("manifest", {}).get("gpu", {})
    state = gpu.get("start") or gpu.get("end") or {}
    return state.get("name") or "no GPU"


def bench_label(doc):
    return "%s on %s" % (doc["model"]["name"], gpu_name(doc) if gpu_name(doc) != "no GPU" else doc["engine"]["device"])


def series(results, key_fn, x="batch"):
    """{(input_len, output_len): [(x, y), ...]} with y = key_fn(result) not None."""
    out = {}
    for r in results:
        y = key_fn(r)
        if y is None:
            continue
        out.setdefault((r["input_len"], r["output_len"]), []).append((r[x], y))
    return {k: sorted(v) for k, v in out.items()}


def energy(r, key):
    e = r.get("energy", {})
    return e.get(key) if e.get("status") == "measured" else None


def save_chart(plt, fig, ax, xlabel, ylabel, title, path):
    """Labels a chart with a log2 x axis, writes it to path (PNG) and returns path."""
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_bench(plt, docs, out):
    written = []
    charts = [
        ("bench_latency.png", "latency vs batch", "ms (p50)",
         [("TTFT", lambda r: r["ttft_ms"]["p50"]), ("TPOT", lambda r: r["tpot_ms"]["p50"])]),
        ("bench_throughput.png", "decode throughput vs batch", "tokens/s",
         [("decode", lambda r: r["decode_tokens_per_s"])]),
        ("bench_energy.png", "energy per token vs batch", "J/token",
         [("decode", lambda r: energy(r, "joules_per_decode_token")),
          ("prefill", lambda r: energy(r, "joules_per_prefill_token"))]),
    ]
    for name, title, ylabel, metrics in charts:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        lines = 0
        for doc in docs:
            for metric, fn in metrics:
                for (i, o), pts in series(doc["results"], fn).items():
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                            label="%s, %s, in %d out %d" % (bench_label(doc), metric, i, o))
                    lines += 1
        if lines == 0:
            plt.close(fig)
            continue  # e.g. no energy measured
        written.append(save_chart(plt, fig, ax, "batch size", ylabel, title, os.path.join(out, name)))
    return written


def plot_serve(plt, docs, out):
    written = []
    charts = [
        ("serve_throughput.png", "output throughput vs concurrency", "tokens/s", [("out", lambda r: r["output_throughput"])]),
        ("serve_latency.png", "latency vs concurrency", "ms (p50)",
         [("TTFT", lambda r: r["ttft_ms"]["p50"]), ("ITL", lambda r: r["itl_ms"]["p50"])]),
    ]
    for name, title, ylabel, metrics in charts:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        lines = 0
        for doc in docs:
            for metric, fn in metrics:
                by_rate = {}
                for r in doc["results"]:
                    if r["concurrency"] is None:
                        continue
                    by_rate.setdefault(str(r["request_rate"]), []).append((r["concurrency"], fn(r)))
                for rate, pts in by_rate.items():
                    pts.sort()
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                            label="%s, %s, rate %s" % (doc["settings"]["url"], metric, rate))
                    lines += 1
        if lines == 0:
            plt.close(fig)
            continue
        written.append(save_chart(plt, fig, ax, "concurrency", ylabel, title, os.path.join(out, name)))
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--out", default=".", help="directory for the PNGs (default .)")
    args = ap.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_bench.py: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        return 3
    docs = load(args.files)
    os.makedirs(args.out, exist_ok=True)
    bench = [d for d in docs if d.get("benchmark") == "myrmex bench"]
    serve = [d for d in docs if d.get("benchmark") == "myrmex bench-serve"]
    other = [d["_path"] for d in docs if d not in bench and d not in serve]
    if other:
        print("plot_bench.py: not bench or bench-serve JSON: %s" % ", ".join(other), file=sys.stderr)
        return 2
    written = (plot_bench(plt, bench, args.out) if bench else []) + (plot_serve(plt, serve, args.out) if serve else [])
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
