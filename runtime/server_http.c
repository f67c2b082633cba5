// The server's HTTP side on libmicrohttpd (see server.h): routes, authentication, bodies,
// admission, suspended connections and SSE streams; and the server's start and stop.
//
// A completions request: the handler collects the body, parses and checks it
// (server_request.c), admits it or answers 429, hands a Job to the engine thread and
// suspends the connection. The engine thread resumes it when there is something to send:
// the whole answer, or (stream) the moment the engine took the request; the stream's
// reader then sends whatever bytes are ready and suspends itself again when none are.
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "server_internal.h"

double server_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

ServerConfig server_config_default(void) {
    return (ServerConfig){.host = "127.0.0.1", .port = 8000, .max_queue = 256, .max_body_bytes = 16u << 20,
                          .threads = 4, .timeout_s = 60, .watchdog_s = 60, .shutdown_grace_s = 30};
}

int server_port(const Server *s) { return s ? s->port : 0; }

// The watchdog's log (RELIABILITY.md: "a watchdog logs it"): one line when the engine has
// made no step for --watchdog seconds with work waiting (/health says the same), one when
// that step returns (it may already have stopped being polled if the step failed for good).
// It runs in server_failed, which cmd_serve polls five times a second from
// its main thread, since the engine thread may be the one that is stuck.

static void watchdog_log(Server *s) {
    double now = server_now();
    bool stalled = s->engine_has_work && now - s->last_progress > s->cfg.watchdog_s;
    if (stalled && s->last_progress != s->watchdog_logged) {
        fprintf(stderr, "myrmex serve: watchdog: no engine step for %.1f s with requests waiting; /health reports unhealthy\n",
                now - s->last_progress);
        s->watchdog_logged = s->last_progress;
    } else if (!stalled && s->watchdog_logged >= 0 && s->last_progress != s->watchdog_logged) {
        fprintf(stderr, "myrmex serve: watchdog: the stalled engine step returned after %.1f s\n",
                s->last_progress - s->watchdog_logged);
        s->watchdog_logged = -1;
    }
}

bool server_failed(Server *s) {
    pthread_mutex_lock(&s->lock);
    bool dead = s->engine_dead;
    watchdog_log(s);
    pthread_mutex_unlock(&s->lock);
    return dead;
}

// ---- responses -----------------------------------------------------------------------------

typedef enum Route { ROUTE_NONE, ROUTE_COMPLETIONS, ROUTE_CHAT, ROUTE_MODELS, ROUTE_HEALTH, ROUTE_METRICS } Route;

// Per HTTP request (libmicrohttpd's con_cls).
typedef struct Request {
    Route route;
    Buf body;
    bool too_large;
    Job *job;
    double started; // server_now() at its headers: the body must arrive within --timeout
} Request;

static enum MHD_Result send_body(Server *s, struct MHD_Connection *c, int status, const char *type, const char *body,
                                 size_t len, const char *retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (retry_after) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    if (status == 405) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "POST");
    if (status == 401) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    if (status != 499) metrics_status(&s->metrics, status);
    return rc;
}

static enum MHD_Result send_error(Server *s, struct MHD_Connection *c, const ApiError *e, const char *retry_after) {
    char *json = api_error_json(e);
    if (!json) return MHD_NO;
    enum MHD_Result rc = send_body(s, c, e->status, "application/json", json, strlen(json), retry_after);
    mx_free(json);
    return rc;
}

static enum MHD_Result fail(Server *s, struct MHD_Connection *c, int status, const char *type, const char *code,
                            const char *msg) {
    ApiError e;
    api_error_set(&e, status, type, NULL, code, "%s", msg);
    return send_error(s, c, &e, status == 429 || status == 503 ? "1" : NULL);
}

static enum MHD_Result send_json(Server *s, struct MHD_Connection *c, int status, char *json) {
    if (!json) return fail(s, c, 500, "server_error", NULL, "out of memory");
    enum MHD_Result rc = send_body(s, c, status, "application/json", json, strlen(json), NULL);
    mx_free(json);
    return rc;
}

// ---- GET routes --------------------------------------------------------------------------------

static bool healthy(Server *s, const char **why) {
    pthread_mutex_lock(&s->lock);
    bool stalled = s->engine_has_work && server_now() - s->last_progress > s->cfg.watchdog_s;
    bool failing = s->engine_failing;
    pthread_mutex_unlock(&s->lock);
    *why = failing ? "the engine's last step failed" : stalled ? "the engine made no progress with work waiting" : NULL;
    return !failing && !stalled;
}

