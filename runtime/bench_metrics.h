// Latency metrics of a benchmark run, from per-request timelines: pure arithmetic, no
// clock and no I/O, so every definition is tested on synthetic timelines.
//
// Definitions (those of `vllm bench serve`, benchmarks/benchmark_serving.py, where both
// define one; all times in seconds here, milliseconds in the reports):
//   TTFT  time to first token: first token (or first streamed chunk) - request start
//   E2EL  end-to-end latency: last token - request start
//   TPOT  time per output token after the first: (E2EL - TTFT) / (output_tokens - 1),
//         one value per request with output_tokens >= 2
//   ITL   inter-token latency: every gap between consecutive token (chunk) arrivals,
//         pooled over all requests
//   percentiles: numpy's default (linear interpolation between closest ranks); p50 is
//         the median; a metric with no values reports 0 everywhere and n = 0
//   goodput: completed requests per second that met every SLO given (TTFT, TPOT, E2EL
//         limits; a request without a TPOT, one output token, passes the TPOT limit)
#ifndef MYRMEX_BENCH_METRICS_H
#define MYRMEX_BENCH_METRICS_H

#include <stdbool.h>

#include "status.h"

typedef struct MetricSummary {
    int n;                          // values summarised
    double mean, p50, p90, p99, min, max;
} MetricSummary;

// p-th percentile (p in [0, 100]) of sorted[0..n) by linear interpolation between closest
// ranks (numpy.percentile's default); 0 when n == 0.
double metric_percentile(const double *sorted, int n, double p);
// Sorts values[0..n) in place and summarises them.
void metric_summarize(double *values, int n, MetricSummary *out);

// One request as seen by a client: when it started and when each token (or streamed chunk
// carrying tokens) arrived, all on one monotonic clock in seconds.
typedef struct RequestTimeline {
    double start;
    const double *token_times; // [n_events] non-decreasing, each >= start
    int n_events;
    int output_tokens;         // tokens generated (== n_events when every event is one token;
                               // a server's usage count when chunks carry several)
    int input_tokens;
    bool failed;               // no answer, an error status, or a broken stream
} RequestTimeline;

// The per-request values; has_tpot false when output_tokens < 2.
typedef struct RequestLatency {
    double ttft, e2el, tpot;
    bool has_tpot;
} RequestLatency;

// MX_ERR_ARG for a timeline that is failed, has no event, or is out of order.
MxStatus request_latency(const RequestTimeline *r, RequestLatency *out);

// Service-level objectives in seconds; <= 0 means no limit on that metric.
typedef struct BenchSlo {
    double ttft, tpot, e2el;
} BenchSlo;

bool bench_slo_any(const BenchSlo *slo);

typedef struct RunMetrics {
    int completed, failed, good;    // good: completed and within every SLO
    long input_tokens, output_tokens; // of completed requests
    double duration;                // seconds, as given
    double request_throughput;      // completed / duration (requests/s)
    double output_throughput;       // output tokens / duration (tokens/s)
    double total_token_throughput;  // (input + output tokens) / duration
    double goodput;                 // good / duration (requests/s); 0 without SLOs
    MetricSummary ttft, tpot, itl, e2el; // seconds
} RunMetrics;

// Metrics of reqs[0..n) over a run of `duration` seconds (> 0). Failed requests count in
// `failed` only. MX_ERR_ARG for a completed timeline that is out of order or empty,
// MX_ERR_NOMEM.
MxStatus run_metrics_compute(const RequestTimeline *reqs, int n, double duration, const BenchSlo *slo, RunMetrics *out);

// An offline batch whose requests all started together at reqs[0].start:
//   prefill phase = [start, the moment every request has its first token]
//   decode phase  = (that moment, the last token]
// prefill_tokens is every input token, decode_tokens the tokens that arrived strictly
// after the prefill phase ended (the tokens of the last prefill step belong to prefill).
typedef struct BatchPhases {
    double start, prefill_end, end; // seconds, on the timelines' clock
    long prefill_tokens, decode_tokens;
} BatchPhases;

// MX_ERR_ARG when a request failed, has no token, or started elsewhere than reqs[0].start.
MxStatus batch_phases(const RequestTimeline *reqs, int n, BatchPhases *out);

#endif
