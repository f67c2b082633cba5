// ops_ref: the plain-C reference backend (CPU, f32 activations, fp32 accumulation).
//
// This file holds the Ops table, the memory ops (backend memory is host memory) and the
// element-wise and row-wise ops: embedding, rmsnorm, rope_kv_write, silu_mul. gemm and
// lm_head live in ops_ref_gemm.c, attention in ops_ref_attention.c, sample in
// ops_ref_sample.c.
//
// Every op validates all of its arguments first (O(T) at most) and returns OPS_ERR_ARG
// without writing anything when one is wrong. Shape rules shared by all ops: counts of
// items (tokens, rows, M) may be 0, which makes the op a no-op; dimensions (hidden size,
// heads, head dim, vocab, N, K, block size, block count) must be >= 1; every pointer the
// op would use must be non-NULL even when the count is 0. Work is split across OpenMP
// threads by token or row; each output element is written by exactly one thread, so the
// results do not depend on the thread count.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "kernels.h"
#include "ops_ref_internal.h"

// ---- memory: backend memory is host memory ------------------------------------------------

// 64-byte aligned so rows start on a cache line; 0 bytes still gives a unique pointer.
static void *ref_alloc(size_t bytes) {
    if (bytes > SIZE_MAX - 64) return NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, rounded ? rounded : 64);
}

static void ref_free(void *p) { free(p); }

static int ref_copy(void *dst, const void *src, size_t bytes, void *queue) {
    (void)queue;
    if (bytes == 0) return OPS_OK;
    if (!dst || !src) return OPS_ERR_ARG;
    memmove(dst, src, bytes);
    return OPS_OK;
}

static int ref_sync(void *queue) {
    (void)queue;
    return OPS_OK;
}

// ops_ref keeps no per-queue state; the queue is a unique dummy so NULL can mean failure.
static char ref_queue_token;
static void *ref_queue_create(void) { return &ref_queue_token; }
static void ref_queue_destroy(void *queue) { (void)queue; }

int ops_ref_threads(void) { return omp_get_max_threads(); }

// ---- embedding ----------------------------------------------------------------------------

static int ref_embedding(const EmbeddingParams *p, void *queue) {
    (void)queue;
    if (!p || !p->tokens || !p->table || !p->out || !ops_ref_dtype_ok(p->table_dtype))
        return OPS_ERR_ARG;
    if (p->n_tokens < 0 || p->dim < 1 || p->vocab < 1) return OPS_ERR_ARG;
    for (int t = 0; t < p->n_tokens; t++)
        if (p->tokens[t] < 0 || p->tokens[t] >= p->vocab) return OPS_ERR_ARG;

    const size_t D = (size_t)p->dim;
    float *out = p->out;
#pragma omp parallel for schedule(static) if ((size_t)p->n_tokens * D > OPS_REF_PAR_MIN)
    for (int t = 0; t < p->n_tokens; t++)
        ops_ref_load_row(out + (size_t)t * D, p->table, p->table_dtype, (size_t)p->tokens[t] * D, D);
    return OPS_OK;
}

// ---- rmsnorm (with the fused residual add) ------------------------------------------------

// Like Hugging Face LlamaRMSNorm in f32: out = weight * (h * (1 / sqrt(mean(h^2) + eps))),
// where h = residual + x when a residual is given (and is stored back into residual).
static int ref_rmsnorm(const RmsNormParams *p, void *queue) {
    (void)queue;
    if (!p || !p->x || !p->weight || !p->out || !ops_ref_dtype_ok(p->weight_dtype))
        return OPS_ERR_ARG;
    if (p->n_rows < 0 || p->dim < 1 || !(p->eps >= 0.0f) || isinf(p->eps)) return OPS_ERR_ARG;
    if (p->n_rows == 0) return OPS_OK;

    const size_t D = (size_t)p->dim;
    float *w = malloc(D * sizeof(float));
    if (!w) return OPS_ERR_NOMEM;
    ops_ref_load_row(w, p->weight, p->weight_dtype, 0, D);

    const float *x = p->x;
    float *res = p->residual, *out = p->out;
#pragma omp parallel for schedule(static) if ((size_t)p->n_rows * D > OPS_REF_PAR_MIN)
    for (int t = 0; t < p->n_rows; t++) {
        const float *xr = x + (size_t)t * D;
        float *o = out + (size_t)t * D;
        const float *h = xr;
        if (res) {
            float *r = res + (size_t)t * D;
            for (size_t j = 0; j < D; j++) r[j] += xr[j]; // before out is written: out may alias x
            h = r;
        }
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (size_t j = 0; j < D; j++) ss += h[j] * h[j];
        float inv = 1.0f / sqrtf(ss / (float)D + p->eps);
        for (size_t j = 0; j < D; j++) o[j] = w[j] * (h[j] * inv);
    }
    free(w);
    return OPS_OK;
}

