// Benchmark latency metrics (see bench_metrics.h for the definitions).
#include "bench_metrics.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

double metric_percentile(const double *sorted, int n, double p) {
    if (n <= 0) return 0;
    if (p <= 0) return sorted[0];
    if (p >= 100) return sorted[n - 1];
    double rank = p / 100.0 * (double)(n - 1); // 0-based fractional rank
    int lo = (int)rank;
    double frac = rank - (double)lo;
    if (lo + 1 >= n) return sorted[n - 1];
    return sorted[lo] + frac * (sorted[lo + 1] - sorted[lo]);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void metric_summarize(double *values, int n, MetricSummary *out) {
    memset(out, 0, sizeof *out);
    if (n <= 0) return;
    qsort(values, (size_t)n, sizeof *values, cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += values[i];
    *out = (MetricSummary){.n = n, .mean = sum / n, .p50 = metric_percentile(values, n, 50),
                           .p90 = metric_percentile(values, n, 90), .p99 = metric_percentile(values, n, 99),
                           .min = values[0], .max = values[n - 1]};
}

static MxStatus check_timeline(const RequestTimeline *r) {
    if (r->failed) return mx_fail(MX_ERR_ARG, "a failed request has no latency");
    if (r->n_events < 1 || !r->token_times) return mx_fail(MX_ERR_ARG, "a request with no token has no latency");
    if (r->token_times[0] < r->start) return mx_fail(MX_ERR_ARG, "first token before the request started");
    for (int i = 1; i < r->n_events; i++)
        if (r->token_times[i] < r->token_times[i - 1]) return mx_fail(MX_ERR_ARG, "token times out of order at %d", i);
    return MX_OK;
}

MxStatus request_latency(const RequestTimeline *r, RequestLatency *out) {
    memset(out, 0, sizeof *out);
    MxStatus st = check_timeline(r);
    if (st) return st;
    out->ttft = r->token_times[0] - r->start;
    out->e2el = r->token_times[r->n_events - 1] - r->start;
    if (r->output_tokens >= 2) {
        out->tpot = (out->e2el - out->ttft) / (double)(r->output_tokens - 1);
        out->has_tpot = true;
    }
    return MX_OK;
}

bool bench_slo_any(const BenchSlo *slo) { return slo && (slo->ttft > 0 || slo->tpot > 0 || slo->e2el > 0); }

static bool within_slo(const RequestLatency *l, const BenchSlo *slo) {
    if (slo->ttft > 0 && l->ttft > slo->ttft) return false;
    if (slo->tpot > 0 && l->has_tpot && l->tpot > slo->tpot) return false;
    if (slo->e2el > 0 && l->e2el > slo->e2el) return false;
    return true;
}

MxStatus run_metrics_compute(const RequestTimeline *reqs, int n, double duration, const BenchSlo *slo, RunMetrics *out) {
    memset(out, 0, sizeof *out);
    if (n < 0 || !(duration > 0)) return mx_fail(MX_ERR_ARG, "run of %d requests over %g s", n, duration);
    long n_itl = 0;
    for (int i = 0; i < n; i++)
        if (!reqs[i].failed && reqs[i].n_events > 1) n_itl += reqs[i].n_events - 1;
    size_t cap = (size_t)(n > 0 ? n : 1);
    double *ttft = mx_malloc(cap * sizeof *ttft), *tpot = mx_malloc(cap * sizeof *tpot);
    double *e2el = mx_malloc(cap * sizeof *e2el), *itl = mx_malloc((size_t)(n_itl > 0 ? n_itl : 1) * sizeof *itl);
    MxStatus st = ttft && tpot && e2el && itl ? MX_OK : mx_fail(MX_ERR_NOMEM, "metrics of %d requests", n);
    int n_ok = 0, n_tpot = 0;
    long k = 0;
    for (int i = 0; i < n && !st; i++) {
        const RequestTimeline *r = &reqs[i];
        if (r->failed) {
            out->failed++;
            continue;
        }
        RequestLatency l;
        if ((st = request_latency(r, &l))) break;
        ttft[n_ok] = l.ttft;
        e2el[n_ok++] = l.e2el;
        if (l.has_tpot) tpot[n_tpot++] = l.tpot;
        for (int j = 1; j < r->n_events; j++) itl[k++] = r->token_times[j] - r->token_times[j - 1];
        out->input_tokens += r->input_tokens;
        out->output_tokens += r->output_tokens;
        if (bench_slo_any(slo) && within_slo(&l, slo)) out->good++;
    }
    if (!st) {
        out->completed = n_ok;
        out->duration = duration;
        out->request_throughput = n_ok / duration;
        out->output_throughput = (double)out->output_tokens / duration;
        out->total_token_throughput = (double)(out->input_tokens + out->output_tokens) / duration;
        out->goodput = out->good / duration;
        metric_summarize(ttft, n_ok, &out->ttft);
        metric_summarize(tpot, n_tpot, &out->tpot);
        metric_summarize(e2el, n_ok, &out->e2el);
        metric_summarize(itl, (int)k, &out->itl);
    }
    mx_free(ttft);
    mx_free(tpot);
    mx_free(e2el);
    mx_free(itl);
    return st;
}

MxStatus batch_phases(const RequestTimeline *reqs, int n, BatchPhases *out) {
    memset(out, 0, sizeof *out);
    if (n < 1) return mx_fail(MX_ERR_ARG, "an empty batch has no phases");
    double start = reqs[0].start, prefill_end = start, end = start;
    for (int i = 0; i < n; i++) {
        MxStatus st = check_timeline(&reqs[i]);
        if (st) return st;
        if (reqs[i].start != start) return mx_fail(MX_ERR_ARG, "request %d did not start with the batch", i);
        if (reqs[i].token_times[0] > prefill_end) prefill_end = reqs[i].token_times[0];
        if (reqs[i].token_times[reqs[i].n_events - 1] > end) end = reqs[i].token_times[reqs[i].n_events - 1];
    }
    long decode = 0;
    for (int i = 0; i < n; i++) {
        out->prefill_tokens += reqs[i].input_tokens;
        for (int j = 0; j < reqs[i].n_events; j++) decode += reqs[i].token_times[j] > prefill_end;
    }
    out->start = start;
    out->prefill_end = prefill_end;
    out->end = end;
    out->decode_tokens = decode;
    return MX_OK;
}