static enum MHD_Result get_route(Server *s, struct MHD_Connection *c, Route route) {
    const char *why;
    bool ok = healthy(s, &why);
    if (route == ROUTE_HEALTH) {
        if (ok) return send_body(s, c, 200, "application/json", "{\"status\":\"ok\"}", 15, NULL);
        return fail(s, c, 503, "server_error", "unhealthy", why);
    }
    if (route == ROUTE_METRICS) {
        char *text = metrics_render(&s->metrics, ok);
        if (!text) return fail(s, c, 500, "server_error", NULL, "out of memory");
        enum MHD_Result rc = send_body(s, c, 200, "text/plain; version=0.0.4", text, strlen(text), NULL);
        mx_free(text);
        return rc;
    }
    return send_json(s, c, 200, api_models_json(s->model_name, s->started, s->info.max_context));
}

// ---- the request's first call: route, method, authentication, content type --------------------

static Route route_of(const char *url, bool *post) {
    static const struct {
        const char *path;
        Route route;
        bool post;
    } routes[] = {{"/v1/completions", ROUTE_COMPLETIONS, true}, {"/v1/chat/completions", ROUTE_CHAT, true},
                  {"/v1/models", ROUTE_MODELS, false},          {"/health", ROUTE_HEALTH, false},
                  {"/metrics", ROUTE_METRICS, false}};
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
        if (strcmp(url, routes[i].path) == 0) {
            *post = routes[i].post;
            return routes[i].route;
        }
    return ROUTE_NONE;
}

// Constant-time comparison of the Authorization header with "Bearer KEY".
static bool authorized(const Server *s, struct MHD_Connection *c) {
    if (!s->cfg.api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    size_t n = strlen(h), k = strlen(s->cfg.api_key);
    unsigned char diff = n != k;
    for (size_t i = 0; i < n && i < k; i++) diff |= (unsigned char)(h[i] ^ s->cfg.api_key[i]);
    return diff == 0;
}

// "application/json", any case, optionally followed by parameters ("; charset=utf-8").
static bool json_content(struct MHD_Connection *c) {
    const char *t = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!t || strncasecmp(t, "application/json", 16) != 0) return false;
    t += 16;
    while (*t == ' ' || *t == '\t') t++;
    return *t == '\0' || *t == ';';
}

static enum MHD_Result begin(Server *s, struct MHD_Connection *c, Request *r, const char *url, const char *method) {
    bool post = false;
    r->route = route_of(url, &post);
    if (r->route == ROUTE_NONE) return fail(s, c, 404, "invalid_request_error", "not_found", "no such route");
    bool is_post = strcmp(method, "POST") == 0, is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (post ? !is_post : !is_get)
        return fail(s, c, 405, "invalid_request_error", "method_not_allowed", post ? "use POST" : "use GET");
    if (r->route != ROUTE_HEALTH && r->route != ROUTE_METRICS && !authorized(s, c))
        return fail(s, c, 401, "invalid_request_error", "invalid_api_key", "a valid 'Authorization: Bearer' key is required");
    if (!post) return get_route(s, c, r->route);
    if (!json_content(c))
        return fail(s, c, 415, "invalid_request_error", "unsupported_media_type", "the body must be application/json");
    // A declared length far over the limit is refused before reading; nearer ones are read
    // and dropped, so the client sees the 413 rather than a reset while still sending.
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) / 64 > s->cfg.max_body_bytes)
        return fail(s, c, 413, "invalid_request_error", "request_too_large", "the body is too large");
    return MHD_YES;
}

// ---- the body: parse, admit, submit, suspend --------------------------------------------------

static void make_meta(Job *j, Server *s) {
    static const char hex[] = "0123456789abcdef";
    uint64_t bits = ((uint64_t)rand() << 32) ^ (uint64_t)rand() ^ (uint64_t)(server_now() * 1e9);
    char rnd[17];
    for (int i = 0; i < 16; i++) rnd[i] = hex[(bits >> (4 * i)) & 15];
    rnd[16] = '\0';
    snprintf(j->meta.id, sizeof j->meta.id, "%s-%s", j->rq.kind == API_CHAT ? "chatcmpl" : "cmpl", rnd);
    j->meta.created = (long long)time(NULL);
    j->meta.model = s->model_name;
}

