// Sampler: greedy ties, seeded determinism, top-k / top-p supports, temperature, the
// sampled distribution against the softmax, and top logprobs.
#include <math.h>
#include <string.h>

#include "sampler.h"
#include "test_util.h"

static void test_params(void) {
    SamplingParams p = sampling_default();
    CHECK_STATUS(sampling_check(&p), MX_OK);
    p.temperature = -1;
    CHECK_STATUS(sampling_check(&p), MX_ERR_ARG);
    p.temperature = NAN;
    CHECK_STATUS(sampling_check(&p), MX_ERR_ARG);
    p = sampling_default();
    p.top_p = 0;
    CHECK_STATUS(sampling_check(&p), MX_ERR_ARG);
    p.top_p = 1.5f;
    CHECK_STATUS(sampling_check(&p), MX_ERR_ARG);
    p = sampling_default();
    p.top_k = -2;
    CHECK_STATUS(sampling_check(&p), MX_ERR_ARG);
}

static void test_greedy(void) {
    Sampler s;
    CHECK_STATUS(sampler_init(&s, 5), MX_OK);
    float logits[5] = {0.1f, 3.0f, -2.0f, 3.0f, 1.0f};
    SamplingParams p = sampling_default();
    Rng r;
    rng_seed(&r, 1);
    CHECK(sampler_sample(&s, logits, &p, &r) == 1); // ties: lowest id, like torch.argmax
    p.temperature = 1.0f;
    p.top_k = 1;
    CHECK(sampler_sample(&s, logits, &p, &r) == 1);
    sampler_destroy(&s);
}

// Draws n samples and returns the counts per id.
static void histogram(Sampler *s, const float *logits, const SamplingParams *p, int n, int *counts) {
    Rng r;
    rng_seed(&r, p->seed);
    memset(counts, 0, (size_t)s->vocab * sizeof *counts);
    for (int i = 0; i < n; i++) counts[sampler_sample(s, logits, p, &r)]++;
}

static void test_distribution(void) {
    enum { V = 6, N = 60000 };
    Sampler s;
    CHECK_STATUS(sampler_init(&s, V), MX_OK);
    // softmax at T = 1: probabilities proportional to 1, 2, 4, 8, 16, 32 (sum 63).
    float logits[V];
    for (int i = 0; i < V; i++) logits[i] = (float)i * logf(2.0f);
    SamplingParams p = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 42};
    int counts[V];
    histogram(&s, logits, &p, N, counts);
    for (int i = 0; i < V; i++) {
        double prob = (double)(1 << i) / 63.0, mean = N * prob, sd = sqrt(N * prob * (1 - prob));
        CHECK(fabs(counts[i] - mean) < 5 * sd); // 5 sigma: a false alarm about once in 3.5 million
    }
    // T = 2 flattens: probabilities proportional to sqrt(2)^i.
    p.temperature = 2.0f;
    histogram(&s, logits, &p, N, counts);
    double z = 0;
    for (int i = 0; i < V; i++) z += pow(sqrt(2.0), i);
    for (int i = 0; i < V; i++) {
        double prob = pow(sqrt(2.0), i) / z, mean = N * prob, sd = sqrt(N * prob * (1 - prob));
        CHECK(fabs(counts[i] - mean) < 5 * sd);
    }
    // top-k 2: only ids 5 and 4, in ratio 2:1.
    p.temperature = 1.0f;
    p.top_k = 2;
    histogram(&s, logits, &p, N, counts);
    CHECK(counts[0] + counts[1] + counts[2] + counts[3] == 0);
    CHECK(fabs(counts[5] - N * 2.0 / 3) < 5 * sqrt(N * 2.0 / 9));
    // top-p 0.7: 32/63 = 0.51 < 0.7 <= 48/63 = 0.76, so ids 5 and 4 only.
    p.top_k = 0;
    p.top_p = 0.7f;
    histogram(&s, logits, &p, N, counts);
    CHECK(counts[0] + counts[1] + counts[2] + counts[3] == 0 && counts[4] > 0 && counts[5] > 0);
    // top-p tiny: the single most likely id.
    p.top_p = 0.01f;
    histogram(&s, logits, &p, 100, counts);
    CHECK(counts[5] == 100);
    sampler_destroy(&s);
}

static void test_determinism(void) {
    enum { V = 1000 };
    Sampler s;
    CHECK_STATUS(sampler_init(&s, V), MX_OK);
    float logits[V];
    for (int i = 0; i < V; i++) logits[i] = sinf((float)i * 0.37f) * 3.0f;
    SamplingParams p = {.temperature = 0.8f, .top_k = 50, .top_p = 0.9f, .seed = 7};
    int a[64], b[64], c[64];
    Rng r;
    rng_seed(&r, 7);
    for (int i = 0; i < 64; i++) a[i] = sampler_sample(&s, logits, &p, &r);
    rng_seed(&r, 7);
    for (int i = 0; i < 64; i++) b[i] = sampler_sample(&s, logits, &p, &r);
    rng_seed(&r, 8);
    for (int i = 0; i < 64; i++) c[i] = sampler_sample(&s, logits, &p, &r);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    sampler_destroy(&s);
}

static void test_top_logprobs(void) {
    enum { V = 7 };
    Sampler s;
    CHECK_STATUS(sampler_init(&s, V), MX_OK);
    float logits[V] = {1.0f, 5.0f, -3.0f, 5.0f, 2.0f, 0.0f, 4.5f};
    int32_t ids[V];
    float lp[V];
    CHECK(sampler_top_logprobs(&s, logits, 3, ids, lp) == 3);
    CHECK(ids[0] == 1 && ids[1] == 3 && ids[2] == 6);
    double z = 0;
    for (int i = 0; i < V; i++) z += exp(logits[i]);
    CHECK(fabs(lp[0] - (5.0 - log(z))) < 1e-5 && fabs(lp[2] - (4.5 - log(z))) < 1e-5);
    CHECK(sampler_top_logprobs(&s, logits, 100, ids, lp) == V); // clamped to V
    double total = 0;
    for (int i = 0; i < V; i++) total += exp(lp[i]);
    CHECK(fabs(total - 1.0) < 1e-5);
    for (int i = 1; i < V; i++) CHECK(lp[i] <= lp[i - 1]);
    sampler_destroy(&s);
}

int main(void) {
    RUN(test_params);
    RUN(test_greedy);
    RUN(test_distribution);
    RUN(test_determinism);
    RUN(test_top_logprobs);
    return test_exit();
}
