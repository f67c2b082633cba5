#!/usr/bin/env python3
"""End-to-end tests of `myrmex serve` (driven by tests/test_serve*.sh; stdlib only, except
the `openai` mode).

usage: serve_test.py MODE MYRMEX SCRATCH_DIR
  MODE core    every bad-input row of RELIABILITY.md's HTTP table, results equal to
               `myrmex generate`, echo logprobs, 64 concurrent clients, 100 cut streams,
               overload (429 + Retry-After), /health, /metrics, --api-key, graceful SIGTERM,
               a stalled tensor-parallel rank (503, then exit 1)
  MODE curl    the same API through curl (exit 77 when curl is missing)
  MODE openai  through the official `openai` package (exit 77 when it is missing)

Each server runs on 127.0.0.1 with an ephemeral port (--port 0) on a tiny random model with
the llama3 test tokenizer (tests/fixtures/tokenizers/llama3), made in SCRATCH_DIR.
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

MODE, MYRMEX, SCRATCH = sys.argv[1], sys.argv[2], sys.argv[3]
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
MODEL = os.path.join(SCRATCH, "model")
failures = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


# ---- the model and the server ---------------------------------------------------------------

def make_model():
    tok = os.path.join(FIXTURES, "tokenizers", "llama3")
    t = json.load(open(os.path.join(tok, "tokenizer.json"), encoding="utf-8"))
    vocab = max(list(t["model"]["vocab"].values()) + [a["id"] for a in t.get("added_tokens", [])]) + 1
    subprocess.run([MYRMEX, "make-model", MODEL, "--preset", "tiny", "--seed", "7", "--vocab", str(vocab), "--force"],
                   check=True, stdout=subprocess.DEVNULL)
    for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        if os.path.exists(os.path.join(tok, f)):
            shutil.copy(os.path.join(tok, f), MODEL)
    return vocab


class Server:
    def __init__(self, *extra, env=None):
        args = [MYRMEX, "serve", "--model", MODEL, "--port", "0", "--device", "cpu", *extra]
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
        self.log = []
        deadline = time.time() + 60
        self.port = None
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"listening on http://[^:]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            raise RuntimeError("server did not start: " + "".join(self.log))
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def wait_exit(self, timeout):
        """The exit status, or "hung" (then killed) when it outlives the timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return "hung"

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        rc = self.wait_exit(60)
        check(rc == 0, f"server exits 0 after {sig.name}, got {rc}: {''.join(self.log[-5:])}")
        return rc

    def request(self, method, path, body=None, headers=None, timeout=120):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict(r.getheaders()), data

    def post(self, path, obj, **kw):
        status, headers, data = self.request("POST", path, obj, **kw)
        return status, headers, data

    def metrics(self):
        _, _, data = self.request("GET", "/metrics")
        values = {}
        for line in data.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def wait_idle(self, timeout=30):
        """Until no block is live and nothing runs or waits; returns the last metrics."""
        deadline = time.time() + timeout
        while True:
            m = self.metrics()
            if (m.get('myrmex_kv_blocks{state="live"}') == 0 and m.get("myrmex_requests_running") == 0
                    and m.get("myrmex_requests_waiting") == 0 and m.get("myrmex_requests_pending") == 0):
                return m
            if time.time() > deadline:
                return m
            time.sleep(0.05)


def sse_events(data):
    """The JSON objects of an SSE body, and whether it ended with [DONE]."""
    events, done = [], False
    for block in data.decode("utf-8").split("\n\n"):
        if not block.strip():
            continue
        check(block.startswith("data: "), "every SSE event starts with 'data: '")
        payload = block[6:]
        if payload == "[DONE]":
            done = True
            continue
        check(not done, "nothing after [DONE]")
        events.append(json.loads(payload))
    return events, done


def generate(prompt, *extra, chat=False):
    args = [MYRMEX, "generate", "--model", MODEL, "--device", "cpu", "--prompt", prompt, "--json", *extra]
    if chat:
        args.append("--chat")
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def error_shape(data, status, what):
    try:
        e = json.loads(data)["error"]
        check(set(e) == {"message", "type", "param", "code"} and isinstance(e["message"], str),
              f"{what}: OpenAI error body")
    except (ValueError, KeyError, TypeError):
        check(False, f"{what}: the {status} body is an OpenAI error object: {data[:200]!r}")


# ---- core -----------------------------------------------------------------------------------

