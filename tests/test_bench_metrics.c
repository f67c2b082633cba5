// Benchmark metrics on synthetic timelines with answers worked out by hand: percentiles
// (numpy's linear interpolation), TTFT / TPOT / ITL / E2EL per vllm's definitions,
// throughputs, failed requests, goodput at SLOs, the prefill/decode split of a batch, and
// the inputs that must be refused.
#include <math.h>
#include <string.h>

#include "bench_metrics.h"
#include "test_util.h"

static bool near(double a, double b) { return fabs(a - b) <= 1e-9 * (1.0 + fabs(b)); }

static void test_percentiles(void) {
    // numpy.percentile([1, 2, 3, 4], [50, 90, 99]) = 2.5, 3.7, 3.97
    double v[] = {4, 1, 3, 2};
    MetricSummary s;
    metric_summarize(v, 4, &s);
    CHECK(s.n == 4 && near(s.mean, 2.5) && near(s.p50, 2.5) && near(s.p90, 3.7) && near(s.p99, 3.97));
    CHECK(near(s.min, 1) && near(s.max, 4));
    CHECK(v[0] == 1 && v[3] == 4); // sorted in place
    double one[] = {7};
    metric_summarize(one, 1, &s);
    CHECK(s.n == 1 && near(s.mean, 7) && near(s.p50, 7) && near(s.p99, 7));
    metric_summarize(NULL, 0, &s);
    CHECK(s.n == 0 && s.mean == 0 && s.p50 == 0 && s.p99 == 0);
    // 0..100: the p-th percentile is p itself; 101 values 0..100 in reverse
    double h[101];
    for (int i = 0; i <= 100; i++) h[i] = 100 - i;
    metric_summarize(h, 101, &s);
    CHECK(near(s.p50, 50) && near(s.p90, 90) && near(s.p99, 99) && near(s.mean, 50));
    CHECK(near(metric_percentile(h, 101, 0), 0) && near(metric_percentile(h, 101, 100), 100));
    CHECK(near(metric_percentile(h, 101, 12.5), 12.5));
}

static void test_request_latency(void) {
    // Start at 10 s; tokens at 10.5, 10.6, 10.8, 11.1: TTFT 0.5, E2EL 1.1, TPOT 0.6 / 3 = 0.2.
    double t[] = {10.5, 10.6, 10.8, 11.1};
    RequestTimeline r = {.start = 10, .token_times = t, .n_events = 4, .output_tokens = 4, .input_tokens = 8};
    RequestLatency l;
    CHECK_STATUS(request_latency(&r, &l), MX_OK);
    CHECK(near(l.ttft, 0.5) && near(l.e2el, 1.1) && l.has_tpot && near(l.tpot, 0.2));
    // Chunks that carry several tokens: 2 events, 7 tokens per the server's usage count.
    r.n_events = 2;
    r.output_tokens = 7;
    CHECK_STATUS(request_latency(&r, &l), MX_OK);
    CHECK(near(l.ttft, 0.5) && near(l.e2el, 0.6) && near(l.tpot, 0.1 / 6));
    // One token: no TPOT.
    r.n_events = r.output_tokens = 1;
    CHECK_STATUS(request_latency(&r, &l), MX_OK);
    CHECK(!l.has_tpot && near(l.e2el, 0.5));
    // Refused: failed, no token, out of order, token before start.
    r.failed = true;
    CHECK_STATUS(request_latency(&r, &l), MX_ERR_ARG);
    r.failed = false;
    r.n_events = 0;
    CHECK_STATUS(request_latency(&r, &l), MX_ERR_ARG);
    double bad[] = {10.5, 10.4};
    r = (RequestTimeline){.start = 10, .token_times = bad, .n_events = 2, .output_tokens = 2};
    CHECK_STATUS(request_latency(&r, &l), MX_ERR_ARG);
    double early[] = {9.0};
    r = (RequestTimeline){.start = 10, .token_times = early, .n_events = 1, .output_tokens = 1};
    CHECK_STATUS(request_latency(&r, &l), MX_ERR_ARG);
}

