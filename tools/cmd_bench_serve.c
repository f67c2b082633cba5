// myrmex bench-serve: a load generator for an OpenAI-compatible server (`myrmex serve`,
// vLLM, ...). Sends streamed completions at a fixed concurrency and/or Poisson arrivals at
// a rate, times every streamed token, and reports TTFT / TPOT / ITL / E2EL, request and
// token throughput, failed requests and goodput at SLOs (bench_metrics.h has the
// definitions, those of `vllm bench serve`).
//
// All requests of a run are driven by one thread through libcurl's multi interface, so
// thousands in flight cost no threads; a token's time is when its bytes reached us.
// Prompts: random token ids of --input-len (sent as a token-id array, which OpenAI's
// completions API accepts), or a JSONL file. Each sweep point (concurrency x rate) sends
// --num-prompts requests.
#include "commands.h"

#if MYRMEX_HAVE_BENCH_SERVE

#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "args.h"
#include "bench_common.h"
#include "bench_metrics.h"
#include "bench_sse.h"
#include "json_util.h"
#include "nvml.h"

// ---------------------------------------------------------------------------------------
// Flags

typedef struct Flags {
    const char *url, *endpoint, *model, *prompts_file, *ignore_eos, *api_key;
    IntList concurrency;   // 0 = unlimited
    const char *rates;     // "inf" or a comma list of requests/s
    int num_prompts, input_len, output_len, vocab, json;
    int64_t seed;
    double slo_ttft_ms, slo_tpot_ms, slo_e2el_ms, timeout_s;
} Flags;

// --request-rate: "inf" or positive numbers, comma-separated; INFINITY for "inf".
static const char *parse_rates(const char *text, double *rates, int max, int *n) {
    *n = 0;
    const char *p = text;
    while (*p) {
        if (*n == max) return "--request-rate: too many values";
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof item) return "--request-rate: an empty or overlong value";
        memcpy(item, p, len);
        item[len] = '\0';
        double v;
        if (strcmp(item, "inf") == 0) v = INFINITY;
        else if (parse_double(item, &v) != 0 || !(v > 0)) return "--request-rate values must be > 0 or inf";
        rates[(*n)++] = v;
        p += len;
        if (*p == ',') {
            p++;
            if (!*p) return "--request-rate: an empty value";
        }
    }
    return *n ? NULL : "--request-rate is empty";
}

// ---------------------------------------------------------------------------------------
// Prompts

typedef struct Prompt {
    char *text;        // or
    int32_t *ids;
    int n_ids;
    int max_tokens;    // 0: --output-len
} Prompt;

static void prompts_free(Prompt *p, int n) {
    for (int i = 0; p && i < n; i++) {
        mx_free(p[i].text);
        mx_free(p[i].ids);
    }
    mx_free(p);
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0); }

static MxStatus random_prompts(const Flags *f, Prompt **out, int *n) {
    Prompt *p = mx_calloc((size_t)f->num_prompts, sizeof *p);
    if (!p) return mx_fail(MX_ERR_NOMEM, "prompts");
    uint64_t s = (uint64_t)f->seed ^ 0x5851F42D4C957F2Dull;
    for (int i = 0; i < f->num_prompts; i++) {
        p[i].ids = mx_malloc((size_t)f->input_len * sizeof *p[i].ids);
        if (!p[i].ids) {
            prompts_free(p, f->num_prompts);
            return mx_fail(MX_ERR_NOMEM, "prompts");
        }
        for (int t = 0; t < f->input_len; t++) p[i].ids[t] = (int32_t)(splitmix64(&s) % (uint64_t)f->vocab);
        p[i].n_ids = f->input_len;
    }
    *out = p;
    *n = f->num_prompts;
    return MX_OK;
}