def test_equal_to_generate(s):
    for temp, seed in ((0, 0), (0.9, 11), (1.3, 12345)):
        g = generate("hello world", "--max-tokens", "12", "--temperature", str(temp), "--seed", str(seed))
        status, _, data = s.post("/v1/completions", {"model": "model", "prompt": "hello world", "max_tokens": 12,
                                                     "temperature": temp, "seed": seed})
        check(status == 200, f"completions 200, got {status}")
        r = json.loads(data)
        check(r["object"] == "text_completion" and r["id"].startswith("cmpl-") and r["model"] == "model",
              "completion id/object/model")
        check(r["choices"][0]["text"] == g["text"], f"completions text == generate (T={temp}, seed={seed})")
        check(r["usage"]["completion_tokens"] == g["completion_tokens"] and r["usage"]["prompt_tokens"] == g["prompt_tokens"],
              "usage == generate's token counts")
        check(r["usage"]["total_tokens"] == r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"], "total_tokens")
        check(r["choices"][0]["finish_reason"] == g["finish_reason"], "finish_reason == generate's")
        # The same as a stream: the chunks' text joins to the same text, then usage, then [DONE].
        status, headers, data = s.post("/v1/completions", {"prompt": "hello world", "max_tokens": 12, "temperature": temp,
                                                           "seed": seed, "stream": True})
        check(status == 200 and headers.get("Content-Type") == "text/event-stream", "stream 200 text/event-stream")
        events, done = sse_events(data)
        check(done, "stream ends with [DONE]")
        text = "".join(c["text"] for e in events for c in e["choices"])
        check(text == g["text"], f"streamed text == generate (T={temp})")
        check(events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == g["completion_tokens"],
              "the last chunk carries usage")
        check([c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]] == [g["finish_reason"]],
              "exactly one finish_reason in the stream")
    # Chat: the same as generate --chat (llama-3 template from the tokenizer).
    g = generate("hi there", "--max-tokens", "10", "--temperature", "0.7", "--seed", "5", chat=True)
    status, _, data = s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi there"}], "max_tokens": 10,
                                                      "temperature": 0.7, "seed": 5})
    r = json.loads(data)
    check(status == 200 and r["object"] == "chat.completion", "chat 200 chat.completion")
    check(r["choices"][0]["message"] == {"role": "assistant", "content": g["text"]}, "chat message == generate --chat")
    check(r["usage"]["prompt_tokens"] == g["prompt_tokens"], "chat prompt tokens == generate --chat")
    status, _, data = s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi there"}], "max_tokens": 10,
                                                      "temperature": 0.7, "seed": 5, "stream": True})
    events, done = sse_events(data)
    check(done and events[0]["choices"][0]["delta"].get("role") == "assistant", "chat stream: role first, [DONE] last")
    check(all(e["object"] == "chat.completion.chunk" for e in events), "chat chunks' object")
    text = "".join(c["delta"].get("content", "") for e in events for c in e["choices"])
    check(text == g["text"], "chat streamed text == generate --chat")
    # n: choices 0..n-1, choice 0 is the seed's own answer.
    status, _, data = s.post("/v1/completions", {"prompt": ["hello world", [1, 2, 3]], "max_tokens": 6, "n": 3,
                                                 "temperature": 1.0, "seed": 11})
    r = json.loads(data)
    check(status == 200 and [c["index"] for c in r["choices"]] == list(range(6)), "2 prompts x n 3 = 6 choices in order")
    g = generate("hello world", "--max-tokens", "6", "--temperature", "1.0", "--seed", "11")
    check(r["choices"][0]["text"] == g["text"], "choice 0 uses the seed itself")


def test_logprobs(s, vocab):
    ids = [random.Random(3).randrange(10, vocab - 20) for _ in range(40)]
    body = {"prompt": ids, "max_tokens": 1, "temperature": 0, "logprobs": 1, "echo": True}  # lm-evaluation-harness
    status, _, data = s.post("/v1/completions", body)
    check(status == 200, f"echo + logprobs 200, got {status}: {data[:200]!r}")
    lp = json.loads(data)["choices"][0]["logprobs"]
    check(len(lp["tokens"]) == 41 and len(lp["token_logprobs"]) == 41 and len(lp["top_logprobs"]) == 41,
          "echo: 40 prompt + 1 generated tokens")
    check(lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None, "nothing predicts the first token")
    check(all(isinstance(x, float) and x <= 0 for x in lp["token_logprobs"][1:]), "logprobs are <= 0")
    check(all(len(t) == 1 and max(t.values()) >= x - 1e-6 for t, x in zip(lp["top_logprobs"][1:], lp["token_logprobs"][1:])),
          "top-1 is at least the token's logprob")
    # Computed again, never from the prefix cache: the same values with the prompt cached.
    again = json.loads(s.post("/v1/completions", body)[2])["choices"][0]["logprobs"]
    check(again["token_logprobs"] == lp["token_logprobs"], "prompt logprobs identical when the prompt is cached")
    # max_tokens 0 with echo (the old harness call): the prompt only.
    status, _, data = s.post("/v1/completions", {**body, "max_tokens": 0})
    r = json.loads(data)
    check(status == 200 and len(r["choices"][0]["logprobs"]["tokens"]) == 40 and r["usage"]["completion_tokens"] == 0,
          "max_tokens 0 + echo: prompt logprobs only")
    check(r["choices"][0]["logprobs"]["token_logprobs"] == lp["token_logprobs"][:40], "the same prompt logprobs")
    # Generated tokens: greedy ones are their own top-1, bit for bit.
    status, _, data = s.post("/v1/completions", {"prompt": "hello", "max_tokens": 5, "temperature": 0, "logprobs": 3})
    lp = json.loads(data)["choices"][0]["logprobs"]
    check(len(lp["tokens"]) == 5 and all(max(t.values()) == x for t, x in zip(lp["top_logprobs"], lp["token_logprobs"])),
          "greedy tokens' logprob == their top-1")
    status, _, data = s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                                                      "temperature": 0, "logprobs": True, "top_logprobs": 2})
    content = json.loads(data)["choices"][0]["logprobs"]["content"]
    check(len(content) == 4 and all(len(c["top_logprobs"]) == 2 and c["logprob"] == c["top_logprobs"][0]["logprob"]
                                    and isinstance(c["bytes"], list) for c in content), "chat logprobs shape")
    status, _, data = s.post("/v1/completions", {"prompt": "hello", "max_tokens": 4, "temperature": 0, "logprobs": 2,
                                                 "stream": True})
    events, _ = sse_events(data)
    toks = [c["logprobs"]["tokens"][0] for e in events for c in e["choices"] if c.get("logprobs")]
    check(len(toks) == 4, "streamed logprobs: one per token")