// ---- rope_kv_write ------------------------------------------------------------------------

// Rotates one head of Dh elements in place (rotate-half pairs i, i + Dh/2).
static void rotate_head(float *x, const float *cos_t, const float *sin_t, size_t half) {
    for (size_t i = 0; i < half; i++) {
        float x0 = x[i], x1 = x[i + half];
        x[i] = x0 * cos_t[i] - x1 * sin_t[i];
        x[i + half] = x1 * cos_t[i] + x0 * sin_t[i];
    }
}

// Positions must be >= 0. The angle is rounded to f32 before cos/sin, as PyTorch computes
// it in f32 (inv_freq @ positions), so positions in the thousands match Hugging Face.
static int ref_rope_kv_write(const RopeKvWriteParams *p, void *queue) {
    (void)queue;
    if (!p || !p->qkv || !p->q_out || !p->k_cache || !p->v_cache || !p->positions || !p->slot_mapping ||
        !p->inv_freq)
        return OPS_ERR_ARG;
    if (p->n_tokens < 0 || p->n_q_heads < 1 || p->n_kv_heads < 1 || p->head_dim < 2 || p->head_dim % 2 != 0 ||
        p->head_dim > 1024 || p->block_size < 1 || p->num_blocks < 1)
        return OPS_ERR_ARG;
    const int64_t n_slots = (int64_t)p->num_blocks * p->block_size;
    for (int t = 0; t < p->n_tokens; t++)
        if (p->positions[t] < 0 || p->slot_mapping[t] >= n_slots) return OPS_ERR_ARG;

    const size_t Dh = (size_t)p->head_dim, half = Dh / 2;
    const size_t hq = (size_t)p->n_q_heads, hkv = (size_t)p->n_kv_heads;
    const size_t q_row = hq * Dh, kv_row = hkv * Dh, qkv_row = q_row + 2 * kv_row;
    const float *qkv = p->qkv;
    float *q_out = p->q_out, *kc = p->k_cache, *vc = p->v_cache;
#pragma omp parallel for schedule(static) if ((size_t)p->n_tokens * qkv_row > OPS_REF_PAR_MIN)
    for (int t = 0; t < p->n_tokens; t++) {
        float cos_t[512], sin_t[512];
        for (size_t i = 0; i < half; i++) {
            float angle = (float)p->positions[t] * p->inv_freq[i];
            cos_t[i] = cosf(angle);
            sin_t[i] = sinf(angle);
        }
        const float *src = qkv + (size_t)t * qkv_row;
        float *q = q_out + (size_t)t * q_row;
        memcpy(q, src, q_row * sizeof(float));
        for (size_t h = 0; h < hq; h++) rotate_head(q + h * Dh, cos_t, sin_t, half);
        int64_t slot = p->slot_mapping[t];
        if (slot < 0) continue;
        float *k = kc + (size_t)slot * kv_row;
        memcpy(k, src + q_row, kv_row * sizeof(float));
        for (size_t h = 0; h < hkv; h++) rotate_head(k + h * Dh, cos_t, sin_t, half);
        memcpy(vc + (size_t)slot * kv_row, src + q_row + kv_row, kv_row * sizeof(float));
    }
    return OPS_OK;
}

// ---- silu_mul -----------------------------------------------------------------------------

// out may alias gate or up only when in_stride == dim (then it is element-wise in place).
static int ref_silu_mul(const SiluMulParams *p, void *queue) {
    (void)queue;
    if (!p || !p->gate || !p->up || !p->out) return OPS_ERR_ARG;
    if (p->n_rows < 0 || p->dim < 1 || p->in_stride < p->dim) return OPS_ERR_ARG;

    const size_t I = (size_t)p->dim, stride = (size_t)p->in_stride;
    const float *gate = p->gate, *up = p->up;
    float *out = p->out;
#pragma omp parallel for schedule(static) if ((size_t)p->n_rows * I > OPS_REF_PAR_MIN)
    for (int t = 0; t < p->n_rows; t++) {
        const float *g = gate + (size_t)t * stride, *u = up + (size_t)t * stride;
        float *o = out + (size_t)t * I;
        for (size_t j = 0; j < I; j++) o[j] = g[j] / (1.0f + expf(-g[j])) * u[j];
    }
    return OPS_OK;
}