static enum MHD_Result submit(Server *s, struct MHD_Connection *c, Request *r) {
    if (r->too_large) return fail(s, c, 413, "invalid_request_error", "request_too_large", "the body is too large");
    ApiError err;
    Job *j = mx_calloc(1, sizeof *j);
    if (!j) return fail(s, c, 500, "server_error", NULL, "out of memory");
    ApiKind kind = r->route == ROUTE_CHAT ? API_CHAT : API_COMPLETIONS;
    if (api_request_parse(&s->ctx, kind, r->body.data ? r->body.data : "", r->body.len, &j->rq, &err)) {
        mx_free(j);
        return send_error(s, c, &err, NULL);
    }
    buf_free(&r->body);
    j->srv = s;
    j->n_choices = j->rq.n_prompts * j->rq.n;
    if (j->n_choices > s->admit_limit) { // never admissible: a 429 would be retried forever
        ApiError e;
        api_error_set(&e, 400, "invalid_request_error", "n", NULL,
                      "%d choices (prompts x n) are more than this server admits at once (%d: --max-seqs + --max-queue)",
                      j->n_choices, s->admit_limit);
        api_request_free(&j->rq);
        mx_free(j);
        return send_error(s, c, &e, NULL);
    }
    j->choices = mx_calloc((size_t)j->n_choices, sizeof *j->choices);
    if (!j->choices) {
        api_request_free(&j->rq);
        mx_free(j);
        return fail(s, c, 500, "server_error", NULL, "out of memory");
    }
    for (int k = 0; k < j->n_choices; k++) j->choices[k] = (Choice){.job = j, .index = k};
    j->t_arrive = server_now();
    make_meta(j, s);
    j->conn = c;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;

    pthread_mutex_lock(&s->lock);
    const char *refusal = s->engine_dead ? "dead" : s->stopping ? "stopping" : s->pending_seqs + j->n_choices > s->admit_limit ? "full" : NULL;
    if (!refusal) {
        j->refs = 2; // this request's and the engine thread's
        s->pending_seqs += j->n_choices;
        s->n_jobs++;
        s->n_live++;
        if (s->incoming_tail) s->incoming_tail->next = j;
        else s->incoming = j;
        s->incoming_tail = j;
        r->job = j;
        j->suspended = true; // before the engine thread can see it, so its resume pairs with this
        MHD_suspend_connection(c);
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->lock);
    if (!refusal) return MHD_YES;
    api_request_free(&j->rq);
    mx_free(j->choices);
    mx_free(j);
    if (refusal[0] == 'd') return fail(s, c, 503, "server_error", "engine_failed", ENGINE_DEAD_MESSAGE);
    if (refusal[0] == 's') return fail(s, c, 503, "server_error", "shutting_down", "the server is shutting down");
    return fail(s, c, 429, "rate_limit_error", "rate_limit_exceeded",
                "the server's request queue is full; retry after the Retry-After seconds");
}