// One JSONL line: {"prompt": TEXT} or {"prompt_ids": [...]}, optionally "max_tokens".
static MxStatus parse_line(const char *file, int line_no, const char *line, size_t len, Prompt *p) {
    cJSON *root = cJSON_ParseWithLength(line, len);
    MxStatus st = MX_OK;
    const cJSON *text = root ? cJSON_GetObjectItemCaseSensitive(root, "prompt") : NULL;
    const cJSON *ids = root ? cJSON_GetObjectItemCaseSensitive(root, "prompt_ids") : NULL;
    const cJSON *mt = root ? cJSON_GetObjectItemCaseSensitive(root, "max_tokens") : NULL;
    if (!cJSON_IsObject(root)) st = mx_fail(MX_ERR_ARG, "%s:%d: not a JSON object", file, line_no);
    else if (cJSON_IsString(text) == cJSON_IsArray(ids))
        st = mx_fail(MX_ERR_ARG, "%s:%d: needs \"prompt\" (a string) or \"prompt_ids\" (an array)", file, line_no);
    else if (mt && (!json_get_int(mt, &p->max_tokens) || p->max_tokens < 1))
        st = mx_fail(MX_ERR_ARG, "%s:%d: max_tokens must be an integer >= 1", file, line_no);
    else if (cJSON_IsString(text) && !(p->text = mx_strdup(text->valuestring)))
        st = mx_fail(MX_ERR_NOMEM, "prompt");
    else if (cJSON_IsArray(ids)) {
        int n = cJSON_GetArraySize(ids);
        p->ids = mx_malloc((size_t)(n > 0 ? n : 1) * sizeof *p->ids);
        if (!p->ids) st = mx_fail(MX_ERR_NOMEM, "prompt");
        for (int i = 0; i < n && !st; i++) {
            int v;
            if (!json_get_int(cJSON_GetArrayItem(ids, i), &v) || v < 0)
                st = mx_fail(MX_ERR_ARG, "%s:%d: prompt_ids[%d] is not a non-negative integer", file, line_no, i);
            else p->ids[p->n_ids++] = v;
        }
        if (!st && n == 0) st = mx_fail(MX_ERR_ARG, "%s:%d: prompt_ids is empty", file, line_no);
    }
    cJSON_Delete(root);
    return st;
}

static MxStatus file_prompts(const char *file, Prompt **out, int *n_out) {
    char *data = NULL;
    size_t len = 0;
    MxStatus st = json_read_file(file, (size_t)1 << 30, &data, &len);
    if (st) return st;
    int cap = 64, n = 0, line_no = 0;
    Prompt *p = mx_calloc((size_t)cap, sizeof *p);
    if (!p) st = mx_fail(MX_ERR_NOMEM, "prompts");
    for (size_t at = 0; at < len && !st;) {
        const char *nl = memchr(data + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - data) : len;
        line_no++;
        size_t a = at, b = end;
        while (a < b && (data[a] == ' ' || data[a] == '\t' || data[a] == '\r')) a++;
        at = end + 1;
        if (a == b) continue; // a blank line
        if (n == cap) {
            Prompt *q = mx_realloc(p, (size_t)cap * 2 * sizeof *p);
            if (!q) {
                st = mx_fail(MX_ERR_NOMEM, "prompts");
                break;
            }
            memset(q + cap, 0, (size_t)cap * sizeof *q);
            p = q;
            cap *= 2;
        }
        st = parse_line(file, line_no, data + a, b - a, &p[n++]);
    }
    mx_free(data);
    if (!st && n == 0) st = mx_fail(MX_ERR_ARG, "%s has no prompts", file);
    if (st) {
        prompts_free(p, n);
        return st;
    }
    *out = p;
    *n_out = n;
    return MX_OK;
}

// ---------------------------------------------------------------------------------------
// Requests over libcurl's multi interface

typedef struct Client {
    const Flags *f;
    char url[2048];
    const char *model;     // sent as "model", or NULL
    bool chat;
    struct curl_slist *headers;
} Client;

