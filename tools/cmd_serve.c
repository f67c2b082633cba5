// myrmex serve: load a model into an engine and serve the OpenAI API over HTTP until SIGINT
// or SIGTERM (runtime/server.h). The engine is set up as `myrmex generate` sets it up (same
// device, GEMM and engine flags, same tokenizer and eos ids), so a request with a seed gives
// what generate gives for that prompt and seed.
//
// Signals: SIGINT and SIGTERM are blocked in every thread before any starts; the main
// thread waits for one with sigtimedwait, then stops the server gracefully and exits 0. It
// also stops, with exit status 1, once the engine has failed for good (server_failed). A
// second signal during the graceful stop ends the process at once (a GPU step may hang).
#include "commands.h"

#if MYRMEX_HAVE_SERVE

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "engine_args.h"
#include "myrmex.h"
#include "server.h"

typedef struct Flags {
    const char *model_dir, *host, *name, *api_key, *chat_template, *device, *gemm;
    int port, max_queue, max_body_mb, threads, timeout_s, prompt_logprob_rows;
    double watchdog_s, grace_s;
    EngineArgs engine;
} Flags;

static int parse_flags(int argc, char **argv, Flags *f, MxEngineOptions *eo) {
    ServerConfig d = server_config_default();
    *f = (Flags){.host = d.host, .port = d.port, .device = "auto", .max_queue = d.max_queue,
                 .max_body_mb = (int)(d.max_body_bytes >> 20), .threads = d.threads, .timeout_s = d.timeout_s,
                 .prompt_logprob_rows = eo->prompt_logprob_rows, .watchdog_s = d.watchdog_s, .grace_s = d.shutdown_grace_s};
    engine_args_init(&f->engine);
    ArgSpec specs[40] = {
        {"--model", ARG_STRING, &f->model_dir, "DIR", "Hugging Face model directory (required)"},
        {"--host", ARG_STRING, &f->host, "ADDR", "address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)"},
        {"--port", ARG_INT, &f->port, "N", "TCP port (default 8000; 0 picks a free one)"},
        {"--served-model-name", ARG_STRING, &f->name, "NAME", "the model id clients send (default: DIR's last component)"},
        {"--api-key", ARG_STRING, &f->api_key, "KEY", "require 'Authorization: Bearer KEY' on /v1/* (default: none)"},
        {"--chat-template", ARG_STRING, &f->chat_template, "NAME",
         "llama-2, llama-3, mistral or chatml (default: detected from the model)"},
        {"--max-queue", ARG_INT, &f->max_queue, "N",
         "requests admitted beyond --max-seqs before new ones get 429 (default 256)"},
        {"--max-body-mb", ARG_INT, &f->max_body_mb, "N", "largest request body in MiB; larger get 413 (default 16)"},
        {"--http-threads", ARG_INT, &f->threads, "N", "HTTP connection threads (default 4)"},
        {"--timeout", ARG_INT, &f->timeout_s, "SECONDS", "close connections idle this long, or whose request body takes longer (default 60)"},
        {"--watchdog", ARG_DOUBLE, &f->watchdog_s, "SECONDS",
         "/health turns unhealthy after this long without an engine step while work waits (default 60)"},
        {"--shutdown-grace", ARG_DOUBLE, &f->grace_s, "SECONDS",
         "on SIGINT/SIGTERM, wait this long for in-flight requests before aborting them (default 30)"},
        {"--prompt-logprob-rows", ARG_INT, &f->prompt_logprob_rows, "N",
         "prompt tokens scored per step for echo + logprobs (default 128; 0 turns prompt logprobs off)"},
        {"--device", ARG_STRING, &f->device, "DEV", "auto, cpu, cuda or cuda:N (default auto: cuda when a GPU is present)"},
        {"--gemm", ARG_STRING, &f->gemm, "IMPL", "CUDA GEMM kernels: auto, cublas, skinny, mma or wgmma (default auto)"},
    };
    int n_specs = 15;
    n_specs += engine_args_specs(&f->engine, specs + n_specs); // the engine's flags, last
    int rc = args_parse("serve", "myrmex serve --model DIR [--host 127.0.0.1] [--port 8000] [options]", specs, n_specs,
                        argc, argv, NULL, 0, 0);
    if (rc != ARGS_OK) return rc;
    const char *usage = !f->model_dir                                   ? "--model is required (see --help)"
                        : f->port < 0 || f->port > 65535                ? "--port must be in [0, 65535]"
                        : f->max_queue < 0 || f->max_queue > SERVER_MAX_QUEUE ? "--max-queue must be in [0, 1048576]"
                        : (long long)f->engine.max_seqs + f->max_queue > SERVER_MAX_ADMIT
                            ? "--max-seqs + --max-queue must be at most 16777216"
                        : f->max_body_mb < 1 || f->max_body_mb > 4096   ? "--max-body-mb must be in [1, 4096]"
                        : f->threads < 1 || f->threads > 1024           ? "--http-threads must be in [1, 1024]"
                        : f->timeout_s < 1                              ? "--timeout must be >= 1"
                        : !(f->watchdog_s > 0)                          ? "--watchdog must be > 0"
                        : !(f->grace_s >= 0 && f->grace_s <= SERVER_MAX_GRACE_S) ? "--shutdown-grace must be in [0, 1000000]"
                        : f->prompt_logprob_rows < 0 || f->prompt_logprob_rows > 65536
                            ? "--prompt-logprob-rows must be in [0, 65536]"
                            : engine_args_apply(&f->engine, eo);
    if (usage) return args_usage_error("serve", "%s", usage);
    eo->device = f->device;
    eo->gemm = f->gemm;
    eo->prompt_logprob_rows = f->prompt_logprob_rows;
    return ARGS_OK;
}