// Three completed requests and one failed, over a 4-second run:
//   A start 0: tokens 1.0 1.5 2.0      TTFT 1.0  E2EL 2.0  TPOT 0.5   ITL 0.5 0.5
//   B start 1: tokens 1.2 1.3          TTFT 0.2  E2EL 0.3  TPOT 0.1   ITL 0.1
//   C start 2: token  3.0              TTFT 1.0  E2EL 1.0  no TPOT
//   D start 2: failed
static void test_run_metrics(void) {
    double a[] = {1.0, 1.5, 2.0}, b[] = {1.2, 1.3}, c[] = {3.0};
    RequestTimeline reqs[] = {
        {.start = 0, .token_times = a, .n_events = 3, .output_tokens = 3, .input_tokens = 10},
        {.start = 1, .token_times = b, .n_events = 2, .output_tokens = 2, .input_tokens = 20},
        {.start = 2, .token_times = c, .n_events = 1, .output_tokens = 1, .input_tokens = 30},
        {.start = 2, .failed = true, .input_tokens = 40},
    };
    RunMetrics m;
    CHECK_STATUS(run_metrics_compute(reqs, 4, 4.0, NULL, &m), MX_OK);
    CHECK(m.completed == 3 && m.failed == 1 && m.good == 0);
    CHECK(m.input_tokens == 60 && m.output_tokens == 6);
    CHECK(near(m.request_throughput, 0.75) && near(m.output_throughput, 1.5) && near(m.total_token_throughput, 16.5));
    CHECK(m.goodput == 0);
    CHECK(m.ttft.n == 3 && near(m.ttft.mean, 2.2 / 3) && near(m.ttft.p50, 1.0) && near(m.ttft.min, 0.2));
    CHECK(m.e2el.n == 3 && near(m.e2el.mean, 1.1) && near(m.e2el.p50, 1.0) && near(m.e2el.p99, 1.98));
    CHECK(m.tpot.n == 2 && near(m.tpot.mean, 0.3) && near(m.tpot.p50, 0.3) && near(m.tpot.p90, 0.46));
    CHECK(m.itl.n == 3 && near(m.itl.mean, 1.1 / 3) && near(m.itl.p50, 0.5) && near(m.itl.min, 0.1));

    // Goodput: TTFT <= 0.5 s passes B only; TPOT <= 0.2 s passes B and C (no TPOT);
    // E2EL <= 1.0 s passes B and C; all three limits together: B.
    BenchSlo slo = {.ttft = 0.5};
    CHECK_STATUS(run_metrics_compute(reqs, 4, 4.0, &slo, &m), MX_OK);
    CHECK(m.good == 1 && near(m.goodput, 0.25));
    slo = (BenchSlo){.tpot = 0.2};
    CHECK_STATUS(run_metrics_compute(reqs, 4, 4.0, &slo, &m), MX_OK);
    CHECK(m.good == 2 && near(m.goodput, 0.5));
    slo = (BenchSlo){.e2el = 1.0};
    CHECK_STATUS(run_metrics_compute(reqs, 4, 4.0, &slo, &m), MX_OK);
    CHECK(m.good == 2);
    slo = (BenchSlo){.ttft = 0.5, .tpot = 0.2, .e2el = 1.0};
    CHECK_STATUS(run_metrics_compute(reqs, 4, 4.0, &slo, &m), MX_OK);
    CHECK(m.good == 1);

    // Everything failed: zeros, no division by zero.
    RequestTimeline failed[] = {{.start = 0, .failed = true}};
    CHECK_STATUS(run_metrics_compute(failed, 1, 1.0, NULL, &m), MX_OK);
    CHECK(m.completed == 0 && m.failed == 1 && m.ttft.n == 0 && m.itl.n == 0 && m.request_throughput == 0);
    // Refused: no duration; a completed request with no token.
    CHECK_STATUS(run_metrics_compute(reqs, 4, 0.0, NULL, &m), MX_ERR_ARG);
    RequestTimeline empty[] = {{.start = 0, .n_events = 0}};
    CHECK_STATUS(run_metrics_compute(empty, 1, 1.0, NULL, &m), MX_ERR_ARG);
}

// A batch of two started at 5 s:
//   A: tokens 5.4 5.6 5.8       (first token 0.4 s in)
//   B: tokens 5.6 5.8 6.0 6.2   (first token 0.6 s in: the prefill phase ends at 5.6)
// Decode tokens: those after 5.6: A's 5.8, B's 5.8 6.0 6.2 = 4.
static void test_batch_phases(void) {
    double a[] = {5.4, 5.6, 5.8}, b[] = {5.6, 5.8, 6.0, 6.2};
    RequestTimeline reqs[] = {
        {.start = 5, .token_times = a, .n_events = 3, .output_tokens = 3, .input_tokens = 100},
        {.start = 5, .token_times = b, .n_events = 4, .output_tokens = 4, .input_tokens = 100},
    };
    BatchPhases p;
    CHECK_STATUS(batch_phases(reqs, 2, &p), MX_OK);
    CHECK(near(p.start, 5) && near(p.prefill_end, 5.6) && near(p.end, 6.2));
    CHECK(p.prefill_tokens == 200 && p.decode_tokens == 4);
    reqs[1].start = 5.1;
    CHECK_STATUS(batch_phases(reqs, 2, &p), MX_ERR_ARG);
    reqs[1].start = 5;
    reqs[1].failed = true;
    CHECK_STATUS(batch_phases(reqs, 2, &p), MX_ERR_ARG);
    CHECK_STATUS(batch_phases(reqs, 0, &p), MX_ERR_ARG);
}

int main(void) {
    RUN(test_percentiles);
    RUN(test_request_latency);
    RUN(test_run_metrics);
    RUN(test_batch_phases);
    return test_exit();
}