typedef struct Req {
    CURL *h;
    char *body;
    SseStream sse;
    char head[256];        // the first bytes of a non-SSE (error) body
    size_t head_len;
    double start, end;
    int input_tokens;
    bool running;
} Req;

static size_t on_body(char *data, size_t size, size_t n, void *user) {
    Req *r = user;
    size_t len = size * n;
    if (r->head_len + 1 < sizeof r->head) {
        size_t k = len < sizeof r->head - 1 - r->head_len ? len : sizeof r->head - 1 - r->head_len;
        memcpy(r->head + r->head_len, data, k);
        r->head_len += k;
        r->head[r->head_len] = '\0';
    }
    return sse_feed(&r->sse, data, len, bench_now()) ? len : 0; // 0 aborts the transfer
}

static char *request_body(const Client *c, const Prompt *p, int max_tokens) {
    cJSON *o = cJSON_CreateObject();
    if (c->model) cJSON_AddStringToObject(o, "model", c->model);
    if (c->chat) {
        cJSON *msgs = cJSON_AddArrayToObject(o, "messages");
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", p->text ? p->text : "");
        cJSON_AddItemToArray(msgs, m);
    } else if (p->text) {
        cJSON_AddStringToObject(o, "prompt", p->text);
    } else {
        cJSON *ids = cJSON_AddArrayToObject(o, "prompt");
        for (int i = 0; i < p->n_ids; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(p->ids[i]));
    }
    cJSON_AddNumberToObject(o, "max_tokens", max_tokens);
    cJSON_AddNumberToObject(o, "temperature", 0);
    cJSON_AddBoolToObject(o, "stream", true);
    cJSON *so = cJSON_AddObjectToObject(o, "stream_options");
    cJSON_AddBoolToObject(so, "include_usage", true);
    if (strcmp(c->f->ignore_eos, "on") == 0) cJSON_AddBoolToObject(o, "ignore_eos", true);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static MxStatus req_start(const Client *c, CURLM *multi, Req *r, const Prompt *p) {
    int max_tokens = p->max_tokens > 0 ? p->max_tokens : c->f->output_len;
    r->body = request_body(c, p, max_tokens);
    r->h = curl_easy_init();
    sse_init(&r->sse);
    if (!r->body || !r->h) return mx_fail(MX_ERR_NOMEM, "request");
    curl_easy_setopt(r->h, CURLOPT_URL, c->url);
    curl_easy_setopt(r->h, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(r->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(r->h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->h, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->h, CURLOPT_TCP_NODELAY, 1L);
    if (c->f->timeout_s > 0) curl_easy_setopt(r->h, CURLOPT_TIMEOUT_MS, (long)(c->f->timeout_s * 1000));
    r->input_tokens = p->text ? 0 : p->n_ids;
    r->start = bench_now();
    if (curl_multi_add_handle(multi, r->h) != CURLM_OK) return mx_fail(MX_ERR_IO, "curl_multi_add_handle");
    r->running = true;
    return MX_OK;
}

// Why a finished transfer failed, or NULL.
static const char *req_failure(Req *r, CURLcode code, char *buf, size_t len) {
    long status = 0;
    curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &status);
    if (code != CURLE_OK && !(code == CURLE_WRITE_ERROR && r->sse.failed)) {
        snprintf(buf, len, "%s", curl_easy_strerror(code));
        return buf;
    }
    if (status != 200) {
        snprintf(buf, len, "HTTP %ld: %.150s", status, r->head);
        return buf;
    }
    if (r->sse.failed) return r->sse.error;
    if (!r->sse.done && r->sse.n_events == 0) return "the stream ended with no token";
    if (r->sse.n_events == 0) return "no token in the stream";
    return NULL;
}

typedef struct PointResult {
    int concurrency;       // 0: unlimited
    double rate;           // requests/s, INFINITY: all at once
    RunMetrics m;
    char first_error[200];
} PointResult;

// One sweep point: n requests, arrivals at `rate` (Poisson) with at most `concurrency` in
// flight (0: no cap).
static MxStatus run_point(const Client *c, const Prompt *prompts, int n_prompts, int concurrency, double rate,
                          uint64_t seed, const BenchSlo *slo, PointResult *out, Progress *progress) {
    const Flags *f = c->f;
    int n = f->num_prompts;
    *out = (PointResult){.concurrency = concurrency, .rate = rate};
    Req *reqs = mx_calloc((size_t)n, sizeof *reqs);
    double *arrival = mx_calloc((size_t)n, sizeof *arrival);
    RequestTimeline *tl = mx_calloc((size_t)n, sizeof *tl);
    CURLM *multi = curl_multi_init();
    MxStatus st = reqs && arrival && tl && multi ? MX_OK : mx_fail(MX_ERR_NOMEM, "requests");
    // Poisson arrivals: exponential gaps of mean 1/rate seconds.
    uint64_t s = seed;
    for (int i = 1; i < n && !st; i++) arrival[i] = arrival[i - 1] + (isinf(rate) ? 0 : -log(1.0 - uniform01(&s)) / rate);
    int next = 0, in_flight = 0, finished = 0;
    double t0 = bench_now(), t_end = t0;
    char label[64];
    snprintf(label, sizeof label, "concurrency %d, rate %g", concurrency, rate);
    while (!st && finished < n) {
        double now = bench_now();
        while (next < n && (concurrency <= 0 || in_flight < concurrency) && arrival[next] <= now - t0) {
            if ((st = req_start(c, multi, &reqs[next], &prompts[next % n_prompts]))) break;
            next++;
            in_flight++;
        }
        if (st) break;
        int still = 0;
        curl_multi_perform(multi, &still);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            Req *r = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &r);
            if (!r) continue;
            r->end = bench_now();
            t_end = r->end;
            char why[200];
            const char *bad = req_failure(r, msg->data.result, why, sizeof why);
            int i = (int)(r - reqs);
            if (bad && !out->first_error[0]) snprintf(out->first_error, sizeof out->first_error, "%s", bad);
            int out_tokens = r->sse.usage_completion_tokens >= r->sse.n_events ? r->sse.usage_completion_tokens : r->sse.n_events;
            int in_tokens = r->sse.usage_prompt_tokens >= 0 ? r->sse.usage_prompt_tokens : r->input_tokens;
            tl[i] = (RequestTimeline){.start = r->start, .token_times = r->sse.times, .n_events = r->sse.n_events,
                                      .output_tokens = out_tokens, .input_tokens = in_tokens, .failed = bad != NULL};
            curl_multi_remove_handle(multi, r->h);
            r->running = false;
            in_flight--;
            finished++;
            progress_show(progress, label, finished, n);
        }
        // Wait for traffic, or until the next arrival is due.
        int wait_ms = 100;
        if (next < n && (concurrency <= 0 || in_flight < concurrency)) {
            double due = (arrival[next] - (bench_now() - t0)) * 1e3;
            wait_ms = due <= 0 ? 0 : due < 100 ? (int)due + 1 : 100;
        }
        if (in_flight > 0 || wait_ms > 0) curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
    }
    progress_clear(progress);
    if (!st) st = run_metrics_compute(tl, n, t_end > t0 ? t_end - t0 : 1e-9, slo, &out->m);
    for (int i = 0; reqs && i < n; i++) {
        if (reqs[i].h) {
            if (reqs[i].running) curl_multi_remove_handle(multi, reqs[i].h);
            curl_easy_cleanup(reqs[i].h);
        }
        cJSON_free(reqs[i].body);
        sse_free(&reqs[i].sse);
    }
    if (multi) curl_multi_cleanup(multi);
    mx_free(reqs);
    mx_free(arrival);
    mx_free(tl);
    return st;
}

