// Sampling (see sampler.h). Logits are never modified; work happens in scratch buffers.
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

SamplingParams sampling_default(void) {
    return (SamplingParams){.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
}

MxStatus sampling_check(const SamplingParams *p) {
    if (!isfinite(p->temperature) || p->temperature < 0)
        return mx_fail(MX_ERR_ARG, "temperature must be finite and >= 0");
    if (p->top_k < 0) return mx_fail(MX_ERR_ARG, "top_k must be >= 0");
    if (!(p->top_p > 0 && p->top_p <= 1)) return mx_fail(MX_ERR_ARG, "top_p must be in (0, 1]");
    return MX_OK;
}

// splitmix64: a full-period 64-bit generator with good statistical quality for sampling.
void rng_seed(Rng *r, uint64_t seed) { r->state = seed; }

uint64_t rng_next(Rng *r) {
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float rng_uniform(Rng *r) { return (float)(rng_next(r) >> 40) * (1.0f / 16777216.0f); }

MxStatus sampler_init(Sampler *s, int vocab) {
    memset(s, 0, sizeof *s);
    s->probs = mx_malloc((size_t)vocab * sizeof *s->probs);
    s->ids = mx_malloc((size_t)vocab * sizeof *s->ids);
    if (vocab <= 0 || !s->probs || !s->ids) {
        sampler_destroy(s);
        return vocab <= 0 ? mx_fail(MX_ERR_ARG, "vocab %d", vocab) : mx_fail(MX_ERR_NOMEM, "sampler");
    }
    s->vocab = vocab;
    return MX_OK;
}

void sampler_destroy(Sampler *s) {
    mx_free(s->probs);
    mx_free(s->ids);
    memset(s, 0, sizeof *s);
}

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

// Orders ids by descending value, then ascending id (a total order: results never depend
// on the sort algorithm).
static _Thread_local const float *sort_values;
static int cmp_desc(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = sort_values[i], y = sort_values[j];
    if (x != y) return x > y ? -1 : 1;
    return i < j ? -1 : i > j;
}

// Moves the k largest of ids[0..n) (by values[]) to the front, sorted.
static void sort_top(const float *values, int32_t *ids, int n, int k) {
    sort_values = values;
    if (k < n && k <= 64) {
        // Selection of a small k: one pass keeping a sorted prefix.
        for (int i = 0; i < n; i++) {
            int32_t id = ids[i];
            int pos = i < k ? i : k;
            while (pos > 0 && cmp_desc(&id, &ids[pos - 1]) < 0) {
                if (pos < k) ids[pos] = ids[pos - 1];
                pos--;
            }
            if (pos < k) ids[pos] = id;
        }
        return;
    }
    qsort(ids, (size_t)n, sizeof *ids, cmp_desc);
}

int32_t sampler_sample(Sampler *s, const float *logits, const SamplingParams *p, Rng *rng) {
    int v = s->vocab;
    if (p->temperature == 0 || p->top_k == 1) return argmax(logits, v);

    // Candidates: the top_k ids (all when 0), sorted by logit, most likely first.
    int n = (p->top_k > 0 && p->top_k < v) ? p->top_k : v;
    for (int i = 0; i < v; i++) s->ids[i] = i;
    if (n < v || p->top_p < 1) sort_top(logits, s->ids, v, n);

    float max = logits[s->ids[0]];
    if (n == v && p->top_p >= 1) max = logits[argmax(logits, v)];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        s->probs[i] = expf((logits[s->ids[i]] - max) / p->temperature);
        sum += s->probs[i];
    }
    if (p->top_p < 1) {
        // Nucleus: the shortest prefix whose mass reaches top_p (at least one token).
        double cum = 0;
        int keep = 0;
        while (keep < n && cum < p->top_p * sum) cum += s->probs[keep++];
        n = keep > 0 ? keep : 1;
        sum = cum > 0 ? cum : s->probs[0];
    }
    double u = (double)rng_uniform(rng) * sum, cum = 0;
    for (int i = 0; i < n; i++) {
        cum += s->probs[i];
        if (u < cum) return s->ids[i];
    }
    return s->ids[n - 1]; // rounding left u at the very top
}

// log(sum(exp(logits))) in double, the normaliser of log_softmax; one formula for
// sampler_top_logprobs and sampler_logprob, so a token's logprob and its top-k entry agree
// bit for bit (clients compare them to tell a greedy token).
static double log_partition(const float *logits, int v) {
    float max = logits[argmax(logits, v)];
    double sum = 0;
    for (int i = 0; i < v; i++) sum += exp((double)logits[i] - max);
    return max + log(sum);
}

float sampler_logprob(const Sampler *s, const float *logits, int32_t id) {
    return (float)((double)logits[id] - log_partition(logits, s->vocab));
}

int sampler_top_logprobs(Sampler *s, const float *logits, int k, int32_t *ids, float *logprobs) {
    int v = s->vocab;
    if (k <= 0) return 0;
    if (k > v) k = v;
    double log_z = log_partition(logits, v);
    for (int i = 0; i < v; i++) s->ids[i] = i;
    sort_top(logits, s->ids, v, k);
    for (int i = 0; i < k; i++) {
        ids[i] = s->ids[i];
        logprobs[i] = (float)((double)logits[s->ids[i]] - log_z);
    }
    return k;
}
