// Prometheus metrics of the server (see server_metrics.h).
#include "server_metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

// Seconds: first tokens and whole requests span ms to minutes; gaps between tokens ms.
static const double LATENCY_BOUNDS[METRICS_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                       0.5,   1,      2.5,   5,    10,    30,   60,  120};
static const double ITL_BOUNDS[METRICS_BUCKETS] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.06,
                                                   0.08,   0.1,   0.15,  0.2,   0.3,  0.5,  1,    2.5};

void metrics_init(Metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    m->ttft.bounds = LATENCY_BOUNDS;
    m->e2e.bounds = LATENCY_BOUNDS;
    m->itl.bounds = ITL_BOUNDS;
}

void metrics_destroy(Metrics *m) { pthread_mutex_destroy(&m->lock); }

void metrics_status(Metrics *m, int status) {
    pthread_mutex_lock(&m->lock);
    m->by_status[status >= 100 && status < 600 ? status : 599]++;
    pthread_mutex_unlock(&m->lock);
}

void metrics_latency(Metrics *m, Histogram *h, double seconds) {
    pthread_mutex_lock(&m->lock);
    int b = 0;
    while (b < METRICS_BUCKETS && seconds > h->bounds[b]) b++;
    h->counts[b]++;
    h->sum += seconds;
    h->count++;
    pthread_mutex_unlock(&m->lock);
}

void metrics_engine(Metrics *m, const MxEngineStats *s) {
    pthread_mutex_lock(&m->lock);
    m->engine = *s;
    pthread_mutex_unlock(&m->lock);
}

// A growing text buffer; on allocation failure it stays failed and renders NULL.
typedef struct Text {
    char *s;
    size_t len, cap;
    bool failed;
} Text;

__attribute__((format(printf, 2, 3))) static void put(Text *t, const char *fmt, ...) {
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if (t->s && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < t->len + (size_t)n + 1) cap *= 2;
        char *s = mx_realloc(t->s, cap);
        if (!s) {
            t->failed = true;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
}

static void histogram(Text *t, const char *name, const char *help, const Histogram *h) {
    put(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    long cum = 0;
    for (int b = 0; b < METRICS_BUCKETS; b++) {
        cum += h->counts[b];
        put(t, "%s_bucket{le=\"%g\"} %ld\n", name, h->bounds[b], cum);
    }
    put(t, "%s_bucket{le=\"+Inf\"} %ld\n%s_sum %.6f\n%s_count %ld\n", name, h->count, name, h->sum, name, h->count);
}

static void gauge(Text *t, const char *name, const char *type, const char *help, double v) {
    put(t, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

char *metrics_render(Metrics *m, bool healthy) {
    Text t = {0};
    pthread_mutex_lock(&m->lock);
    put(&t, "# HELP myrmex_requests_total HTTP answers by status code (499: the client left first).\n"
            "# TYPE myrmex_requests_total counter\n");
    for (int s = 100; s < 600; s++)
        if (m->by_status[s]) put(&t, "myrmex_requests_total{status=\"%d\"} %ld\n", s, m->by_status[s]);
    histogram(&t, "myrmex_time_to_first_token_seconds", "From arrival to the first generated token.", &m->ttft);
    histogram(&t, "myrmex_inter_token_latency_seconds", "Between consecutive tokens of one choice.", &m->itl);
    histogram(&t, "myrmex_e2e_request_latency_seconds", "From arrival to the last token of a request.", &m->e2e);
    const MxEngineStats *e = &m->engine;
    gauge(&t, "myrmex_requests_pending", "gauge", "Sequences (choices) admitted by the server and not yet answered.", m->pending);
    gauge(&t, "myrmex_requests_waiting", "gauge", "Sequences queued in the engine.", e->waiting);
    gauge(&t, "myrmex_requests_running", "gauge", "Sequences running in the engine.", e->running);
    put(&t, "# HELP myrmex_kv_blocks KV cache blocks by state (free + live + cached = total).\n"
            "# TYPE myrmex_kv_blocks gauge\n"
            "myrmex_kv_blocks{state=\"free\"} %d\nmyrmex_kv_blocks{state=\"live\"} %d\n"
            "myrmex_kv_blocks{state=\"cached\"} %d\nmyrmex_kv_blocks{state=\"total\"} %d\n",
        e->blocks_free, e->blocks_live, e->blocks_cached, e->blocks_total);
    gauge(&t, "myrmex_preemptions_total", "counter", "Sequences preempted and recomputed.", (double)e->preemptions);
    gauge(&t, "myrmex_prefix_cache_hit_rate", "gauge", "Prompt tokens found in the prefix cache / prompt tokens admitted.",
          e->prefix_hit_rate);
    gauge(&t, "myrmex_prompt_tokens_total", "counter", "Prompt tokens of answered requests.", (double)m->prompt_tokens);
    gauge(&t, "myrmex_generation_tokens_total", "counter", "Tokens generated for answered requests.",
          (double)m->generation_tokens);
    gauge(&t, "myrmex_engine_steps_total", "counter", "Engine steps that ran the model.", (double)e->steps);
    gauge(&t, "myrmex_tokens_computed_total", "counter", "Tokens run through the model (recompute included).",
          (double)e->tokens_computed);
    gauge(&t, "myrmex_requests_aborted_total", "counter", "Requests aborted because the client left.", (double)m->aborted);
    gauge(&t, "myrmex_healthy", "gauge", "1 while the engine makes progress (what /health reports).", healthy ? 1 : 0);
    pthread_mutex_unlock(&m->lock);
    if (t.failed) {
        mx_free(t.s);
        return NULL;
    }
    return t.s;
}