// A response body kept whole (up to 1 MiB).
typedef struct Body {
    char *data;
    size_t len;
} Body;

static size_t on_whole_body(char *data, size_t size, size_t n, void *user) {
    Body *b = user;
    size_t len = size * n;
    if (b->len + len > (1u << 20)) return 0;
    char *d = mx_realloc(b->data, b->len + len + 1);
    if (!d) return 0;
    memcpy(d + b->len, data, len);
    b->data = d;
    b->len += len;
    d[b->len] = '\0';
    return len;
}

// The first model id of GET /v1/models, for servers that require "model"; NULL if none.
static char *first_model(const Client *c, const char *base) {
    char url[2048];
    snprintf(url, sizeof url, "%s/v1/models", base);
    Body body = {0};
    CURL *h = curl_easy_init();
    if (!h) return NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_whole_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    CURLcode code = curl_easy_perform(h);
    curl_easy_cleanup(h);
    char *id = NULL;
    cJSON *root = code == CURLE_OK && body.data ? cJSON_ParseWithLength(body.data, body.len) : NULL;
    mx_free(body.data);
    const cJSON *data = root ? cJSON_GetObjectItemCaseSensitive(root, "data") : NULL;
    const cJSON *m = cJSON_IsArray(data) ? cJSON_GetArrayItem(data, 0) : NULL;
    const cJSON *mid = m ? cJSON_GetObjectItemCaseSensitive(m, "id") : NULL;
    if (cJSON_IsString(mid)) id = mx_strdup(mid->valuestring);
    cJSON_Delete(root);
    return id;
}