int cmd_serve(int argc, char **argv) {
    Flags f;
    MxEngineOptions eo = mx_engine_options_default();
    int rc = parse_flags(argc, argv, &f, &eo);
    if (rc != ARGS_OK) return rc == ARGS_HELP ? 0 : 2;

    // Blocked before any thread starts, so every thread inherits the mask and only
    // sigtimedwait below sees them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN); // a client gone mid-write is an error return, not a death

    MxEngine *e = NULL;
    MxStatus st = mx_engine_create(f.model_dir, &eo, &e);
    if (st == MX_FOLLOWER_DONE) return 0; // mpirun: this process served process 0's steps
    if (st) {
        fprintf(stderr, "myrmex serve: error: %s\n", mx_last_error());
        return 1;
    }
    MxEngineInfo info;
    mx_engine_info(e, &info);
    fprintf(stderr, "myrmex: %s; %s\n", info.device, info.memory_plan);

    ServerConfig cfg = server_config_default();
    cfg.host = f.host;
    cfg.port = f.port;
    cfg.model_dir = f.model_dir;
    cfg.model_name = f.name;
    cfg.api_key = f.api_key;
    cfg.chat_template = f.chat_template;
    cfg.max_queue = f.max_queue;
    cfg.max_body_bytes = (size_t)f.max_body_mb << 20;
    cfg.threads = f.threads;
    cfg.timeout_s = f.timeout_s;
    cfg.watchdog_s = f.watchdog_s;
    cfg.shutdown_grace_s = f.grace_s;
    Server *srv = NULL;
    if ((st = server_start(e, &cfg, &srv))) {
        fprintf(stderr, "myrmex serve: error: %s\n", mx_last_error());
        mx_engine_destroy(e);
        return 1;
    }
    // Tests and scripts read the port from this line (with --port 0).
    fprintf(stderr, "myrmex serve: listening on http://%s:%d (Ctrl-C stops)\n", f.host, server_port(srv));
    fflush(stderr);

    // Until a stop signal, or until the engine fails for good (then exit 1, so that a
    // supervisor restarts the server rather than keep one that answers only 503).
    int sig = -1;
    bool failed = false;
    struct timespec poll = {0, 200 * 1000 * 1000};
    while (sig < 0 && !(failed = server_failed(srv))) sig = sigtimedwait(&stop_signals, NULL, &poll);
    if (failed) fprintf(stderr, "myrmex serve: the engine failed for good; stopping\n");
    else fprintf(stderr, "myrmex serve: %s: finishing in-flight requests (a second signal stops at once)\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    // From here the signals take their default action on this thread: the process ends.
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
    server_stop(srv);
    mx_engine_destroy(e);
    fprintf(stderr, "myrmex serve: stopped\n");
    return failed ? 1 : 0;
}

#else // built without it (-DMYRMEX_SERVE=OFF)

#include <stdio.h>

int cmd_serve(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "myrmex serve: this build left it out: install libmicrohttpd (Debian libmicrohttpd-dev)\n"
                    "and rebuild with -DMYRMEX_SERVE=ON\n");
    return 1;
}

#endif