// ---- fill ---------------------------------------------------------------------------------

static int ref_fill(void *dst, size_t n, DType dtype, uint64_t seed, float lo, float hi, void *queue) {
    (void)queue;
    if (!dst || !ops_ref_dtype_ok(dtype) || !isfinite(lo) || !isfinite(hi) || lo > hi) return OPS_ERR_ARG;
#pragma omp parallel for schedule(static) if (n > OPS_REF_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = lo + (hi - lo) * sample_uniform(seed, i);
        if (dtype == DT_F32) ((float *)dst)[i] = v;
        else if (dtype == DT_BF16) ((uint16_t *)dst)[i] = f32_to_bf16(v);
        else ((uint16_t *)dst)[i] = f32_to_f16(v);
    }
    return OPS_OK;
}

// ---- sum and copy_2d (tensor-parallel collectives in one address space) ---------------------

static int ref_sum(const SumParams *p, void *queue) {
    (void)queue;
    if (!p || p->n_in < 1 || p->n_in > OPS_MAX_RANKS || p->n_out < 0 || p->n_out > OPS_MAX_RANKS ||
        !ops_ref_dtype_ok(p->dtype))
        return OPS_ERR_ARG;
    for (int i = 0; i < p->n_in; i++)
        if (!p->in[i]) return OPS_ERR_ARG;
    for (int o = 0; o < p->n_out; o++)
        if (!p->out[o]) return OPS_ERR_ARG;
#pragma omp parallel for schedule(static) if (p->count > OPS_REF_PAR_MIN)
    for (size_t e = 0; e < p->count; e++) {
        float y = 0.0f;
        for (int i = 0; i < p->n_in; i++) y += dtype_load(p->in[i], p->dtype, e);
        for (int o = 0; o < p->n_out; o++) {
            if (p->dtype == DT_F32) ((float *)p->out[o])[e] = y;
            else if (p->dtype == DT_BF16) ((uint16_t *)p->out[o])[e] = f32_to_bf16(y);
            else ((uint16_t *)p->out[o])[e] = f32_to_f16(y);
        }
    }
    return OPS_OK;
}

static int ref_copy_2d(void *dst, size_t dst_pitch, const void *src, size_t src_pitch, size_t width, size_t rows,
                       void *queue) {
    (void)queue;
    if ((!dst || !src) && width && rows) return OPS_ERR_ARG;
    if (rows > 1 && (dst_pitch < width || src_pitch < width)) return OPS_ERR_ARG;
    if (!width || !rows) return OPS_OK;
    // The spans touched must not overlap: a device copy gives no order between rows.
    const uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
    if (d < s + (rows - 1) * src_pitch + width && s < d + (rows - 1) * dst_pitch + width) return OPS_ERR_ARG;
    for (size_t r = 0; r < rows; r++) memcpy((char *)dst + r * dst_pitch, (const char *)src + r * src_pitch, width);
    return OPS_OK;
}

// ---- the table ----------------------------------------------------------------------------

const Ops ops_ref = {
    .name = "ref",
    .act_dtype = DT_F32,
    .host_memory = true,
    .alloc = ref_alloc,
    .free = ref_free,
    .host_alloc = ref_alloc,
    .host_free = ref_free,
    .queue_create = ref_queue_create,
    .queue_destroy = ref_queue_destroy,
    .upload = ref_copy,
    .download = ref_copy,
    .sync = ref_sync,
    .embedding = ref_embedding,
    .rmsnorm = ref_rmsnorm,
    .gemm = ops_ref_gemm,
    .rope_kv_write = ref_rope_kv_write,
    .attention = ops_ref_attention,
    .silu_mul = ref_silu_mul,
    .lm_head = ops_ref_lm_head,
    .sample = ops_ref_sample,
    .fill = ref_fill,
    .sum = ref_sum,
    .copy_2d = ref_copy_2d,
};