// ---------------------------------------------------------------------------------------
// Output

static cJSON *point_json(const PointResult *p, const BenchSlo *slo) {
    const RunMetrics *m = &p->m;
    cJSON *o = cJSON_CreateObject();
    if (p->concurrency > 0) cJSON_AddNumberToObject(o, "concurrency", p->concurrency);
    else cJSON_AddNullToObject(o, "concurrency");
    if (isinf(p->rate)) cJSON_AddStringToObject(o, "request_rate", "inf");
    else cJSON_AddNumberToObject(o, "request_rate", p->rate);
    cJSON_AddNumberToObject(o, "completed", m->completed);
    cJSON_AddNumberToObject(o, "failed", m->failed);
    cJSON_AddNumberToObject(o, "duration_s", m->duration);
    cJSON_AddNumberToObject(o, "input_tokens", (double)m->input_tokens);
    cJSON_AddNumberToObject(o, "output_tokens", (double)m->output_tokens);
    cJSON_AddNumberToObject(o, "request_throughput", m->request_throughput);
    cJSON_AddNumberToObject(o, "output_throughput", m->output_throughput);
    cJSON_AddNumberToObject(o, "total_token_throughput", m->total_token_throughput);
    cJSON_AddItemToObject(o, "ttft_ms", summary_json_ms(&m->ttft));
    cJSON_AddItemToObject(o, "tpot_ms", summary_json_ms(&m->tpot));
    cJSON_AddItemToObject(o, "itl_ms", summary_json_ms(&m->itl));
    cJSON_AddItemToObject(o, "e2el_ms", summary_json_ms(&m->e2el));
    if (bench_slo_any(slo)) {
        cJSON_AddNumberToObject(o, "good_requests", m->good);
        cJSON_AddNumberToObject(o, "goodput", m->goodput);
    } else {
        cJSON_AddNullToObject(o, "good_requests");
        cJSON_AddNullToObject(o, "goodput");
    }
    if (p->first_error[0]) cJSON_AddStringToObject(o, "first_error", p->first_error);
    else cJSON_AddNullToObject(o, "first_error");
    return o;
}

