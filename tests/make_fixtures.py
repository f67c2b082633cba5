#!/usr/bin/env python3
"""Generate reference fixtures for myrmex from Hugging Face transformers.

For every variant this script
  1. draws the weights of a tiny random Llama-family model (fixed seed),
  2. writes them as a classic Hub checkpoint: config.json (written by hand in the
     classic rope_theta / rope_scaling / torch_dtype form) + model.safetensors
     (or 3 shards + model.safetensors.index.json),
  3. RELOADS the directory with AutoModelForCausalLM.from_pretrained(...,
     float32, eager attention), asserts that transformers read what was meant
     (weights bit-exact, rope type, sliding window, head_dim, tying, ...),
  4. for each prompt runs a manual greedy loop (full forward, argmax of float32
     logits, 32 new tokens, no eos stopping), then one forward over
     prompt + continuation, and
  5. writes expected.bin (format "MXFX" version 1, see tests/fixtures/README.md).

Usage:
  python3 tests/make_fixtures.py              # regenerate every variant
  python3 tests/make_fixtures.py mha gqa      # regenerate some variants
  python3 tests/make_fixtures.py --verify     # only re-read and check the files
                                              # (numpy + json, no torch needed)
"""

import json
import math
import os
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")

MAGIC = b"MXFX"
FORMAT_VERSION = 1
N_GEN = 32
PROMPT_LENS = (1, 5, 13, 40)
INIT_RANGE = 0.4  # std of every linear / embedding weight
MIN_GAP = 0.1  # wanted minimum top-2 logit gap at every greedy decision
MAX_TRIES = 3000  # prompt candidates tried per (variant, prompt length)

BASE_SEED = 20240601


def _llama(**kw):
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 32,
        "intermediate_size": 80,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "vocab_size": 128,
        "max_position_embeddings": 256,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
        "hidden_act": "silu",
        "initializer_range": INIT_RANGE,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "pretraining_tp": 1,
        "use_cache": True,
    }
    cfg.update(kw)
    return cfg


# name -> (config.json dict, number of safetensors shards, what it exercises)
VARIANTS = {
    "mha": (
        _llama(),
        1,
        "plain LlamaForCausalLM, multi-head attention (heads == kv heads), f32",
    ),
    "gqa": (
        _llama(hidden_size=48, intermediate_size=96, num_attention_heads=8,
               num_key_value_heads=2, rms_norm_eps=1e-6),
        1,
        "grouped-query attention, 8 query heads over 2 kv heads (4:1), head_dim 6",
    ),
    "tied": (
        _llama(num_key_value_heads=2, intermediate_size=96, tie_word_embeddings=True,
               eos_token_id=[2, 3]),
        1,
        "tie_word_embeddings: no lm_head.weight in the file, logits use embed_tokens",
    ),
    "rope_llama3": (
        _llama(num_attention_heads=2, num_key_value_heads=1, intermediate_size=96,
               rope_theta=500000.0,
               rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 64, "rope_type": "llama3"},
               eos_token_id=[2, 3, 4]),
        1,
        "Llama 3.1 rope scaling (rope_type llama3), theta 5e5, head_dim 16: "
        "frequency pairs hit all three regimes",
    ),
    "rope_linear": (
        _llama(num_key_value_heads=2, intermediate_size=64,
               rope_scaling={"type": "linear", "factor": 2.0}, eos_token_id=[2]),
        1,
        "linear rope scaling (legacy key \"type\"), factor 2",
    ),
    "head_dim": (
        _llama(hidden_size=48, intermediate_size=96, num_attention_heads=4,
               num_key_value_heads=2, head_dim=16, eos_token_id=[2, 3]),
        1,
        "explicit head_dim 16 != hidden/heads (12): q_proj is [64,48], o_proj [48,64]",
    ),
    "odd": (
        _llama(hidden_size=72, intermediate_size=145, num_attention_heads=6,
               num_key_value_heads=2, vocab_size=301, rms_norm_eps=1e-6),
        1,
        "odd sizes: hidden 72, vocab 301, intermediate 145, 6 heads / 2 kv heads, head_dim 12",
    ),
    "bf16": (
        _llama(num_key_value_heads=2, intermediate_size=96, torch_dtype="bfloat16"),
        1,
        "weights stored as BF16 (torch_dtype bfloat16); reference computed in f32 "
        "from the stored values",
    ),
    "f16": (
        _llama(num_key_value_heads=2, intermediate_size=96, torch_dtype="float16",
               eos_token_id=[2, 3]),
        1,
        "weights stored as F16 (torch_dtype float16); reference computed in f32 "
        "from the stored values",
    ),
    "sharded": (
        _llama(num_key_value_heads=2, intermediate_size=96),
        3,
        "3 safetensors shards + model.safetensors.index.json",
    ),
    "mistral": (
        {
            "architectures": ["MistralForCausalLM"],
            "model_type": "mistral",
            "hidden_size": 32,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "sliding_window": 8,
            "vocab_size": 128,
            "max_position_embeddings": 256,
            "tie_word_embeddings": False,
            "bos_token_id": 1,
            "eos_token_id": [2, 3],
            "torch_dtype": "float32",
            "hidden_act": "silu",
            "initializer_range": INIT_RANGE,
            "attention_dropout": 0.0,
            "use_cache": True,
        },
        1,
        "MistralForCausalLM with sliding_window 8 (every sequence is longer than the window)",
    ),
}

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
ST_DTYPE = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}