// ---- after a resume: the whole answer, or the stream --------------------------------------------

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    Job *j = cls;
    Server *s = j->srv;
    pthread_mutex_lock(&s->lock);
    size_t avail = j->out.len - j->sent;
    if (avail > 0) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, j->out.data + j->sent, n);
        j->sent += n;
        if (j->sent == j->out.len) j->out.len = j->sent = 0; // drained: reuse the buffer
        pthread_mutex_unlock(&s->lock);
        return (ssize_t)n;
    }
    if (j->done) {
        pthread_mutex_unlock(&s->lock);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    j->suspended = true; // until the engine thread publishes more
    MHD_suspend_connection(j->conn);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void stream_free(void *cls) {
    Job *j = cls;
    Server *s = j->srv;
    pthread_mutex_lock(&s->lock);
    job_unref(s, j);
    pthread_mutex_unlock(&s->lock);
}

static enum MHD_Result resumed(Server *s, struct MHD_Connection *c, Request *r) {
    Job *j = r->job;
    pthread_mutex_lock(&s->lock);
    if (j->rq.stream && j->admitted && !j->stream_started) {
        j->stream_started = true;
        j->refs++; // the response's, dropped by stream_free
        pthread_mutex_unlock(&s->lock);
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 << 10, stream_read, j, stream_free);
        if (!resp) {
            stream_free(j);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result rc = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        metrics_status(&s->metrics, 200);
        return rc;
    }
    if (j->done && !j->stream_started) { // out no longer changes
        pthread_mutex_unlock(&s->lock);
        return send_body(s, c, j->status, "application/json", j->out.data ? j->out.data : "", j->out.len,
                         j->status == 503 ? "1" : NULL); // as fail() does for every 503
    }
    j->suspended = true; // nothing to send yet
    MHD_suspend_connection(c);
    pthread_mutex_unlock(&s->lock);
    return MHD_YES;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    Server *s = cls;
    Request *r = *con_cls;
    if (!r) {
        if (!(r = mx_calloc(1, sizeof *r))) return MHD_NO;
        *con_cls = r;
        r->started = server_now();
        return begin(s, c, r, url, method);
    }
    if (r->job) return resumed(s, c, r);
    if (*upload_size) {
        // The idle timeout alone would let a client trickle a byte at a time and hold the
        // connection forever; the whole body gets --timeout too. Closing is all that is left
        // mid-upload.
        if (server_now() - r->started > s->cfg.timeout_s) return MHD_NO;
        if (!r->too_large && r->body.len + *upload_size > s->cfg.max_body_bytes) {
            r->too_large = true;
            buf_free(&r->body);
        }
        if (!r->too_large && buf_append(&r->body, upload_data, *upload_size)) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    return submit(s, c, r);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    (void)c;
    (void)why;
    Server *s = cls;
    Request *r = *con_cls;
    if (!r) return;
    if (r->job) {
        pthread_mutex_lock(&s->lock);
        r->job->gone = true; // ended or failed on the HTTP side: the engine thread aborts what is left
        r->job->suspended = false;
        job_unref(s, r->job);
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->lock);
    }
    buf_free(&r->body);
    mx_free(r);
    *con_cls = NULL;
}

// ---- start and stop ----------------------------------------------------------------------------

static MxStatus load_chat(Server *s) {
    const ServerConfig *cfg = &s->cfg;
    if (cfg->chat_template) {
        int f = chat_family_from_name(cfg->chat_template);
        if (f < 0) return mx_fail(MX_ERR_ARG, "unknown chat template '%s' (one of %s)", cfg->chat_template, chat_family_list());
        s->ctx.chat = (ChatFamily)f;
    } else if (s->tok) {
        char *jinja = NULL;
        if (chat_template_load(cfg->model_dir, &jinja) == MX_OK) s->ctx.chat = chat_family_detect(jinja, s->tok);
        mx_free(jinja);
    }
    if (s->ctx.chat != CHAT_UNKNOWN && s->tok && chat_check_tokenizer(s->ctx.chat, s->tok) != MX_OK) {
        if (cfg->chat_template) return mx_fail(MX_ERR_ARG, "%s", mx_last_error());
        s->ctx.chat = CHAT_UNKNOWN;
    }
    if (s->ctx.chat == CHAT_UNKNOWN)
        fprintf(stderr, "myrmex serve: no known chat template: /v1/chat/completions answers 400 (name one with --chat-template)\n");
    return MX_OK;
}

// The address to bind: IPv4 ("localhost" is 127.0.0.1) or IPv6.
static MxStatus bind_address(const ServerConfig *cfg, struct sockaddr_storage *ss, bool *v6) {
    memset(ss, 0, sizeof *ss);
    const char *host = strcmp(cfg->host, "localhost") == 0 ? "127.0.0.1" : cfg->host;
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    *v6 = false;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)cfg->port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)cfg->port);
        *v6 = true;
    } else {
        return mx_fail(MX_ERR_ARG, "--host must be an IPv4 or IPv6 address or localhost");
    }
    return MX_OK;
}

static void server_free(Server *s) {
    if (s->tok) tokenizer_free(s->tok);
    token_text_free(&s->tt);
    mx_free(s->pub);
    mx_free(s->resume);
    metrics_destroy(&s->metrics);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->lock);
    mx_free(s);
}

