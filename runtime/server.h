// myrmex serve: an OpenAI-compatible HTTP server around one engine.
//
//   POST /v1/completions, POST /v1/chat/completions (whole answers or SSE streams),
//   GET /v1/models, GET /health, GET /metrics (Prometheus text).
//
// Threads: libmicrohttpd's pool handles connections (parse, validate, tokenize, admit);
// one engine thread owns the engine (myrmex.h is single-threaded) and steps it while work
// is queued. They meet in one lock: the HTTP side appends jobs to an incoming list and
// wakes the engine thread; the engine thread writes answers into each job's buffer and
// resumes its suspended connection. A connection waiting for its answer is suspended (no
// thread blocked); the engine thread notices a client that left (its socket reads EOF, or
// the stream's write fails) and aborts its requests at the next step, freeing their blocks.
#ifndef MYRMEX_SERVER_H
#define MYRMEX_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "myrmex.h"

// Bounds of the options (server_start refuses values past them; cmd_serve as usage errors).
#define SERVER_MAX_QUEUE (1 << 20)  // max_queue
#define SERVER_MAX_ADMIT (1 << 24)  // the engine's max_seqs + max_queue
#define SERVER_MAX_GRACE_S 1e6      // shutdown_grace_s, seconds

typedef struct ServerConfig {
    const char *host;          // IPv4 address or "localhost" (default 127.0.0.1)
    int port;                  // 0: an ephemeral port (server_port tells which)
    const char *model_dir;     // the engine's model directory (tokenizer, chat template)
    const char *model_name;    // the id clients name in "model" (default: DIR's last component)
    const char *api_key;       // NULL: no authentication; else "Authorization: Bearer KEY" on /v1/*
    const char *chat_template; // NULL: detected from the model; else a family name
    int max_queue;             // sequences admitted beyond the engine's max_seqs; more get 429
    size_t max_body_bytes;     // larger request bodies get 413
    int threads;               // HTTP thread pool size
    int timeout_s;             // idle connection timeout, and the longest a request body may take
    double watchdog_s;         // /health is unhealthy after this long without a step while work waits
    double shutdown_grace_s;   // server_stop waits this long for in-flight requests, then aborts them
} ServerConfig;

ServerConfig server_config_default(void);

typedef struct Server Server;

// Starts serving engine e (borrowed: the server's engine thread drives it until
// server_stop). Errors: MX_ERR_ARG (bad config, unknown chat template), MX_ERR_IO (the
// address cannot be bound), tokenizer load errors, MX_ERR_NOMEM. On error *out is NULL.
MxStatus server_start(MxEngine *e, const ServerConfig *cfg, Server **out);
// The bound port.
int server_port(const Server *s);
// True once the engine cannot run any more (its tensor-parallel ranks failed: a rank died,
// stalled past --comm-timeout or erred). Every request is then answered 503; the caller
// should server_stop and exit non-zero so that a supervisor restarts the server.
bool server_failed(Server *s);
// Graceful stop: refuses new requests (503), waits up to shutdown_grace_s for in-flight
// ones, aborts the rest (each still gets its one final answer), joins the engine thread,
// closes every connection and frees everything. The engine is left idle. NULL is fine.
void server_stop(Server *s);

#endif
