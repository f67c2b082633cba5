// ops_ref gemm and lm_head: out[m, n] = sum_k x[m, k] * w[n, k], f32 activations, weights
// in f32 / f16 / bf16, fp32 accumulation.
//
// This is the hot path when a small model generates on the CPU, so it is written to be fast
// without being clever: the output is cut into tiles of GEMM_NC weight rows by GEMM_MC
// input rows, one OpenMP task per tile. A task converts its weight rows to f32 once (into
// a per-thread buffer) and dots them with each input row, four weight rows at a time so
// every load of x feeds four products. The inner loops are `omp simd` reductions, which
// lets the compiler split each dot product into vector lanes (a fixed summation order for
// a given build, independent of the thread count).
#include <stdlib.h>

#include <omp.h>

#include "kernels.h"
#include "ops_ref_internal.h"

enum {
    GEMM_NC = 16, // weight rows per tile: 16 * K floats stay in L2 for K up to ~8k
    GEMM_MC = 64, // input rows per tile: weight conversion is amortised over 64 rows
};

// out[j * ldo] = dot(x, w + j * k) for j in [0, nw), nw <= GEMM_NC.
static void dot_rows(const float *restrict x, const float *restrict w, int nw, int k,
                     float *restrict out) {
    int j = 0;
    for (; j + 4 <= nw; j += 4) {
        const float *w0 = w + (size_t)j * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
        for (int i = 0; i < k; i++) {
            float xi = x[i];
            s0 += xi * w0[i];
            s1 += xi * w1[i];
            s2 += xi * w2[i];
            s3 += xi * w3[i];
        }
        out[j] = s0;
        out[j + 1] = s1;
        out[j + 2] = s2;
        out[j + 3] = s3;
    }
    for (; j < nw; j++) {
        const float *wj = w + (size_t)j * k;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < k; i++) s += x[i] * wj[i];
        out[j] = s;
    }
}

// out[r, n] = dot(x[rows ? rows[r] : r, :], w[n, :]) for r in [0, m), n in [0, n_out).
// Arguments are already validated. Returns OPS_OK or OPS_ERR_NOMEM (nothing written).
static int gemm_core(const float *x, const int32_t *rows, int m, const void *w, DType wt,
                     int n_out, int k, float *out) {
    if (m == 0) return OPS_OK;
    const int n_tiles = (n_out + GEMM_NC - 1) / GEMM_NC;
    const int m_tiles = (m + GEMM_MC - 1) / GEMM_MC;
    const long long tiles = (long long)n_tiles * m_tiles;
    const int threads = omp_get_max_threads();

    float *buf = NULL; // per-thread f32 copies of GEMM_NC weight rows (unused for f32)
    if (wt != DT_F32) {
        buf = malloc((size_t)threads * GEMM_NC * (size_t)k * sizeof(float));
        if (!buf) return OPS_ERR_NOMEM;
    }
    const double work = (double)m * n_out * k;

#pragma omp parallel for schedule(static) if (work > OPS_REF_PAR_MIN && tiles > 1)
    for (long long tile = 0; tile < tiles; tile++) {
        const int n0 = (int)(tile / m_tiles) * GEMM_NC, m0 = (int)(tile % m_tiles) * GEMM_MC;
        const int nw = n_out - n0 < GEMM_NC ? n_out - n0 : GEMM_NC;
        const int m1 = m - m0 < GEMM_MC ? m : m0 + GEMM_MC;
        const float *wf;
        if (wt == DT_F32) {
            wf = (const float *)w + (size_t)n0 * k;
        } else {
            float *mine = buf + (size_t)omp_get_thread_num() * GEMM_NC * k;
            ops_ref_load_row(mine, w, wt, (size_t)n0 * k, (size_t)nw * k);
            wf = mine;
        }
        float tmp[GEMM_NC];
        for (int r = m0; r < m1; r++) {
            const float *xr = x + (size_t)(rows ? rows[r] : r) * k;
            dot_rows(xr, wf, nw, k, tmp);
            float *o = out + (size_t)r * n_out + n0;
            for (int j = 0; j < nw; j++) o[j] = tmp[j];
        }
    }
    free(buf);
    return OPS_OK;
}

int ops_ref_gemm(const GemmParams *p, void *queue) {
    (void)queue;
    if (!p || !p->x || !p->w || !p->out || !ops_ref_dtype_ok(p->w_dtype)) return OPS_ERR_ARG;
    if (p->m < 0 || p->n < 1 || p->k < 1) return OPS_ERR_ARG;
    return gemm_core(p->x, NULL, p->m, p->w, p->w_dtype, p->n, p->k, p->out);
}

int ops_ref_lm_head(const LmHeadParams *p, void *queue) {
    (void)queue;
    if (!p || !p->hidden || !p->rows || !p->w || !p->logits || !ops_ref_dtype_ok(p->w_dtype))
        return OPS_ERR_ARG;
    if (p->n_rows < 0 || p->n_tokens < 0 || p->dim < 1 || p->vocab < 1) return OPS_ERR_ARG;
    for (int r = 0; r < p->n_rows; r++)
        if (p->rows[r] < 0 || p->rows[r] >= p->n_tokens) return OPS_ERR_ARG;
    return gemm_core(p->hidden, p->rows, p->n_rows, p->w, p->w_dtype, p->vocab, p->dim,
                     p->logits);
}