MxStatus server_start(MxEngine *e, const ServerConfig *cfg, Server **out) {
    *out = NULL;
    if (!e || !cfg || !cfg->model_dir || !cfg->host) return mx_fail(MX_ERR_ARG, "server_start needs an engine, a model and a host");
    if (cfg->port < 0 || cfg->port > 65535 || cfg->max_queue < 0 || cfg->max_queue > SERVER_MAX_QUEUE || cfg->threads < 1 ||
        cfg->threads > 1024 || cfg->max_body_bytes < 1024 || cfg->timeout_s < 1 || !(cfg->watchdog_s > 0) ||
        !(cfg->shutdown_grace_s >= 0 && cfg->shutdown_grace_s <= SERVER_MAX_GRACE_S))
        return mx_fail(MX_ERR_ARG, "bad server options (port, queue, threads, body limit, timeout, watchdog or grace)");
    Server *s = mx_calloc(1, sizeof *s);
    if (!s) return mx_fail(MX_ERR_NOMEM, "server");
    s->cfg = *cfg;
    s->watchdog_logged = -1;
    s->engine = e;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->idle, NULL);
    metrics_init(&s->metrics);
    mx_engine_info(e, &s->info);
    s->started = (long long)time(NULL);
    s->seed_state = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    srand((unsigned)s->seed_state);
    const char *name = cfg->model_name;
    if (!name) { // the directory's last component
        size_t n = strlen(cfg->model_dir);
        while (n > 1 && cfg->model_dir[n - 1] == '/') n--;
        size_t b = n;
        while (b > 0 && cfg->model_dir[b - 1] != '/') b--;
        snprintf(s->model_name, sizeof s->model_name, "%.*s", (int)(n - b), cfg->model_dir + b);
    } else {
        snprintf(s->model_name, sizeof s->model_name, "%s", name);
    }
    MxStatus st = MX_OK;
    if (s->info.has_tokenizer) st = tokenizer_load(cfg->model_dir, s->info.vocab_size, &s->tok);
    if (!st) st = load_chat(s);
    if (!st && token_text_init(&s->tt, s->tok, s->info.vocab_size)) st = mx_fail(MX_ERR_NOMEM, "token texts");
    MxEngineOptions probe = mx_engine_options_default();
    s->ctx = (ApiContext){.model_name = s->model_name, .model_path = cfg->model_dir, .tok = s->tok, .chat = s->ctx.chat,
                          .vocab_size = s->info.vocab_size, .max_context = s->info.max_context, .kv_blocks = s->info.kv_blocks,
                          .block_size = s->info.block_size, .prompt_logprobs = s->info.prompt_logprob_rows > 0};
    (void)probe;
    if (!st && (long long)s->info.max_seqs + cfg->max_queue > SERVER_MAX_ADMIT) // pub_cap below stays an int
        st = mx_fail(MX_ERR_ARG, "--max-seqs %d + --max-queue %d is over %d sequences", s->info.max_seqs, cfg->max_queue,
                     SERVER_MAX_ADMIT);
    s->admit_limit = st ? 0 : s->info.max_seqs + cfg->max_queue;
    s->pub_cap = 2 * s->admit_limit + 2;
    s->pub = mx_calloc((size_t)s->pub_cap, sizeof *s->pub);
    s->resume = mx_calloc((size_t)s->pub_cap, sizeof *s->resume);
    if (!st && (!s->pub || !s->resume)) st = mx_fail(MX_ERR_NOMEM, "server lists");
    struct sockaddr_storage addr;
    bool v6 = false;
    if (!st) st = bind_address(cfg, &addr, &v6);
    if (st) {
        server_free(s);
        return st;
    }
    s->last_progress = server_now();
    if (pthread_create(&s->engine_thread, NULL, server_engine_main, s)) {
        server_free(s);
        return mx_fail(MX_ERR_NOMEM, "engine thread");
    }
    s->engine_running = true;
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | (v6 ? MHD_USE_IPv6 : 0);
    s->daemon = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                 MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned)cfg->timeout_s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)4096,
                                 MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_END);
    if (!s->daemon) {
        server_stop(s);
        return mx_fail(MX_ERR_IO, "cannot listen on %s port %d (in use, or not an address of this machine?)", cfg->host,
                       cfg->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->port;
    *out = s;
    return MX_OK;
}

// CLOCK_REALTIME now + seconds (in [0, SERVER_MAX_GRACE_S], fractions kept), for
// pthread_cond_timedwait.
static struct timespec deadline_in(double seconds) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    time_t whole = (time_t)seconds;
    long ns = t.tv_nsec + (long)((seconds - (double)whole) * 1e9);
    t.tv_sec += whole + ns / 1000000000L;
    t.tv_nsec = ns % 1000000000L;
    return t;
}

void server_stop(Server *s) {
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true; // new requests: 503
    pthread_mutex_unlock(&s->lock);
    if (s->daemon) {
        MHD_socket fd = MHD_quiesce_daemon(s->daemon); // no new connections
        if (fd != MHD_INVALID_SOCKET) close(fd);
    }
    if (s->engine_running) {
        pthread_mutex_lock(&s->lock);
        struct timespec deadline = deadline_in(s->cfg.shutdown_grace_s);
        while (s->n_jobs > 0 && pthread_cond_timedwait(&s->idle, &s->lock, &deadline) == 0) {
        }
        if (s->n_jobs > 0) { // out of patience: abort, each still gets its answer
            s->abort_all = true;
            pthread_cond_signal(&s->wake);
            while (s->n_jobs > 0) pthread_cond_wait(&s->idle, &s->lock);
        }
        s->stop_engine = true;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->engine_thread, NULL);
        // Every request is answered; let the answers reach their clients (bounded: a client
        // that stopped reading must not hold the exit).
        pthread_mutex_lock(&s->lock);
        deadline = deadline_in(10);
        while (s->n_live > 0 && pthread_cond_timedwait(&s->idle, &s->lock, &deadline) == 0) {
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (s->daemon) MHD_stop_daemon(s->daemon); // closes the connections; their jobs go with them
    server_free(s);
}