static void print_point(const PointResult *p, const BenchSlo *slo) {
    const RunMetrics *m = &p->m;
    char conc[16], rate[32];
    snprintf(conc, sizeof conc, p->concurrency > 0 ? "%d" : "unlimited", p->concurrency);
    snprintf(rate, sizeof rate, isinf(p->rate) ? "inf" : "%g", p->rate);
    printf("============ concurrency %s, request rate %s req/s ============\n", conc, rate);
    printf("%-36s %d\n%-36s %d\n%-36s %.2f\n", "Successful requests:", m->completed, "Failed requests:", m->failed,
           "Benchmark duration (s):", m->duration);
    printf("%-36s %ld\n%-36s %ld\n", "Total input tokens:", m->input_tokens, "Total generated tokens:", m->output_tokens);
    printf("%-36s %.2f\n%-36s %.2f\n%-36s %.2f\n", "Request throughput (req/s):", m->request_throughput,
           "Output token throughput (tok/s):", m->output_throughput, "Total token throughput (tok/s):",
           m->total_token_throughput);
    if (bench_slo_any(slo)) printf("%-36s %.2f (%d requests)\n", "Request goodput (req/s):", m->goodput, m->good);
    const char *names[4] = {"TTFT", "TPOT", "ITL", "E2EL"};
    const MetricSummary *s[4] = {&m->ttft, &m->tpot, &m->itl, &m->e2el};
    for (int k = 0; k < 4; k++)
        printf("%-4s (ms): mean %9.2f  median %9.2f  p99 %9.2f\n", names[k], s[k]->mean * 1e3, s[k]->p50 * 1e3,
               s[k]->p99 * 1e3);
    if (p->first_error[0]) printf("first error: %s\n", p->first_error);
    printf("\n");
}

// ---------------------------------------------------------------------------------------

#define MAX_RATES 64

