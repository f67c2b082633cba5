// ops_ref attention: causal, grouped-query attention over the paged KV cache for a
// flattened variable-length batch (prefill chunks and decodes together), with an optional
// sliding window. See AttentionParams in kernels.h for the layout.
//
// One OpenMP task per (query token, query head). A task reads the keys it may see straight
// from their pages, in two passes over a per-thread score buffer: scores and their max,
// then exp, sum and the weighted sum of values, all in f32. Slow compared with a flash
// kernel but obviously right, and that is its job: the CUDA kernels are checked against it.
#include <math.h>
#include <stdlib.h>

#include <omp.h>

#include "kernels.h"
#include "ops_ref_internal.h"

// Checks everything attention will index with; on success stores the largest ctx_len.
// O(S + number of listed blocks).
static int check_params(const AttentionParams *p, int *max_ctx) {
    if (!p || !p->q || !p->k_cache || !p->v_cache || !p->out || !p->q_start || !p->ctx_len ||
        !p->kv_indptr || !p->kv_indices)
        return OPS_ERR_ARG;
    if (p->n_seqs < 0 || p->n_tokens < 0 || p->n_q_heads < 1 || p->n_kv_heads < 1 ||
        p->n_q_heads % p->n_kv_heads != 0 || p->head_dim < 1 || p->block_size < 1 ||
        p->num_blocks < 1 || p->sliding_window < 0 || !isfinite(p->scale))
        return OPS_ERR_ARG;
    if (p->q_start[0] != 0 || p->q_start[p->n_seqs] != p->n_tokens || p->kv_indptr[0] != 0)
        return OPS_ERR_ARG;
    int max = 0;
    for (int s = 0; s < p->n_seqs; s++) {
        // monotone from 0 first, so the differences below cannot overflow
        if (p->q_start[s + 1] < p->q_start[s] || p->q_start[s + 1] > p->n_tokens) return OPS_ERR_ARG;
        if (p->kv_indptr[s + 1] < p->kv_indptr[s]) return OPS_ERR_ARG;
        int n_q = p->q_start[s + 1] - p->q_start[s];
        int n_blocks = p->kv_indptr[s + 1] - p->kv_indptr[s];
        if (p->ctx_len[s] < n_q) return OPS_ERR_ARG;
        if (n_q > p->max_q_len || p->ctx_len[s] > p->max_ctx_len) return OPS_ERR_ARG; // the launch bounds
        int64_t needed = ((int64_t)p->ctx_len[s] + p->block_size - 1) / p->block_size;
        if (n_blocks < needed) return OPS_ERR_ARG;
        if (p->ctx_len[s] > max) max = p->ctx_len[s];
    }
    for (int i = 0; i < p->kv_indptr[p->n_seqs]; i++)
        if (p->kv_indices[i] < 0 || p->kv_indices[i] >= p->num_blocks) return OPS_ERR_ARG;
    *max_ctx = max;
    return OPS_OK;
}

int ops_ref_attention(const AttentionParams *p, void *queue) {
    (void)queue;
    int max_ctx = 0;
    int rc = check_params(p, &max_ctx);
    if (rc != OPS_OK || p->n_tokens == 0) return rc;

    const int T = p->n_tokens, Hq = p->n_q_heads, Hkv = p->n_kv_heads, Dh = p->head_dim;
    const int bs = p->block_size, group = Hq / Hkv;
    const int threads = omp_get_max_threads();
    const size_t scratch = (size_t)max_ctx + (size_t)Dh; // scores, then the output accumulator
    int *seq_of = malloc((size_t)T * sizeof(int));
    float *buf = malloc((size_t)threads * scratch * sizeof(float));
    if (!seq_of || !buf) {
        free(seq_of);
        free(buf);
        return OPS_ERR_NOMEM;
    }
    for (int s = 0; s < p->n_seqs; s++)
        for (int t = p->q_start[s]; t < p->q_start[s + 1]; t++) seq_of[t] = s;

    const float *q = p->q, *kc = p->k_cache, *vc = p->v_cache;
    float *out = p->out;
    const size_t row = (size_t)Hkv * Dh; // floats per cache slot
    const long long tasks = (long long)T * Hq;

#pragma omp parallel for schedule(dynamic, 4) if (tasks > 1)
    for (long long task = 0; task < tasks; task++) {
        const int t = (int)(task / Hq), h = (int)(task % Hq), kvh = h / group;
        const int s = seq_of[t];
        const int n_q = p->q_start[s + 1] - p->q_start[s];
        const int pos = p->ctx_len[s] - n_q + (t - p->q_start[s]);
        const int lo = p->sliding_window > 0 && pos - p->sliding_window + 1 > 0
                           ? pos - p->sliding_window + 1
                           : 0;
        const int32_t *blocks = p->kv_indices + p->kv_indptr[s];
        const float *qv = q + ((size_t)t * Hq + h) * Dh;
        float *score = buf + (size_t)omp_get_thread_num() * scratch, *acc = score + max_ctx;

        float max = -INFINITY;
        for (int j = lo; j <= pos; j++) {
            const float *kv = kc + ((size_t)blocks[j / bs] * bs + j % bs) * row + (size_t)kvh * Dh;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int d = 0; d < Dh; d++) dot += qv[d] * kv[d];
            score[j - lo] = dot * p->scale;
            if (score[j - lo] > max) max = score[j - lo];
        }
        for (int d = 0; d < Dh; d++) acc[d] = 0.0f;
        float sum = 0.0f;
        for (int j = lo; j <= pos; j++) {
            const float *vv = vc + ((size_t)blocks[j / bs] * bs + j % bs) * row + (size_t)kvh * Dh;
            float e = expf(score[j - lo] - max);
            sum += e;
#pragma omp simd
            for (int d = 0; d < Dh; d++) acc[d] += e * vv[d];
        }
        float *o = out + ((size_t)t * Hq + h) * Dh;
        for (int d = 0; d < Dh; d++) o[d] = acc[d] / sum;
    }
    free(seq_of);
    free(buf);
    return OPS_OK;
}
