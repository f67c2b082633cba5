#!/usr/bin/env python3
"""A fake OpenAI-compatible server for bench-serve's tests (stdlib only).

POST /v1/completions with "stream": true answers with Server-Sent Events on a fixed
timeline: the first token after --ttft-ms, then one token every --itl-ms, max_tokens tokens
in all, a finish_reason-only last chunk, a usage chunk when stream_options.include_usage,
then [DONE]. Each token chunk carries the text " t". A prompt (text) containing "FAIL" gets
HTTP 500; "BROKEN" gets a stream with an error event. GET /v1/models lists "fake-model".

It writes the port it listens on (127.0.0.1, a free one) to --port-file, then serves until
killed. Every request body is appended as one JSON line to --log when given.
"""
import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(args, log_lock):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes

        def log_message(self, *a):  # quiet
            pass

        def send_json(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/v1/models":
                self.send_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
            else:
                self.send_json(404, {"error": {"message": "no route"}})

        def event(self, obj):
            self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
            self.wfile.flush()

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            req = json.loads(self.rfile.read(n) or b"{}")
            if args.log:
                with log_lock, open(args.log, "a") as f:
                    f.write(json.dumps(req) + "\n")
            if self.path != "/v1/completions":
                return self.send_json(404, {"error": {"message": "no route"}})
            prompt = req.get("prompt")
            if isinstance(prompt, str) and "FAIL" in prompt:
                return self.send_json(500, {"error": {"message": "asked to fail"}})
            max_tokens = int(req.get("max_tokens", 16))
            n_prompt = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            base = {"id": "cmpl-1", "object": "text_completion", "model": "fake-model"}
            time.sleep(args.ttft_ms / 1000)
            for i in range(max_tokens):
                if i:
                    time.sleep(args.itl_ms / 1000)
                if isinstance(prompt, str) and "BROKEN" in prompt and i == 1:
                    self.event({"error": {"message": "broken on purpose"}})
                    return
                self.event(dict(base, choices=[{"index": 0, "text": " t", "finish_reason": None}]))
            self.event(dict(base, choices=[{"index": 0, "text": "", "finish_reason": "length"}]))
            if (req.get("stream_options") or {}).get("include_usage"):
                self.event(dict(base, choices=[], usage={"prompt_tokens": n_prompt, "completion_tokens": max_tokens,
                                                         "total_tokens": n_prompt + max_tokens}))
            self.wfile.write(b"data: [DONE]\n\n")

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--ttft-ms", type=float, default=50)
    ap.add_argument("--itl-ms", type=float, default=10)
    ap.add_argument("--log")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(args, threading.Lock()))
    server.daemon_threads = True
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