def test_bad_inputs(s, vocab):
    def expect(status_want, body, what, path="/v1/completions", headers=None, method="POST", marker=None):
        status, h, data = s.request(method, path, body, headers=headers)
        check(status == status_want, f"{what}: expected {status_want}, got {status} {data[:160]!r}")
        if status >= 400:
            error_shape(data, status, what)
        if marker is not None:
            check(marker not in data, f"{what}: the error does not echo the request's bytes")
        return h

    P = {"prompt": "hi", "max_tokens": 2}
    expect(400, b'{"prompt": "hi", "max_tokens": 2', "truncated JSON")
    expect(400, b'{"prompt": hi}', "malformed JSON")
    expect(400, b'[1, 2]', "not an object")
    expect(400, b'{"prompt": "a", "prompt": "b"}', "duplicate key")
    expect(415, json.dumps(P).encode(), "wrong content type", headers={"Content-Type": "text/plain"})
    expect(415, json.dumps(P).encode(), "form content type", headers={"Content-Type": "application/x-www-form-urlencoded"})
    expect(413, b'{"prompt": "' + b"a" * (1 << 20) + b'"}', "oversized body (> --max-body-mb 1)")
    expect(400, b"[" * 100 + b"]" * 100, "deep nesting")
    expect(400, b'{"prompt": "' + b"\xff\xfeMARK\xc3" + b'"}', "invalid UTF-8", marker=b"\xff\xfeMARK")
    expect(400, b'{"prompt": "a\x00b"}', "NUL byte")
    expect(400, b'{"prompt": "\\ud800"}', "lone high surrogate")
    expect(400, b'{"prompt": "\\udc00x"}', "lone low surrogate")
    expect(400, {"max_tokens": 2}, "missing prompt")
    expect(400, {"prompt": "", "max_tokens": 2}, "empty prompt")
    expect(400, {"prompt": [], "max_tokens": 2}, "empty prompt list")
    expect(400, {"prompt": [[]], "max_tokens": 2}, "empty id list")
    expect(400, {"prompt": 5}, "prompt of the wrong type")
    expect(400, {"messages": []}, "empty messages", path="/v1/chat/completions")
    expect(400, {}, "missing messages", path="/v1/chat/completions")
    expect(400, {"messages": [{"role": "wizard", "content": "x"}]}, "unknown role", path="/v1/chat/completions")
    expect(400, {"messages": [{"role": "user"}]}, "message without content", path="/v1/chat/completions")
    expect(400, {"prompt": [1, -1], "max_tokens": 2}, "token id < 0")
    expect(400, {"prompt": [1, vocab], "max_tokens": 2}, "token id >= vocab")
    expect(400, {"prompt": [1, 2.5]}, "fractional token id")
    expect(400, {"prompt": [5] * 600, "max_tokens": 2}, "prompt longer than the context (512)")
    expect(400, {"prompt": [5] * 500, "max_tokens": 100}, "prompt + max_tokens over the context")
    expect(400, {"prompt": "hi", "max_tokens": 0}, "max_tokens 0")
    expect(400, {"prompt": "hi", "max_tokens": -1}, "max_tokens < 0")
    expect(400, {"prompt": "hi", "max_tokens": 10 ** 9}, "absurd max_tokens")
    expect(400, {"prompt": "hi", "max_tokens": 1e300}, "max_tokens not an int")
    expect(400, {**P, "n": 17}, "n over the cap")
    expect(400, {**P, "n": 0}, "n 0")
    expect(400, {"prompt": ["hi"] * 65, "max_tokens": 2}, "too many prompts")
    expect(400, {"prompt": ["hi"] * 8, "max_tokens": 2, "n": 9}, "prompts x n over 64 choices")
    expect(400, {**P, "logprobs": 21}, "logprobs over the cap")
    expect(400, {**P, "stop": ["x"] * 17}, "stop list too large")
    expect(400, {**P, "stop": ["y" * 257]}, "stop string too long")
    expect(400, {**P, "stop": [""]}, "empty stop string")
    expect(400, {**P, "temperature": -0.1}, "temperature < 0")
    expect(400, {**P, "top_p": 0}, "top_p 0")
    expect(400, {**P, "top_p": 1.01}, "top_p > 1")
    expect(400, b'{"prompt": "hi", "temperature": 1e999}', "Inf")
    expect(400, b'{"prompt": "hi", "temperature": NaN}', "NaN")
    expect(400, {**P, "temperature": "hot"}, "temperature of the wrong type")
    expect(400, {**P, "stream": "yes"}, "stream of the wrong type")
    expect(400, {**P, "presence_penalty": 0.5}, "unsupported penalty")
    expect(400, {**P, "echo": True, "stream": True}, "echo with stream")
    expect(404, {**P, "model": "EVILMARKER"}, "unknown model", marker=b"EVILMARKER")
    expect(404, P, "unknown route", path="/v1/embeddings")
    expect(404, None, "unknown GET route", path="/nothing", method="GET")
    expect(405, None, "GET on a POST route", method="GET")
    expect(405, P, "POST on a GET route", path="/v1/models")
    # The server is unharmed: a good request still works.
    status, _, _ = s.post("/v1/completions", P)
    check(status == 200, "still serving after the bad inputs")