def head_dim_of(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def tensor_shapes(cfg):
    """HF tensor names and shapes, in the order save_pretrained would emit them."""
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = head_dim_of(cfg)
    nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    out = [("model.embed_tokens.weight", (v, h))]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [
            (p + "self_attn.q_proj.weight", (nq * hd, h)),
            (p + "self_attn.k_proj.weight", (nkv * hd, h)),
            (p + "self_attn.v_proj.weight", (nkv * hd, h)),
            (p + "self_attn.o_proj.weight", (h, nq * hd)),
            (p + "mlp.gate_proj.weight", (inter, h)),
            (p + "mlp.up_proj.weight", (inter, h)),
            (p + "mlp.down_proj.weight", (h, inter)),
            (p + "input_layernorm.weight", (h,)),
            (p + "post_attention_layernorm.weight", (h,)),
        ]
    out.append(("model.norm.weight", (h,)))
    if not cfg["tie_word_embeddings"]:
        out.append(("lm_head.weight", (v, h)))
    return out


def variant_seed(name):
    return BASE_SEED + sum((i + 1) * ord(c) for i, c in enumerate(name))


def llama3_regimes(cfg):
    """Classify each rotary frequency pair the way _compute_llama3_parameters does."""
    rs = cfg["rope_scaling"]
    hd = head_dim_of(cfg)
    old = rs["original_max_position_embeddings"]
    lo_wl = old / rs["low_freq_factor"]
    hi_wl = old / rs["high_freq_factor"]
    res = []
    for i in range(0, hd, 2):
        inv = 1.0 / (cfg["rope_theta"] ** (i / hd))
        wl = 2 * math.pi / inv
        if wl < hi_wl:
            reg = "high (unscaled)"
        elif wl > lo_wl:
            reg = "low (divided by factor)"
        else:
            reg = "medium (smoothed)"
        res.append((i // 2, wl, reg))
    return res, hi_wl, lo_wl


# --------------------------------------------------------------------------- generation

def generate_variant(name):
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    cfg, n_shards, _ = VARIANTS[name]
    cfg = json.loads(json.dumps(cfg))  # deep copy
    seed = variant_seed(name)
    out_dir = os.path.join(FIXTURES, name)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)

    # ---- weights
    g = torch.Generator().manual_seed(seed)
    store_dtype = getattr(torch, cfg["torch_dtype"])
    tensors = {}
    for tname, shape in tensor_shapes(cfg):
        if len(shape) == 1:  # RMSNorm weight: around 1, but not 1, so a skipped norm shows
            t = 1.0 + 0.15 * torch.randn(shape, generator=g, dtype=torch.float32)
        else:
            t = INIT_RANGE * torch.randn(shape, generator=g, dtype=torch.float32)
        tensors[tname] = t.to(store_dtype).contiguous()

    # ---- files
    names = list(tensors)
    if n_shards == 1:
        save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    else:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        groups, cur, acc = [], [], 0
        for tname in names:  # contiguous split into n_shards parts of ~equal bytes
            cur.append(tname)
            acc += tensors[tname].numel() * tensors[tname].element_size()
            if len(groups) < n_shards - 1 and acc >= total * (len(groups) + 1) / n_shards:
                groups.append(cur)
                cur = []
        groups.append(cur)
        assert len(groups) == n_shards and all(groups)
        weight_map = {}
        for k, grp in enumerate(groups):
            fname = f"model-{k + 1:05d}-of-{n_shards:05d}.safetensors"
            save_file({n: tensors[n] for n in grp}, os.path.join(out_dir, fname),
                      metadata={"format": "pt"})
            for n in grp:
                weight_map[n] = fname
        index = {"metadata": {"total_size": total},
                 "weight_map": dict(sorted(weight_map.items()))}
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
            f.write("\n")
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")

    # ---- reload exactly like a Hub checkpoint
    model, info = AutoModelForCausalLM.from_pretrained(
        out_dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    model.eval()
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        assert not info.get(k), (name, k, info.get(k))
    assert type(model).__name__ == cfg["architectures"][0], type(model).__name__
    mc = model.config
    assert mc.model_type == cfg["model_type"]
    assert mc.hidden_size == cfg["hidden_size"]
    assert mc.intermediate_size == cfg["intermediate_size"]
    assert mc.num_hidden_layers == cfg["num_hidden_layers"]
    assert mc.num_attention_heads == cfg["num_attention_heads"]
    assert mc.num_key_value_heads == cfg["num_key_value_heads"]
    assert mc.head_dim == head_dim_of(cfg), (mc.head_dim, head_dim_of(cfg))
    assert mc.vocab_size == cfg["vocab_size"]
    assert mc.rms_norm_eps == cfg["rms_norm_eps"]
    assert mc.tie_word_embeddings == cfg["tie_word_embeddings"]
    assert mc.eos_token_id == cfg["eos_token_id"], (mc.eos_token_id, cfg["eos_token_id"])
    attn0 = model.model.layers[0].self_attn
    assert attn0.head_dim == head_dim_of(cfg)
    assert attn0.q_proj.weight.shape[0] == cfg["num_attention_heads"] * head_dim_of(cfg)
    assert model.model.layers[0].input_layernorm.variance_epsilon == cfg["rms_norm_eps"]
    rp = mc.rope_parameters
    assert rp["rope_theta"] == cfg["rope_theta"], rp
    rs = cfg["rope_scaling"]
    want_type = "default" if rs is None else rs.get("rope_type", rs.get("type"))
    assert rp["rope_type"] == want_type, rp
    assert model.model.rotary_emb.rope_type == want_type
    if rs is not None:
        assert rp["factor"] == rs["factor"], rp
    if cfg["model_type"] == "mistral":
        assert mc.sliding_window == cfg["sliding_window"], mc.sliding_window
    else:
        assert getattr(mc, "sliding_window", None) is None
    if cfg["tie_word_embeddings"]:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    # weights bit-exact (after upcast of bf16/f16 storage)
    sd = model.state_dict()
    for tname, t in tensors.items():
        assert sd[tname].dtype == torch.float32
        assert torch.equal(sd[tname], t.to(torch.float32)), tname
    if cfg["tie_word_embeddings"]:
        assert torch.equal(sd["lm_head.weight"], tensors["model.embed_tokens.weight"].float())

    # ---- rotary frequencies: transformers vs. our own formula
    hd = head_dim_of(cfg)
    theta = cfg["rope_theta"]
    inv = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    if rs is not None and want_type == "linear":
        inv = inv / rs["factor"]
    elif rs is not None and want_type == "llama3":
        regs, hi_wl, lo_wl = llama3_regimes(cfg)
        wl = 2 * math.pi / inv
        old = rs["original_max_position_embeddings"]
        new = inv.copy()
        for j, (_, _, reg) in enumerate(regs):
            if reg.startswith("low"):
                new[j] = inv[j] / rs["factor"]
            elif reg.startswith("medium"):
                s = (old / wl[j] - rs["low_freq_factor"]) / (rs["high_freq_factor"] - rs["low_freq_factor"])
                new[j] = (1 - s) * inv[j] / rs["factor"] + s * inv[j]
        inv = new
        kinds = {r for _, _, r in regs}
        assert len(kinds) == 3, regs
        print(f"  [{name}] llama3 rope: high_freq_wavelen={hi_wl:g} low_freq_wavelen={lo_wl:g}")
        for j, w, r in regs:
            print(f"  [{name}]   pair {j}: wavelen {w:10.3f} -> {r}")
    hf_inv = model.model.rotary_emb.inv_freq.double().numpy()
    assert np.allclose(hf_inv, inv, rtol=1e-6, atol=0), (hf_inv, inv)
    assert model.model.rotary_emb.attention_scaling == 1.0

    if cfg["model_type"] == "mistral":
        check_sliding_window(model, cfg)

    # ---- prompts, greedy continuations, reference logits
    eos = cfg["eos_token_id"]
    eos_set = set(eos if isinstance(eos, list) else [eos])
    vocab = cfg["vocab_size"]
    rng = np.random.default_rng(seed + 1)

    @torch.no_grad()
    def logits_of(ids):
        x = torch.tensor([ids], dtype=torch.long)
        return model(input_ids=x, use_cache=False).logits[0].float()

    def greedy(prompt, floor):
        """Greedy continuation and its minimum decision gap; (None, gap) when it
        hits an eos id or its gap falls to `floor` or below (cannot beat the best)."""
        ids = list(prompt)
        gap = math.inf
        for _ in range(N_GEN):
            last = logits_of(ids)[-1]
            top2 = torch.topk(last, 2).values
            gap = min(gap, float(top2[0] - top2[1]))
            nxt = int(torch.argmax(last))
            if nxt in eos_set or gap <= floor:
                return None, gap
            ids.append(nxt)
        return ids[len(prompt):], gap

    records, stats = [], []
    for plen in PROMPT_LENS:
        best = None
        for attempt in range(MAX_TRIES):
            prompt = [int(t) for t in rng.integers(0, vocab, size=plen)]
            cont, gap = greedy(prompt, -1.0 if best is None else best[2])
            if cont is None:
                continue
            best = (prompt, cont, gap, attempt + 1)
            if gap >= MIN_GAP:
                break
        assert best is not None, f"{name}: no eos-free continuation for length {plen}"
        prompt, cont, gap, tries = best
        seq = prompt + cont
        logits = logits_of(seq).numpy().astype(np.float32)
        assert logits.shape == (len(seq), vocab)
        # the single forward must agree with the step-by-step greedy loop
        dec = logits[plen - 1:len(seq) - 1]
        assert list(np.argmax(dec, axis=1)) == cont, f"{name}: greedy loop vs full forward"
        srt = np.sort(dec, axis=1)
        gap_full = float(np.min(srt[:, -1] - srt[:, -2]))
        srt_all = np.sort(logits, axis=1)
        gap_all = float(np.min(srt_all[:, -1] - srt_all[:, -2]))
        records.append((prompt, cont, logits))
        stats.append(dict(prompt_len=plen, tries=tries, min_gap=min(gap, gap_full),
                          min_gap_all_rows=gap_all, logit_std=float(logits.std()),
                          logit_absmax=float(np.abs(logits).max())))

    write_expected(os.path.join(out_dir, "expected.bin"), vocab, records)
    sizes = {f: os.path.getsize(os.path.join(out_dir, f)) for f in sorted(os.listdir(out_dir))}
    return dict(name=name, seed=seed, stats=stats, sizes=sizes)


def check_sliding_window(model, cfg):
    """Confirm what transformers' eager Mistral attention does with sliding_window."""
    import torch
    W = cfg["sliding_window"]
    L = 3 * W
    ids = torch.arange(L).unsqueeze(0) % cfg["vocab_size"]
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=False, output_attentions=True)
    att = out.attentions[0][0]  # layer 0, batch 0: [heads, q, k]
    nz = (att > 0).any(dim=0)
    for q in range(L):
        visible = [k for k in range(L) if bool(nz[q, k])]
        want = list(range(max(0, q - W + 1), q + 1))
        assert visible == want, (q, visible, want)
    # the window must matter: without it, rows >= W change, rows < W do not
    saved = model.config.sliding_window
    model.config.sliding_window = None
    try:
        with torch.no_grad():
            full = model(input_ids=ids, use_cache=False).logits[0]
    finally:
        model.config.sliding_window = saved
    diff = (full - out.logits[0]).abs().amax(dim=1)
    assert float(diff[:W].max()) < 1e-5 and bool((diff[W:] > 1e-3).all()), diff
    print(f"  [mistral] eager sliding window: query q attends keys [q-{W - 1}, q] "
          f"({W} keys incl. itself)")


def write_expected(path, vocab, records):
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<III", FORMAT_VERSION, len(records), vocab))
        for prompt, cont, logits in records:
            f.write(struct.pack("<II", len(prompt), len(cont)))
            f.write(np.asarray(prompt + cont, dtype="<i4").tobytes())
            f.write(np.ascontiguousarray(logits, dtype="<f4").tobytes())


# --------------------------------------------------------------------------- verification

def read_expected(path):
    data = open(path, "rb").read()
    assert data[:4] == MAGIC, "bad magic"
    version, n_prompts, vocab = struct.unpack_from("<III", data, 4)
    assert version == FORMAT_VERSION, version
    off = 16
    prompts = []
    for _ in range(n_prompts):
        plen, ngen = struct.unpack_from("<II", data, off)
        off += 8
        n = plen + ngen
        ids = np.frombuffer(data, dtype="<i4", count=n, offset=off)
        off += 4 * n
        logits = np.frombuffer(data, dtype="<f4", count=n * vocab, offset=off).reshape(n, vocab)
        off += 4 * n * vocab
        prompts.append((plen, ngen, ids, logits))
    assert off == len(data), f"{len(data) - off} trailing bytes"
    return vocab, prompts


def read_safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        size = os.path.getsize(path)
    meta = hdr.pop("__metadata__", {})
    end = 0
    for k, v in hdr.items():
        a, b = v["data_offsets"]
        end = max(end, b)
    assert 8 + n + end == size, path
    return meta, hdr


def load_safetensors_np(path):
    """Plain-numpy safetensors reader; every tensor is returned as float64."""
    meta, hdr = read_safetensors_header(path)
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        f.seek(8 + n)
        blob = f.read()
    out = {}
    for k, v in hdr.items():
        a, b = v["data_offsets"]
        raw = blob[a:b]
        if v["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif v["dtype"] == "F16":
            arr = np.frombuffer(raw, dtype="<f2")
        elif v["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(v["dtype"])
        out[k] = arr.astype(np.float64).reshape(v["shape"])
    return out


def numpy_forward(cfg, w, ids):
    """Independent float64 Llama/Mistral forward (the semantics the C code must match)."""
    h, nq, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = head_dim_of(cfg)
    eps = cfg["rms_norm_eps"]
    T = len(ids)
    # rotary: HF "rotate_half" layout, pairs (j, j + hd/2) share inv_freq[j]
    inv = 1.0 / (cfg["rope_theta"] ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    rs = cfg.get("rope_scaling")
    if rs is not None:
        rt = rs.get("rope_type", rs.get("type"))
        if rt == "linear":
            inv = inv / rs["factor"]
        elif rt == "llama3":
            old = rs["original_max_position_embeddings"]
            wl = 2 * math.pi / inv
            lo, hi = old / rs["low_freq_factor"], old / rs["high_freq_factor"]
            s = (old / wl - rs["low_freq_factor"]) / (rs["high_freq_factor"] - rs["low_freq_factor"])
            inv = np.where(wl > lo, inv / rs["factor"],
                           np.where(wl < hi, inv, (1 - s) * inv / rs["factor"] + s * inv))
        else:
            raise ValueError(rt)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
    cos, sin = np.cos(ang), np.sin(ang)  # [T, hd/2]

    def rope(x):  # x [T, heads, hd]
        x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
        c, s_ = cos[:, None, :], sin[:, None, :]
        return np.concatenate([x1 * c - x2 * s_, x2 * c + x1 * s_], axis=-1)

    def rms(x, g):
        return g * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))

    mask = np.tril(np.ones((T, T), dtype=bool))
    if cfg.get("sliding_window"):
        W = cfg["sliding_window"]
        mask &= (np.arange(T)[None, :] > np.arange(T)[:, None] - W)  # keys q-W+1 .. q
    x = w["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = rms(x, w[p + "input_layernorm.weight"])
        q = rope((a @ w[p + "self_attn.q_proj.weight"].T).reshape(T, nq, hd))
        k = rope((a @ w[p + "self_attn.k_proj.weight"].T).reshape(T, nkv, hd))
        v = (a @ w[p + "self_attn.v_proj.weight"].T).reshape(T, nkv, hd)
        o = np.empty((T, nq, hd))
        for hh in range(nq):
            kv = hh // (nq // nkv)  # query head hh uses kv head hh // group
            sc = (q[:, hh, :] @ k[:, kv, :].T) / math.sqrt(hd)
            sc = np.where(mask, sc, -np.inf)
            sc = np.exp(sc - sc.max(axis=1, keepdims=True))
            o[:, hh, :] = (sc / sc.sum(axis=1, keepdims=True)) @ v[:, kv, :]
        x = x + o.reshape(T, nq * hd) @ w[p + "self_attn.o_proj.weight"].T
        m = rms(x, w[p + "post_attention_layernorm.weight"])
        gt = m @ w[p + "mlp.gate_proj.weight"].T
        up = m @ w[p + "mlp.up_proj.weight"].T
        x = x + ((gt / (1 + np.exp(-gt))) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms(x, w["model.norm.weight"])
    head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    return x @ head.T


def verify_variant(name):
    cfg_want, n_shards, _ = VARIANTS[name]
    d = os.path.join(FIXTURES, name)
    cfg = json.load(open(os.path.join(d, "config.json")))
    assert cfg == json.loads(json.dumps(cfg_want)), f"{name}: config.json differs from script"
    # weights: names, shapes, dtypes
    if n_shards == 1:
        files = ["model.safetensors"]
        assert not os.path.exists(os.path.join(d, "model.safetensors.index.json"))
    else:
        index = json.load(open(os.path.join(d, "model.safetensors.index.json")))
        files = sorted(set(index["weight_map"].values()))
        assert files == [f"model-{k:05d}-of-{n_shards:05d}.safetensors" for k in range(1, n_shards + 1)]
    seen = {}
    for fn in files:
        meta, hdr = read_safetensors_header(os.path.join(d, fn))
        assert meta == {"format": "pt"}, meta
        for k, v in hdr.items():
            assert k not in seen, k
            seen[k] = (fn, v)
    want = dict(tensor_shapes(cfg))
    assert set(seen) == set(want), set(seen) ^ set(want)
    total = 0
    for k, (fn, v) in seen.items():
        assert tuple(v["shape"]) == want[k], (k, v["shape"], want[k])
        assert v["dtype"] == ST_DTYPE[cfg["torch_dtype"]], (k, v["dtype"])
        total += math.prod(want[k]) * DTYPE_BYTES[cfg["torch_dtype"]]
        if n_shards > 1:
            assert index["weight_map"][k] == fn
    if n_shards > 1:
        assert index["metadata"]["total_size"] == total
    # expected.bin
    vocab, prompts = read_expected(os.path.join(d, "expected.bin"))
    assert vocab == cfg["vocab_size"]
    weights = {}
    for fn in files:
        weights.update(load_safetensors_np(os.path.join(d, fn)))
    gaps, max_err = [], 0.0
    for plen, ngen, ids, logits in prompts:
        ref = numpy_forward(cfg, weights, ids)
        max_err = max(max_err, float(np.abs(ref - logits).max()))
        assert plen >= 1 and ngen == N_GEN
        assert ids.min() >= 0 and ids.max() < vocab
        assert np.isfinite(logits).all()
        dec = logits[plen - 1:plen + ngen - 1]
        assert (np.argmax(dec, axis=1) == ids[plen:]).all(), f"{name}: argmax != continuation"
        s = np.sort(dec, axis=1)
        gaps.append(float((s[:, -1] - s[:, -2]).min()))
    if cfg["model_type"] == "mistral":
        assert max(p[0] for p in prompts) > cfg["sliding_window"]
    print(f"  {name:12s} ok: {len(prompts)} prompts, lens {[p[0] for p in prompts]}, "
          f"vocab {vocab}, min decision gap {min(gaps):.4f}, "
          f"max |numpy f64 - transformers| {max_err:.2e}")
    assert max_err < 1e-3, f"{name}: numpy reference disagrees ({max_err})"
    return min(gaps)


# --------------------------------------------------------------------------- main

def main(argv):
    verify_only = "--verify" in argv
    names = [a for a in argv if not a.startswith("--")] or list(VARIANTS)
    for n in names:
        assert n in VARIANTS, f"unknown variant {n}"
    if not verify_only:
        import torch
        import transformers
        torch.set_num_threads(1)
        torch.manual_seed(BASE_SEED)
        print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
              f"numpy {np.__version__}")
        transformers.logging.set_verbosity_error()
        results = []
        for n in names:
            r = generate_variant(n)
            results.append(r)
            gaps = [s["min_gap"] for s in r["stats"]]
            print(f"{n:12s} seed {r['seed']}  min decision gap {min(gaps):.4f}  "
                  f"per prompt {[round(g, 4) for g in gaps]}  "
                  f"tries {[s['tries'] for s in r['stats']]}  "
                  f"min gap all rows {min(s['min_gap_all_rows'] for s in r['stats']):.4f}  "
                  f"logit std {np.mean([s['logit_std'] for s in r['stats']]):.2f}")
            print(f"{'':12s} files " + ", ".join(f"{k} {v}" for k, v in r["sizes"].items()))
    print("verify:")
    for n in names:
        verify_variant(n)
    total = 0
    for root, _, files in os.walk(FIXTURES):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"tests/fixtures total {total} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