int cmd_bench_serve(int argc, char **argv) {
    Flags f = {.url = "http://127.0.0.1:8000", .endpoint = "/v1/completions", .rates = "inf", .num_prompts = 100,
               .input_len = 128, .output_len = 128, .vocab = 32000, .ignore_eos = "on", .timeout_s = 600};
    ArgSpec specs[] = {
        {"--url", ARG_STRING, &f.url, "URL", "the server's base URL (default http://127.0.0.1:8000)"},
        {"--endpoint", ARG_STRING, &f.endpoint, "PATH", "/v1/completions (default) or /v1/chat/completions"},
        {"--model", ARG_STRING, &f.model, "NAME", "the \"model\" to request (default: the first of GET /v1/models)"},
        {"--api-key", ARG_STRING, &f.api_key, "KEY", "sent as Authorization: Bearer KEY"},
        {"--num-prompts", ARG_INT, &f.num_prompts, "N", "requests per sweep point (default 100)"},
        {"--concurrency", ARG_INT_LIST, &f.concurrency, "LIST", "requests in flight at most, a sweep (default: no cap)"},
        {"--request-rate", ARG_STRING, &f.rates, "LIST",
         "Poisson arrivals at these requests/s, a sweep, or inf: all at once (default inf)"},
        {"--prompts", ARG_STRING, &f.prompts_file, "FILE",
         "JSONL, one {\"prompt\": TEXT} or {\"prompt_ids\": [...]} per line, optional max_tokens (reused in order)"},
        {"--input-len", ARG_INT, &f.input_len, "N", "random prompts of N token ids (default 128)"},
        {"--output-len", ARG_INT, &f.output_len, "N", "max_tokens of each request (default 128)"},
        {"--vocab", ARG_INT, &f.vocab, "N", "random prompt ids are drawn from [0, N) (default 32000)"},
        {"--ignore-eos", ARG_STRING, &f.ignore_eos, "on|off", "ask the server to ignore eos (vLLM's extension; default on)"},
        {"--seed", ARG_INT64, &f.seed, "S", "seed of the random prompts and arrivals (default 0)"},
        {"--slo-ttft-ms", ARG_DOUBLE, &f.slo_ttft_ms, "MS", "goodput: TTFT limit"},
        {"--slo-tpot-ms", ARG_DOUBLE, &f.slo_tpot_ms, "MS", "goodput: TPOT limit"},
        {"--slo-e2el-ms", ARG_DOUBLE, &f.slo_e2el_ms, "MS", "goodput: end-to-end latency limit"},
        {"--timeout", ARG_DOUBLE, &f.timeout_s, "S", "a request taking longer fails (default 600; 0: none)"},
        {"--json", ARG_FLAG, &f.json, NULL, "print one JSON object"},
    };
    int rc = args_parse("bench-serve", "myrmex bench-serve [--url URL] [--concurrency 1,8,64] [--request-rate inf] [options]",
                        specs, (int)(sizeof specs / sizeof *specs), argc, argv, NULL, 0, 0);
    if (rc != ARGS_OK) {
        int_list_free(&f.concurrency);
        return rc == ARGS_HELP ? 0 : 2;
    }
    double rates[MAX_RATES];
    int n_rates = 0;
    const char *usage = f.num_prompts < 1                       ? "--num-prompts must be >= 1"
                        : f.input_len < 1 || f.input_len > 1 << 24 ? "--input-len must be in [1, 16777216]"
                        : f.output_len < 1                      ? "--output-len must be >= 1"
                        : f.vocab < 1                           ? "--vocab must be >= 1"
                        : strcmp(f.ignore_eos, "on") && strcmp(f.ignore_eos, "off") ? "--ignore-eos must be on or off"
                        : f.slo_ttft_ms < 0 || f.slo_tpot_ms < 0 || f.slo_e2el_ms < 0 ? "SLO limits must be >= 0"
                        : f.timeout_s < 0                       ? "--timeout must be >= 0"
                        : strncmp(f.url, "http://", 7) && strncmp(f.url, "https://", 8) ? "--url must start with http:// or https://"
                        : f.endpoint[0] != '/'                  ? "--endpoint must start with /"
                                                                : parse_rates(f.rates, rates, MAX_RATES, &n_rates);
    for (int i = 0; !usage && i < f.concurrency.n; i++)
        if (f.concurrency.items[i] < 1) usage = "--concurrency values must be >= 1";
    bool chat = strstr(f.endpoint, "chat/completions") != NULL;
    if (!usage && chat && !f.prompts_file) usage = "/v1/chat/completions needs text prompts (--prompts FILE)";
    if (usage) {
        int_list_free(&f.concurrency);
        return args_usage_error("bench-serve", "%s", usage);
    }
    json_init();
    BenchSlo slo = {.ttft = f.slo_ttft_ms / 1e3, .tpot = f.slo_tpot_ms / 1e3, .e2el = f.slo_e2el_ms / 1e3};
    Prompt *prompts = NULL;
    int n_prompts = 0;
    MxStatus st = f.prompts_file ? file_prompts(f.prompts_file, &prompts, &n_prompts) : random_prompts(&f, &prompts, &n_prompts);
    for (int i = 0; !st && chat && i < n_prompts; i++)
        if (!prompts[i].text) st = mx_fail(MX_ERR_ARG, "/v1/chat/completions needs text prompts, not prompt_ids");

    Client c = {.f = &f, .chat = chat};
    char base[2048], auth[600];
    snprintf(base, sizeof base, "%s", f.url);
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/') base[--bl] = '\0';
    snprintf(c.url, sizeof c.url, "%s%s", base, f.endpoint);
    if (!st && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) st = mx_fail(MX_ERR_IO, "curl_global_init failed");
    c.headers = curl_slist_append(NULL, "Content-Type: application/json");
    c.headers = curl_slist_append(c.headers, "Accept: text/event-stream");
    if (f.api_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", f.api_key);
        c.headers = curl_slist_append(c.headers, auth);
    }
    char *model = NULL;
    if (!st) c.model = f.model ? f.model : (model = first_model(&c, base));

    int n_conc = f.concurrency.n ? f.concurrency.n : 1, n_points = n_conc * n_rates;
    PointResult *res = mx_calloc((size_t)n_points, sizeof *res);
    if (!st && !res) st = mx_fail(MX_ERR_NOMEM, "results");
    Progress progress;
    progress_init(&progress);
    int done = 0;
    for (int ic = 0; ic < n_conc && !st; ic++)
        for (int ir = 0; ir < n_rates && !st; ir++) {
            int conc = f.concurrency.n ? f.concurrency.items[ic] : 0;
            st = run_point(&c, prompts, n_prompts, conc, rates[ir], (uint64_t)f.seed + (uint64_t)done * 7919u, &slo,
                           &res[done], &progress);
            if (!st && res[done].m.completed == 0) // nothing to measure: most likely a wrong --url or --model
                st = mx_fail(MX_ERR_IO, "all %d requests to %s failed; the first: %s", res[done].m.failed, c.url,
                             res[done].first_error);
            if (!st) done++;
        }
    if (!st && f.json) {
        char why[256];
        int gpu0 = 0; // this host's GPU 0: the server's when it runs here
        Nvml *nvml = nvml_open(&gpu0, 1, why, sizeof why);
        cJSON *gpu = NULL;
        if (nvml) {
            NvmlState s;
            nvml_read(nvml, 0, &s);
            gpu = cJSON_CreateObject();
            cJSON_AddStringToObject(gpu, "status", "this host's GPU 0 after the run");
            cJSON_AddItemToObject(gpu, "end", nvml_state_json(&s));
            nvml_close(nvml);
        }
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "benchmark", "myrmex bench-serve");
        cJSON_AddItemToObject(root, "manifest", bench_manifest(gpu, why));
        cJSON *set = cJSON_AddObjectToObject(root, "settings");
        cJSON_AddStringToObject(set, "url", c.url);
        if (c.model) cJSON_AddStringToObject(set, "model", c.model);
        else cJSON_AddNullToObject(set, "model");
        cJSON_AddNumberToObject(set, "num_prompts", f.num_prompts);
        cJSON_AddStringToObject(set, "prompts", f.prompts_file ? f.prompts_file : "random");
        cJSON_AddNumberToObject(set, "input_len", f.prompts_file ? 0 : f.input_len);
        cJSON_AddNumberToObject(set, "output_len", f.output_len);
        cJSON_AddBoolToObject(set, "ignore_eos", strcmp(f.ignore_eos, "on") == 0);
        cJSON_AddNumberToObject(set, "seed", (double)f.seed);
        cJSON *sj = cJSON_AddObjectToObject(set, "slo_ms");
        cJSON_AddNumberToObject(sj, "ttft", f.slo_ttft_ms);
        cJSON_AddNumberToObject(sj, "tpot", f.slo_tpot_ms);
        cJSON_AddNumberToObject(sj, "e2el", f.slo_e2el_ms);
        cJSON *arr = cJSON_AddArrayToObject(root, "results");
        for (int i = 0; i < done; i++) cJSON_AddItemToArray(arr, point_json(&res[i], &slo));
        if (print_json_line(root)) st = mx_fail(MX_ERR_NOMEM, "JSON output");
    } else if (!st) {
        printf("server: %s (model %s)\n\n", c.url, c.model ? c.model : "not named");
        for (int i = 0; i < done; i++) print_point(&res[i], &slo);
    }
    rc = 0;
    if (!st) st = check_stdout(); // a full disk or a closed pipe is not a success
    if (st) {
        fprintf(stderr, "myrmex bench-serve: error: %s\n", mx_last_error());
        rc = 1;
    }
    mx_free(res);
    mx_free(model);
    curl_slist_free_all(c.headers);
    curl_global_cleanup();
    prompts_free(prompts, n_prompts);
    int_list_free(&f.concurrency);
    return rc;
}

#else // built without it (-DMYRMEX_BENCH_SERVE=OFF)

#include <stdio.h>

int cmd_bench_serve(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "myrmex bench-serve: this build left it out: install libcurl (Debian libcurl4-openssl-dev)\n"
                    "and rebuild with -DMYRMEX_BENCH_SERVE=ON\n");
    return 1;
}

#endif