def test_options():
    """Values the server cannot honour are usage errors (exit 2) before anything loads: a
    queue whose sum with --max-seqs overflowed once answered every request 429, and a huge
    grace overflowed the shutdown deadline."""
    for args, msg in ((["--max-queue", "2147483647"], "--max-queue must be in [0, 1048576]"),
                      (["--max-seqs", "16777216", "--max-queue", "1"], "--max-seqs + --max-queue must be at most"),
                      (["--shutdown-grace", "1e300"], "--shutdown-grace must be in [0, 1000000]")):
        try:
            p = subprocess.run([MYRMEX, "serve", "--model", MODEL, "--port", "0", "--device", "cpu", *args],
                               capture_output=True, text=True, timeout=30)
            rc, err = p.returncode, p.stderr
        except subprocess.TimeoutExpired:
            rc, err = "hung", ""
        check(rc == 2 and msg in err, f"serve {' '.join(args)}: exit 2 with '{msg}', got {rc} {err[-200:]!r}")


def test_no_tokenizer():
    """A model without tokenizer.json serves token ids only: text, chat and stop strings get a
    400 that says why, not an engine refusal."""
    ids_only = os.path.join(os.path.dirname(MODEL), "ids-only")
    shutil.rmtree(ids_only, ignore_errors=True)
    os.makedirs(ids_only)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(MODEL, f), ids_only)
    s = Server("--model", ids_only)
    for body, param in (({"prompt": "hello", "max_tokens": 2}, "prompt"),
                        ({"prompt": [1, 2, 3], "max_tokens": 2, "stop": "x"}, "stop")):
        status, _, data = s.post("/v1/completions", body)
        err = json.loads(data).get("error", {}) if status == 400 else {}
        check(status == 400 and err.get("param") == param and "tokenizer.json" in err.get("message", ""),
              f"no tokenizer, {param}: 400 naming tokenizer.json, got {status} {data[:200]!r}")
    status, _, _ = s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    check(status == 400, f"no tokenizer, chat: 400, got {status}")
    status, _, data = s.post("/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 2})
    check(status == 200 and len(json.loads(data)["choices"]) == 1, f"no tokenizer, ids: 200, got {status}")
    s.stop()


def test_kv_pool_admission():
    s = Server("--kv-blocks", "8", "--block-size", "16", "--timeout", "1")  # 128 tokens of KV < the 512 context
    # Slow and idle clients: half-sent requests hold no thread and are closed after --timeout.
    idle = [socket.create_connection(("127.0.0.1", s.port), timeout=10) for _ in range(20)]
    for sock in idle:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
    check(s.post("/v1/completions", {"prompt": "hi", "max_tokens": 2})[0] == 200, "served beside 20 idle clients")
    t0 = time.time()
    try:
        while idle[0].recv(1024):  # whatever the server says before closing
            pass
        closed = True
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        closed = False
    check(closed and time.time() - t0 < 8, "an idle connection is closed after --timeout")
    for sock in idle:
        sock.close()
    # A client that trickles its body, a byte at a time within the idle timeout, is closed once
    # the whole body has taken --timeout.
    slow = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n")
    t0 = time.time()
    closed = False
    while not closed and time.time() - t0 < 8:
        try:
            slow.sendall(b" ")
            time.sleep(0.3)
        except OSError:
            closed = True
    check(closed and time.time() - t0 < 6, f"a trickled body is cut after --timeout, took {time.time() - t0:.1f} s")
    slow.close()
    status, _, data = s.post("/v1/completions", {"prompt": [5] * 200, "max_tokens": 2})
    check(status == 400 and b"KV cache" in data, f"prompt larger than the KV pool: 400 at admission, got {status}")
    status, _, _ = s.post("/v1/completions", {"prompt": [5] * 100, "max_tokens": 2})
    check(status == 200, "a prompt that fits the pool runs")
    s.stop()


def collect_stream(s, body, results, i):
    status, _, data = s.post("/v1/completions", body)
    results[i] = (status, data)


def test_concurrency(s):
    rng = random.Random(1)
    bodies = []
    for i in range(64):
        b = {"prompt": rng.choice(["hello world", "once upon a time", "x"]) + f" {i}", "max_tokens": rng.randint(1, 24),
             "temperature": rng.choice([0, 0.8]), "seed": i, "stream": i % 2 == 1, "ignore_eos": True}
        bodies.append(b)
    alone = []
    for b in bodies[:8]:  # the first few alone, for comparison
        status, _, data = s.post("/v1/completions", b)
        alone.append(data)
    results = [None] * 64
    threads = [threading.Thread(target=collect_stream, args=(s, b, results, i)) for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def text_of(b, data):
        if b["stream"]:
            events, done = sse_events(data)
            check(done, "concurrent stream ends with [DONE]")
            return "".join(c["text"] for e in events for c in e["choices"]), events[-1]["usage"]["completion_tokens"]
        r = json.loads(data)
        return r["choices"][0]["text"], r["usage"]["completion_tokens"]

    ok = all(r is not None and r[0] == 200 for r in results)
    check(ok, "64 concurrent clients all answered 200")
    for i, b in enumerate(bodies):
        if results[i] and results[i][0] == 200:
            text, n = text_of(b, results[i][1])
            check(n == b["max_tokens"], f"client {i}: all {b['max_tokens']} tokens")
            if i < 8:
                check(text == text_of(b, alone[i])[0], f"client {i}: batched text == alone")
    m = s.wait_idle()
    check(m.get('myrmex_kv_blocks{state="live"}') == 0, "after 64 clients: 0 live KV blocks")
    check(m.get("myrmex_requests_pending") == 0, "after 64 clients: nothing pending")


def cut_stream(port, body, cut_after, sent):
    """Sends a streaming request and closes the socket after cut_after bytes of answer
    (0: right after sending, while it is queued or in prefill)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    data = json.dumps(body).encode()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    got = 0
    while got < cut_after:
        chunk = sock.recv(min(4096, cut_after - got))
        if not chunk:
            break
        got += len(chunk)
    sock.close()
    sent.append(got)


def test_disconnects(s):
    rng = random.Random(2)
    sent = []
    threads = []
    for i in range(100):
        body = {"prompt": f"story {i}", "max_tokens": rng.randint(50, 200), "temperature": 0.8, "seed": i, "stream": True,
                "ignore_eos": True}
        cut = rng.choice([0, 0, rng.randint(1, 400), rng.randint(400, 6000)])
        threads.append(threading.Thread(target=cut_stream, args=(s.port, body, cut, sent)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    m = s.wait_idle()
    check(m.get('myrmex_kv_blocks{state="live"}') == 0, f"after 100 cut streams: 0 live blocks, got {m}")
    check(m.get("myrmex_requests_running") == 0 and m.get("myrmex_requests_pending") == 0, "nothing left running")
    check(m.get("myrmex_requests_aborted_total", 0) >= 50, "the cut streams were aborted")
    status, _, _ = s.post("/v1/completions", {"prompt": "hi", "max_tokens": 2})
    check(status == 200, "still serving after 100 cut streams")
    # /metrics read right after an answer already counts that answer's blocks as freed.
    lagging = 0
    for i in range(20):
        s.post("/v1/completions", {"prompt": f"quick {i}", "max_tokens": 3, "stream": i % 2 == 1})
        m = s.metrics()
        lagging += m.get('myrmex_kv_blocks{state="live"}') != 0 or m.get("myrmex_requests_pending") != 0
    check(lagging == 0, f"/metrics after an answer shows its blocks live in {lagging} of 20 requests")


def test_overload():
    s = Server("--max-seqs", "2", "--max-queue", "2")  # 4 requests admitted at most
    results = [None] * 24

    def one(i):
        results[i] = s.post("/v1/completions", {"prompt": f"load {i}", "max_tokens": 48, "ignore_eos": True,
                                                "temperature": 0})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = [r[0] for r in results]
    check(all(c in (200, 429) for c in codes), f"overload answers are 200 or 429: {codes}")
    check(codes.count(429) >= 1, "some requests got 429")
    check(codes.count(200) >= 4, "the admitted ones finished")
    for status, headers, data in results:
        if status == 429:
            check(headers.get("Retry-After") == "1", "429 carries Retry-After")
            error_shape(data, 429, "429")
        else:
            check(json.loads(data)["usage"]["completion_tokens"] == 48, "admitted requests generate all their tokens")
    m = s.wait_idle()
    check(m.get('myrmex_requests_total{status="429"}', 0) == codes.count(429), "429s counted in /metrics")
    # More choices than the server ever admits at once is the request's fault (400), not a
    # 429 that a client would retry forever; exactly as many is admitted.
    status, _, data = s.post("/v1/completions", {"prompt": "hi", "max_tokens": 2, "n": 5})
    check(status == 400 and json.loads(data)["error"]["param"] == "n",
          f"n over --max-seqs + --max-queue: 400, got {status} {data[:200]!r}")
    status, _, data = s.post("/v1/completions", {"prompt": ["a", "b"], "max_tokens": 2, "n": 2})
    check(status == 200, f"prompts x n == --max-seqs + --max-queue is admitted, got {status} {data[:200]!r}")
    s.stop()


def test_routes_and_auth(s):
    status, _, data = s.request("GET", "/health")
    check(status == 200, "/health 200")
    status, _, data = s.request("GET", "/v1/models")
    models = json.loads(data)
    check(status == 200 and models["object"] == "list" and models["data"][0]["id"] == "model", "/v1/models")
    m = s.metrics()
    for name in ("myrmex_time_to_first_token_seconds_count", "myrmex_inter_token_latency_seconds_count",
                 "myrmex_e2e_request_latency_seconds_count", "myrmex_requests_waiting", "myrmex_requests_running",
                 'myrmex_kv_blocks{state="free"}', 'myrmex_kv_blocks{state="cached"}', "myrmex_preemptions_total",
                 "myrmex_prefix_cache_hit_rate", "myrmex_prompt_tokens_total", "myrmex_generation_tokens_total",
                 'myrmex_requests_total{status="200"}', 'myrmex_requests_total{status="400"}'):
        check(name in m, f"/metrics has {name}")
    check(m.get("myrmex_time_to_first_token_seconds_count", 0) > 0, "TTFT observed")
    k = Server("--api-key", "sekret")
    P = {"prompt": "hi", "max_tokens": 2}
    check(k.post("/v1/completions", P)[0] == 401, "no key: 401")
    check(k.post("/v1/completions", P, headers={"Authorization": "Bearer wrong"})[0] == 401, "wrong key: 401")
    check(k.request("GET", "/v1/models")[0] == 401, "models need the key too")
    check(k.post("/v1/completions", P, headers={"Authorization": "Bearer sekret"})[0] == 200, "right key: 200")
    check(k.request("GET", "/health")[0] == 200, "/health needs no key")
    k.stop()


def test_graceful_shutdown():
    s = Server()
    results = {}

    def long_stream():
        results["r"] = s.post("/v1/completions", {"prompt": "long", "max_tokens": 300, "ignore_eos": True, "stream": True})

    t = threading.Thread(target=long_stream)
    t.start()
    time.sleep(0.3)
    s.stop(signal.SIGTERM)
    t.join()
    status, _, data = results["r"]
    events, done = sse_events(data)
    check(status == 200 and done and events[-1]["usage"]["completion_tokens"] == 300,
          "the in-flight stream finished before the server exited")
    try:
        socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
        check(False, "the port is closed after shutdown")
    except OSError:
        pass
    # Past --shutdown-grace the rest is aborted, and still answered (503 in the stream):
    # SIGINT once the stream has begun, with no grace.
    s = Server("--shutdown-grace", "0")
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    c.request("POST", "/v1/completions", body=json.dumps({"prompt": "long", "max_tokens": 500, "n": 8,
                                                           "ignore_eos": True, "stream": True}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    first = r.read(64)
    s.stop(signal.SIGINT)
    data = first + r.read()
    c.close()
    events, done = sse_events(data)
    check(r.status == 200 and done and "error" in events[-1] and events[-1]["error"]["code"] == "shutting_down",
          "a stream cut by the shutdown ends with a 503 error event and [DONE]")


def test_second_signal():
    """A graceful stop waits for the requests in flight; when a step hangs (here a stalled
    rank with a long --comm-timeout), a second SIGTERM ends the process at once."""
    env = dict(os.environ, MYRMEX_FAULT="1:stall:25")
    s = Server("--tp", "2", "--comm-timeout", "120", env=env)

    def ask():
        try:
            s.post("/v1/completions", {"prompt": "long", "max_tokens": 200, "ignore_eos": True}, timeout=15)
        except OSError:
            pass  # the server is killed under it

    t = threading.Thread(target=ask, daemon=True)
    t.start()
    time.sleep(1.0)  # the stall is a few steps in
    s.proc.send_signal(signal.SIGTERM)
    try:
        rc = s.proc.wait(1.5)
    except subprocess.TimeoutExpired:
        rc = "waiting"
    check(rc == "waiting", f"the first SIGTERM waits for the request in flight, got {rc}")
    s.proc.send_signal(signal.SIGTERM)
    t0 = time.time()
    rc = s.wait_exit(10)
    check(rc == -signal.SIGTERM and time.time() - t0 < 5, f"a second SIGTERM ends the server at once, got {rc}")
    t.join(20)


def test_rank_failure():
    """A tensor-parallel rank that stalls mid-request (RELIABILITY.md, multiple ranks): the
    in-flight requests are answered 503 (a stream: an error event, then [DONE]) within the
    comm timeout, and the server exits 1 instead of staying up unable to answer. While the step
    hangs, the watchdog (--watchdog) logs it and /health answers 503."""
    env = dict(os.environ, MYRMEX_FAULT="1:stall:25")  # rank 1 stops answering a few steps in
    s = Server("--tp", "2", "--comm-timeout", "2", "--watchdog", "0.3", env=env)
    results = {}

    def ask(key, body):
        try:
            results[key] = s.post("/v1/completions", body, timeout=60)
        except OSError as e:
            results[key] = (None, {}, str(e).encode())

    health = []

    def poll_health():
        while any(t.is_alive() for t in threads):
            try:
                status, _, data = s.request("GET", "/health", timeout=5)
                health.append((status, data))
            except OSError:
                pass
            time.sleep(0.1)

    body = {"prompt": "long", "max_tokens": 200, "ignore_eos": True}
    threads = [threading.Thread(target=ask, args=("whole", body)),
               threading.Thread(target=ask, args=("stream", dict(body, stream=True)))]
    t0 = time.time()
    for t in threads:
        t.start()
    poller = threading.Thread(target=poll_health)
    poller.start()
    for t in threads:
        t.join()
    poller.join()
    check(any(st == 503 and b"no progress" in d for st, d in health),
          f"/health is 503 while a step hangs past --watchdog: {sorted(set(st for st, _ in health))}")
    status, headers, data = results["whole"]
    check(status == 503 and json.loads(data)["error"]["code"] == "engine_failed",
          f"a request in flight when a rank stalls gets 503 engine_failed, got {status} {data[:200]!r}")
    check(headers.get("Retry-After") == "1", f"the 503 carries Retry-After, headers {dict(headers)}")
    status, _, data = results["stream"]
    events, done = sse_events(data)
    check(status == 200 and done and events and events[-1].get("error", {}).get("code") == "engine_failed",
          f"a stream in flight when a rank stalls ends with an engine_failed event and [DONE]: {data[-300:]!r}")
    rc = s.wait_exit(30)
    check(rc == 1, f"the server exits 1 after its ranks failed, got {rc}: {''.join(s.log[-4:])}")
    check(time.time() - t0 < 20, f"the failure took {time.time() - t0:.1f} s to surface with --comm-timeout 2")
    time.sleep(0.2)  # the log's last lines
    log = "".join(s.log)
    check("watchdog: no engine step for" in log, f"the watchdog logs the hung step: {log[-600:]!r}")


def core():
    vocab = make_model()
    s = Server("--max-body-mb", "1", "--kv-blocks", "1024")
    try:
        t0 = time.time()
        test_equal_to_generate(s)
        test_logprobs(s, vocab)
        test_bad_inputs(s, vocab)
        test_concurrency(s)
        test_disconnects(s)
        test_routes_and_auth(s)
        print(f"main server tests: {time.time() - t0:.1f} s", file=sys.stderr)
    finally:
        s.stop(signal.SIGINT)
    test_options()
    test_no_tokenizer()
    test_kv_pool_admission()
    test_overload()
    test_graceful_shutdown()
    test_second_signal()
    test_rank_failure()


# ---- curl ---------------------------------------------------------------------------------

def curl_mode():
    if not shutil.which("curl"):
        print("skipped: curl is not installed", file=sys.stderr)
        sys.exit(77)
    make_model()
    s = Server()
    base = f"http://127.0.0.1:{s.port}"

    def curl(*args):
        return subprocess.run(["curl", "-sS", *args], capture_output=True, check=True).stdout

    g = generate("hello world", "--max-tokens", "8", "--temperature", "0.8", "--seed", "3")
    out = json.loads(curl(f"{base}/v1/completions", "-H", "Content-Type: application/json",
                          "-d", '{"model": "model", "prompt": "hello world", "max_tokens": 8, "temperature": 0.8, "seed": 3}'))
    check(out["choices"][0]["text"] == g["text"], "curl completions == generate")
    events, done = sse_events(curl("-N", f"{base}/v1/chat/completions", "-H", "Content-Type: application/json",
                                   "-d", '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "stream": true}'))
    check(done and events[-1]["usage"]["completion_tokens"] >= 1, "curl chat stream")
    code = curl("-o", "/dev/null", "-w", "%{http_code}", f"{base}/v1/completions", "-d", '{"prompt": "hi"}')
    check(code == b"415", f"curl -d without a JSON content type: 415, got {code!r}")
    out = json.loads(curl(f"{base}/v1/completions", "-H", "Content-Type: application/json",
                          "-d", '{"prompt": [1, 2, 3, 4], "max_tokens": 1, "echo": true, "logprobs": 1, "temperature": 0}'))
    check(len(out["choices"][0]["logprobs"]["token_logprobs"]) == 5, "curl echo logprobs")
    s.stop()


# ---- the openai package ----------------------------------------------------------------------

def openai_mode():
    try:
        import openai
    except ImportError:
        print("skipped: the openai Python package is not installed (scripts/setup.sh installs it)", file=sys.stderr)
        sys.exit(77)
    make_model()
    s = Server("--api-key", "test-key")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{s.port}/v1", api_key="test-key", max_retries=0)
    check([m.id for m in client.models.list().data] == ["model"], "openai: models.list")
    g = generate("hello world", "--max-tokens", "10", "--temperature", "0.9", "--seed", "42")
    r = client.completions.create(model="model", prompt="hello world", max_tokens=10, temperature=0.9, seed=42)
    check(r.choices[0].text == g["text"] and r.usage.completion_tokens == g["completion_tokens"],
          "openai completions == generate")
    stream = client.completions.create(model="model", prompt="hello world", max_tokens=10, temperature=0.9, seed=42,
                                       stream=True)
    text = "".join(c.choices[0].text for c in stream if c.choices)
    check(text == g["text"], "openai streamed completions == generate")
    g = generate("hi there", "--max-tokens", "8", "--temperature", "0.7", "--seed", "9", chat=True)
    r = client.chat.completions.create(model="model", messages=[{"role": "user", "content": "hi there"}], max_tokens=8,
                                       temperature=0.7, seed=9)
    check(r.choices[0].message.content == g["text"] and r.choices[0].message.role == "assistant", "openai chat == generate")
    stream = client.chat.completions.create(model="model", messages=[{"role": "user", "content": "hi there"}], max_tokens=8,
                                            temperature=0.7, seed=9, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(text == g["text"], "openai streamed chat == generate")
    check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == g["completion_tokens"],
          "openai stream: usage in the last chunk")
    r = client.completions.create(model="model", prompt=[1, 2, 3, 4, 5, 6], max_tokens=1, temperature=0, logprobs=1,
                                  echo=True)
    lp = r.choices[0].logprobs
    check(lp.token_logprobs[0] is None and len(lp.token_logprobs) == 7 and len(lp.top_logprobs) == 7,
          "openai echo logprobs (lm-evaluation-harness shape)")
    r = client.chat.completions.create(model="model", messages=[{"role": "user", "content": "x"}], max_tokens=3,
                                       temperature=0, logprobs=True, top_logprobs=2)
    check(len(r.choices[0].logprobs.content) == 3, "openai chat logprobs")
    try:
        client.completions.create(model="model", prompt="hi", max_tokens=2, temperature=-1)
        check(False, "openai: temperature -1 raises")
    except openai.BadRequestError as e:
        check(e.status_code == 400, "openai: BadRequestError 400")
    try:
        client.completions.create(model="nope", prompt="hi", max_tokens=2)
        check(False, "openai: unknown model raises")
    except openai.NotFoundError:
        check(True, "")
    bad = openai.OpenAI(base_url=f"http://127.0.0.1:{s.port}/v1", api_key="wrong", max_retries=0)
    try:
        bad.completions.create(model="model", prompt="hi", max_tokens=2)
        check(False, "openai: a wrong key raises")
    except openai.AuthenticationError:
        check(True, "")
    s.stop()


if __name__ == "__main__":
    os.makedirs(SCRATCH, exist_ok=True)
    {"core": core, "curl": curl_mode, "openai": openai_mode}[MODE]()
    print(f"{checks} checks, {len(failures)} failed", file=sys.stderr)
    sys.exit(1 if failures else 0)
