// ops_ref's sample op: the token-drawing rule of kernels.h (SampleParams), written plainly.
//
// Per row: weights e_i = exp((l_i - max) / T) in f32, tokens sorted by decreasing weight
// (lower id first on ties), top-k then top-p cut-offs over running f32 sums in that order,
// and the first token whose running sum exceeds u * (sum of the kept weights).
#include <math.h>
#include <stdlib.h>

#include "kernels.h"
#include "ops_ref_internal.h"

typedef struct Entry {
    float w;
    int32_t id;
} Entry;

static int by_weight_then_id(const void *a, const void *b) {
    const Entry *x = a, *y = b;
    if (x->w != y->w) return x->w > y->w ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int32_t argmax(const float *l, int V) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

static int32_t draw(const float *l, int V, float temperature, int top_k, float top_p, float u, Entry *e) {
    float max = l[argmax(l, V)];
    for (int i = 0; i < V; i++) e[i] = (Entry){expf((l[i] - max) / temperature), i};
    qsort(e, (size_t)V, sizeof *e, by_weight_then_id);
    int kept = top_k <= 0 || top_k >= V ? V : top_k;
    float total = 0.0f;
    for (int i = 0; i < kept; i++) total += e[i].w;
    if (top_p < 1.0f) { // the shortest prefix reaching top_p of the kept weight
        float run = 0.0f, goal = top_p * total;
        int n = 0;
        while (n < kept && (n == 0 || run < goal)) run += e[n++].w;
        kept = n;
        total = run;
    }
    float target = u * total, run = 0.0f;
    for (int i = 0; i < kept; i++) {
        run += e[i].w;
        if (run > target) return e[i].id;
    }
    return e[kept - 1].id; // rounding left the target at the very end
}

int ops_ref_sample(const SampleParams *p, void *queue) {
    (void)queue;
    if (!p || !p->logits || !p->temperature || !p->top_k || !p->top_p || !p->seed || !p->counter || !p->out)
        return OPS_ERR_ARG;
    if (p->n_rows < 0 || p->vocab < 1) return OPS_ERR_ARG;
    for (int r = 0; r < p->n_rows; r++)
        if (!isfinite(p->temperature[r]) || !(p->top_p[r] > 0.0f && p->top_p[r] <= 1.0f)) return OPS_ERR_ARG;
    Entry *scratch = NULL;
    for (int r = 0; r < p->n_rows; r++) {
        const float *l = p->logits + (size_t)r * (size_t)p->vocab;
        if (p->temperature[r] <= 0.0f) {
            p->out[r] = argmax(l, p->vocab);
            continue;
        }
        if (!scratch && !(scratch = malloc((size_t)p->vocab * sizeof *scratch))) return OPS_ERR_NOMEM;
        float u = sample_uniform(p->seed[r], p->counter[r]);
        p->out[r] = draw(l, p->vocab, p->temperature[r], p->top_k[r], p->top_p[r], u, scratch);
    }
    free(scratch);
    return OPS_OK;
}
