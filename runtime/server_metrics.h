// Metrics of `myrmex serve`, rendered as Prometheus text for GET /metrics: requests by
// status, latency histograms (time to first token, inter-token, end to end), the queue and
// the engine's state (a snapshot the engine thread refreshes after every step).
// Thread-safe: every function takes the metrics' own lock.
#ifndef MYRMEX_SERVER_METRICS_H
#define MYRMEX_SERVER_METRICS_H

#include <pthread.h>
#include <stdbool.h>

#include "myrmex.h"

#define METRICS_BUCKETS 16

typedef struct Histogram {
    const double *bounds;            // [METRICS_BUCKETS] upper bounds in seconds, ascending
    long counts[METRICS_BUCKETS + 1]; // per bucket, the last one +Inf (not cumulative)
    double sum;
    long count;
} Histogram;

typedef struct Metrics {
    pthread_mutex_t lock;
    long by_status[600];             // answers by HTTP status code
    Histogram ttft, itl, e2e;
    MxEngineStats engine;            // the engine thread's latest snapshot
    long prompt_tokens, generation_tokens; // of answered requests
    long aborted;                    // requests whose client left before the end
    int pending;                     // sequences admitted (a request counts its choices), not yet answered
} Metrics;

void metrics_init(Metrics *m);
void metrics_destroy(Metrics *m);

void metrics_status(Metrics *m, int status);
void metrics_latency(Metrics *m, Histogram *h, double seconds);
void metrics_engine(Metrics *m, const MxEngineStats *s);
// Prometheus text exposition (format 0.0.4), mx_malloc'd; NULL when out of memory.
char *metrics_render(Metrics *m, bool healthy);

#endif
