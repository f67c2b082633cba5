// Attention benchmark: ops_cuda.attention on whole-prompt prefills and on decode steps over
// the paged KV cache, with a correctness check against ops_ref.attention in the same run.
//
// Prefill: batch {1, 4, 16} x context {512, 2048, 8192}, every sequence a whole prompt
// (q_len = context), heads 32/8 (GQA) and 40/40 (MHA), head dim 128, block size 16.
//   TFLOP/s = 4 * Dh * Hq * sum_s pairs_s / time, where pairs_s counts the (query, key)
//   pairs the causal mask lets through: q * (ctx - q) + q * (q + 1) / 2, i.e. n (n + 1) / 2
//   for a whole prompt of n tokens (QK^T and PV, 2 FLOPs per multiply-add each).
//   FlashAttention's benchmarks count n^2 / 2, 0.2% less at n = 512. %tgt is the rate over
//   the project's target, 0.9x FlashAttention-3 = 555 TFLOP/s (H100/H200, causal, Dh 128).
// Decode: batch {1, 8, 32, 64, 128} x context {1024, 4096, 16384, 32768}, one query per
// sequence, same heads and head dim.
//   GB/s = KV bytes read / time, KV bytes = 2 (K and V) * sum_s ctx_s * Hkv * Dh * 2;
//   %bw = that over the device-to-device cudaMemcpy bandwidth (bytes read + written)
//   measured in this run. Configurations whose cache would not fit in 70% of free memory
//   are skipped.
// Timing: each line is the median (and min) over --reps of a CUDA graph of several calls
// (enough for ~1 ms), between two events on the queue's stream, divided by the calls; the
// KV cache is replicated over enough block ranges to span > 256 MB and the calls rotate
// through them, so L2 (50-60 MB) does not hold the context. K, V and Q are random
// (ops_cuda.fill, U(-1, 1)), never zeros; pages are a random permutation of the cache.
// Check: small prefill, decode (long enough to split the KV) and odd-shape cases run on the
// GPU and on ops_ref (f32 host copies of the same bf16 values); the max abs error is
// printed (outputs are O(1): ~0.004 is bf16 rounding; above 0.02 the case is BAD and the
// exit status is 1).
//
// Usage: bench_attention [--mode all|prefill|decode|check] [--quick] [--reps N] [--json FILE]
// Exit status: 0, 1 (an error or a wrong result), 2 (usage), 77 (no GPU: skipped).
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "gpu_bench.h"
#include "cuda_device.h"
#include "kernels.h"
#include "ops_cuda.h"

#define ROTATE_BYTES ((size_t)256 << 20) // KV copies span at least this much
#define MAX_COPIES 8
#define MAX_REPS 200
#define BAD_ERROR 0.02
#define TARGET_TFLOPS 555.0
#define HEAD_DIM 128
#define BLOCK_SIZE 16

typedef struct Heads {
    int hq, hkv;
} Heads;

static const Heads kHeads[] = {{32, 8}, {40, 40}};
static const int kPrefillBatch[] = {1, 4, 16}, kPrefillCtx[] = {512, 2048, 8192};
static const int kDecodeBatch[] = {1, 8, 32, 64, 128}, kDecodeCtx[] = {1024, 4096, 16384, 32768};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

// ---- options --------------------------------------------------------------------------------

typedef struct Options {
    bool prefill, decode, check, quick;
    int reps;
    const char *json_path;
} Options;

static int parse_options(int argc, char **argv, Options *o) {
    memset(o, 0, sizeof *o);
    o->prefill = o->decode = o->check = true;
    o->reps = 20;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
        if (strcmp(a, "--quick") == 0) {
            o->quick = true;
            continue;
        }
        if (!v) return -1;
        if (strcmp(a, "--mode") == 0) {
            o->prefill = strcmp(v, "all") == 0 || strcmp(v, "prefill") == 0;
            o->decode = strcmp(v, "all") == 0 || strcmp(v, "decode") == 0;
            o->check = strcmp(v, "all") == 0 || strcmp(v, "check") == 0;
            if (!o->prefill && !o->decode && !o->check) return -1;
        } else if (strcmp(a, "--reps") == 0) {
            char *end = NULL;
            long r = strtol(v, &end, 10);
            if (*end || r < 1 || r > MAX_REPS) return -1;
            o->reps = (int)r;
        } else if (strcmp(a, "--json") == 0) {
            o->json_path = v;
        } else {
            return -1;
        }
        i++;
    }
    return 0;
}

// ---- helpers --------------------------------------------------------------------------------

// ops_cuda's queue is a CudaQueue (kernels/cuda_internal.cuh) whose first member is its
// cudaStream_t; CUDA events are recorded on that stream.
static cudaStream_t queue_stream(void *queue) { return (cudaStream_t)ops_cuda_stream(queue); }

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

// Uniform in [-1, 1), rounded to bf16; f32 copy of the same value when f is not NULL.
static void fill_host(uint16_t *h, float *f, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        const float u = (float)(xorshift(&s) >> 40) * (1.0f / 16777216.0f);
        h[i] = f32_to_bf16(2.0f * u - 1.0f);
        if (f) f[i] = bf16_to_f32(h[i]);
    }
}

// A random permutation of [0, n).
static int32_t *random_blocks(int n, uint64_t seed) {
    int32_t *p = malloc((size_t)n * sizeof *p);
    if (!p) return NULL;
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 7;
    for (int i = 0; i < n; i++) p[i] = i;
    for (int i = n - 1; i > 0; i--) {
        const int j = (int)(xorshift(&s) % (uint64_t)(i + 1));
        const int32_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return p;
}

typedef struct Bench {
    void *queue;
    cudaStream_t stream;
    cudaEvent_t start, stop;
    double copy_gbs;
    int failures;
} Bench;

// Copy bandwidth (bytes read + written per second, GB/s) on the benchmark's stream.
static double measure_copy_gbs(Bench *b) { return gpu_copy_bandwidth_gbs(b->stream); }

typedef struct Timing {
    double median_us, min_us;
} Timing;

// Times one call of ops_cuda.attention per entry of p[] (rotating), as a captured graph of
// several calls when the backend captures, else call by call between events.
static int time_attention(Bench *b, const AttentionParams *p, int n_p, int reps, Timing *t) {
    float times[MAX_REPS];
    // Warm up and estimate one call.
    float est_ms = 0.0f;
    for (int i = 0; i < 2; i++) {
        cudaEventRecord(b->start, b->stream);
        const int rc = ops_cuda.attention(&p[i % n_p], b->queue);
        cudaEventRecord(b->stop, b->stream);
        if (rc != OPS_OK) return rc;
    }
    if (cudaEventSynchronize(b->stop) != cudaSuccess ||
        cudaEventElapsedTime(&est_ms, b->start, b->stop) != cudaSuccess)
        return OPS_ERR_DEVICE;
    int calls = est_ms > 0.0f ? (int)ceil(1.0 / est_ms) : 50;
    if (calls < 1) calls = 1;
    if (calls > 50) calls = 50;
    if (est_ms * reps > 3000.0f) reps = (int)(3000.0f / est_ms) > 3 ? (int)(3000.0f / est_ms) : 3;

    void *graph = NULL;
    if (ops_cuda.capture_begin && ops_cuda.capture_begin(b->queue) == OPS_OK) {
        int rc = OPS_OK;
        for (int i = 0; i < calls && rc == OPS_OK; i++) rc = ops_cuda.attention(&p[i % n_p], b->queue);
        const int end_rc = ops_cuda.capture_end(b->queue, &graph);
        if (end_rc != OPS_OK) graph = NULL; // fall back to plain calls
        if (rc != OPS_OK) {
            if (graph) ops_cuda.graph_destroy(graph);
            return rc;
        }
    }
    if (graph && ops_cuda.graph_launch(graph, b->queue) != OPS_OK) return OPS_ERR_DEVICE; // warm
    for (int r = 0; r < reps; r++) {
        cudaEventRecord(b->start, b->stream);
        int rc = OPS_OK;
        if (graph) rc = ops_cuda.graph_launch(graph, b->queue);
        else
            for (int i = 0; i < calls && rc == OPS_OK; i++) rc = ops_cuda.attention(&p[i % n_p], b->queue);
        cudaEventRecord(b->stop, b->stream);
        float ms = 0.0f;
        if (rc != OPS_OK || cudaEventSynchronize(b->stop) != cudaSuccess ||
            cudaEventElapsedTime(&ms, b->start, b->stop) != cudaSuccess) {
            if (graph) ops_cuda.graph_destroy(graph);
            return rc != OPS_OK ? rc : OPS_ERR_DEVICE;
        }
        times[r] = ms / (float)calls;
    }
    if (graph) ops_cuda.graph_destroy(graph);
    qsort(times, reps, sizeof(float), cmp_float);
    t->median_us = 1e3 * (reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]));
    t->min_us = 1e3 * times[0];
    return OPS_OK;
}

// ---- one batch of sequences on the device ---------------------------------------------------

// Everything one configuration needs: q/out, a KV cache holding `copies` disjoint sets of
// pages for the batch, and the per-copy page tables.
typedef struct Batch {
    int n_seqs, n_tokens, hq, hkv, dh, bs, copies, blocks_per_copy, max_q, max_ctx;
    void *q, *out, *k, *v;
    int32_t *d_q_start, *d_ctx_len, *d_indptr, *d_indices; // indices: [copies][blocks_per_copy]
    AttentionParams params[MAX_COPIES];
} Batch;

static void batch_free(Batch *bt) {
    ops_cuda.free(bt->q);
    ops_cuda.free(bt->out);
    ops_cuda.free(bt->k);
    ops_cuda.free(bt->v);
    ops_cuda.free(bt->d_q_start);
    ops_cuda.free(bt->d_ctx_len);
    ops_cuda.free(bt->d_indptr);
    ops_cuda.free(bt->d_indices);
    memset(bt, 0, sizeof *bt);
}

static size_t kv_bytes_per_copy(int n_seqs, const int *ctx, int hkv, int dh, int bs) {
    size_t blocks = 0;
    for (int s = 0; s < n_seqs; s++) blocks += (size_t)(ctx[s] + bs - 1) / bs;
    return blocks * bs * hkv * dh * 2 * 2;
}

// Sets up sequences with query counts q_len[] and contexts ctx[]. With host_* non-NULL the
// caller provides q / k / v contents (bf16, sizes as allocated) instead of ops_cuda.fill,
// and rotate = false (one copy). Returns OPS_OK or an error (nothing left allocated).
static int batch_init(Bench *b, Batch *bt, int n_seqs, const int *q_len, const int *ctx, int hq, int hkv,
                      int dh, int bs, int window, bool rotate, uint64_t seed) {
    memset(bt, 0, sizeof *bt);
    bt->n_seqs = n_seqs;
    bt->hq = hq;
    bt->hkv = hkv;
    bt->dh = dh;
    bt->bs = bs;
    int32_t *q_start = malloc((size_t)(n_seqs + 1) * sizeof(int32_t));
    int32_t *indptr = malloc((size_t)(n_seqs + 1) * sizeof(int32_t));
    int32_t *indices = NULL, *perm = NULL;
    int rc = OPS_ERR_NOMEM;
    if (!q_start || !indptr) goto done;
    q_start[0] = indptr[0] = 0;
    for (int s = 0; s < n_seqs; s++) {
        q_start[s + 1] = q_start[s] + q_len[s];
        indptr[s + 1] = indptr[s] + (ctx[s] + bs - 1) / bs;
        if (q_len[s] > bt->max_q) bt->max_q = q_len[s];
        if (ctx[s] > bt->max_ctx) bt->max_ctx = ctx[s];
    }
    bt->n_tokens = q_start[n_seqs];
    bt->blocks_per_copy = indptr[n_seqs] > 0 ? indptr[n_seqs] : 1;
    const size_t copy_bytes = (size_t)bt->blocks_per_copy * bs * hkv * dh * 2 * 2;
    bt->copies = rotate ? (int)((ROTATE_BYTES + copy_bytes - 1) / copy_bytes) : 1;
    if (bt->copies > MAX_COPIES) bt->copies = MAX_COPIES;
    if (bt->copies < 1) bt->copies = 1;
    const int num_blocks = bt->copies * bt->blocks_per_copy;
    // Pages of every copy scattered over the whole cache.
    perm = random_blocks(num_blocks, seed);
    indices = perm;
    if (!perm) goto done;

    const size_t qo_count = (size_t)(bt->n_tokens > 0 ? bt->n_tokens : 1) * hq * dh;
    const size_t kv_count = (size_t)num_blocks * bs * hkv * dh;
    bt->q = ops_cuda.alloc(qo_count * 2);
    bt->out = ops_cuda.alloc(qo_count * 2);
    bt->k = ops_cuda.alloc(kv_count * 2);
    bt->v = ops_cuda.alloc(kv_count * 2);
    bt->d_q_start = ops_cuda.alloc((size_t)(n_seqs + 1) * 4);
    bt->d_ctx_len = ops_cuda.alloc((size_t)n_seqs * 4 + 4);
    bt->d_indptr = ops_cuda.alloc((size_t)(n_seqs + 1) * 4);
    bt->d_indices = ops_cuda.alloc((size_t)num_blocks * 4);
    if (!bt->q || !bt->out || !bt->k || !bt->v || !bt->d_q_start || !bt->d_ctx_len || !bt->d_indptr ||
        !bt->d_indices)
        goto done;
    rc = ops_cuda.upload(bt->d_q_start, q_start, (size_t)(n_seqs + 1) * 4, b->queue);
    if (rc == OPS_OK) rc = ops_cuda.upload(bt->d_ctx_len, ctx, (size_t)n_seqs * 4, b->queue);
    if (rc == OPS_OK) rc = ops_cuda.upload(bt->d_indptr, indptr, (size_t)(n_seqs + 1) * 4, b->queue);
    if (rc == OPS_OK) rc = ops_cuda.upload(bt->d_indices, indices, (size_t)num_blocks * 4, b->queue);
    if (rc == OPS_OK) rc = ops_cuda.fill(bt->q, qo_count, DT_BF16, seed + 1, -1.0f, 1.0f, b->queue);
    if (rc == OPS_OK) rc = ops_cuda.fill(bt->k, kv_count, DT_BF16, seed + 2, -1.0f, 1.0f, b->queue);
    if (rc == OPS_OK) rc = ops_cuda.fill(bt->v, kv_count, DT_BF16, seed + 3, -1.0f, 1.0f, b->queue);
    if (rc == OPS_OK) rc = ops_cuda.sync(b->queue); // host arrays are freed below
    if (rc != OPS_OK) goto done;
    for (int c = 0; c < bt->copies; c++) {
        bt->params[c] = (AttentionParams){
            .q = bt->q, .k_cache = bt->k, .v_cache = bt->v, .out = bt->out,
            .q_start = bt->d_q_start, .ctx_len = bt->d_ctx_len, .kv_indptr = bt->d_indptr,
            .kv_indices = bt->d_indices + (size_t)c * bt->blocks_per_copy,
            .n_seqs = n_seqs, .n_tokens = bt->n_tokens, .n_q_heads = hq, .n_kv_heads = hkv,
            .head_dim = dh, .block_size = bs, .num_blocks = num_blocks, .sliding_window = window,
            .scale = 1.0f / sqrtf((float)dh), .max_q_len = bt->max_q, .max_ctx_len = bt->max_ctx};
    }
done:
    free(q_start);
    free(indptr);
    free(perm);
    if (rc != OPS_OK) batch_free(bt);
    return rc;
}

// ---- results --------------------------------------------------------------------------------

typedef struct Row {
    const char *kind; // "prefill" or "decode"
    int hq, hkv, batch, ctx;
    Timing t;
    double tflops, gbs, ratio; // ratio: TFLOP/s over the target, or GB/s over the copy bandwidth
} Row;

typedef struct Check {
    char name[96];
    double max_abs_err;
} Check;

typedef struct Results {
    Row rows[256];
    int n_rows;
    Check checks[16];
    int n_checks;
} Results;

static int write_json(const char *path, const char *device, double copy_gbs, const Results *res) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "{\n  \"device\": \"%s\",\n  \"copy_gbs\": %.1f,\n  \"target_tflops\": %.1f,\n  \"checks\": [\n",
            device, copy_gbs, TARGET_TFLOPS);
    for (int i = 0; i < res->n_checks; i++)
        fprintf(f, "    {\"case\": \"%s\", \"max_abs_err\": %.3e}%s\n", res->checks[i].name,
                isfinite(res->checks[i].max_abs_err) ? res->checks[i].max_abs_err : 1e30,
                i + 1 < res->n_checks ? "," : "");
    fprintf(f, "  ],\n  \"results\": [\n");
    for (int i = 0; i < res->n_rows; i++) {
        const Row *r = &res->rows[i];
        fprintf(f,
                "    {\"kind\": \"%s\", \"hq\": %d, \"hkv\": %d, \"head_dim\": %d, \"block_size\": %d, "
                "\"batch\": %d, \"ctx\": %d, \"time_us\": %.3f, \"min_us\": %.3f, \"tflops\": %.2f, "
                "\"gbs\": %.1f, \"%s\": %.4f}%s\n",
                r->kind, r->hq, r->hkv, HEAD_DIM, BLOCK_SIZE, r->batch, r->ctx, r->t.median_us, r->t.min_us,
                r->tflops, r->gbs, strcmp(r->kind, "prefill") == 0 ? "frac_target" : "frac_bw", r->ratio,
                i + 1 < res->n_rows ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    return fclose(f) == 0 ? 0 : -1;
}

static void add_row(Results *res, const Row *r) {
    if (res->n_rows < COUNT(res->rows)) res->rows[res->n_rows++] = *r;
}

// ---- correctness check ----------------------------------------------------------------------

typedef struct CheckCase {
    const char *name;
    int n_seqs, hq, hkv, dh, bs, window;
    int q_len[24], ctx[24];
} CheckCase;

static const CheckCase kChecks[] = {
    {"prefill mixed, GQA 4, Dh 128, bs 16", 3, 8, 2, 128, 16, 0, {300, 77, 1}, {300, 200, 129}},
    {"decode x17, GQA 4, Dh 128, bs 16 (splits)", 17, 32, 8, 128, 16, 0,
     {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
     {1, 54, 97, 1000, 4097, 3000, 17, 2048, 5000, 16, 15, 129, 700, 1, 2, 3333, 4444}},
    {"decode, MHA, Dh 64, bs 1, window 100", 4, 4, 4, 64, 1, 100, {1, 1, 1, 1}, {1, 99, 100, 1500}},
    {"prefill, GQA 8, Dh 64, bs 1, window 37", 2, 8, 1, 64, 1, 37, {130, 5}, {130, 300}},
    {"prefill + decode, Dh 12 (generic), bs 16", 3, 6, 2, 12, 16, 0, {40, 1, 1}, {97, 54, 1000}},
};

static void run_check(Bench *b, const CheckCase *c, Results *res) {
    Batch bt;
    int rc = batch_init(b, &bt, c->n_seqs, c->q_len, c->ctx, c->hq, c->hkv, c->dh, c->bs, c->window, false, 99);
    double err = INFINITY;
    const size_t q_count = (size_t)bt.n_tokens * c->hq * c->dh;
    const size_t kv_count = (size_t)bt.blocks_per_copy * c->bs * c->hkv * c->dh;
    uint16_t *hq = malloc(q_count * 2), *hk = malloc(kv_count * 2), *hv = malloc(kv_count * 2);
    uint16_t *hout = malloc(q_count * 2);
    float *fq = malloc(q_count * 4), *fk = malloc(kv_count * 4), *fv = malloc(kv_count * 4);
    float *fout = malloc(q_count * 4);
    int32_t *q_start = malloc((size_t)(c->n_seqs + 1) * 4), *indptr = malloc((size_t)(c->n_seqs + 1) * 4);
    int32_t *indices = malloc((size_t)bt.blocks_per_copy * 4);
    if (rc == OPS_OK && !(hq && hk && hv && hout && fq && fk && fv && fout && q_start && indptr && indices))
        rc = OPS_ERR_NOMEM;
    if (rc == OPS_OK) {
        fill_host(hq, fq, q_count, 11);
        fill_host(hk, fk, kv_count, 12);
        fill_host(hv, fv, kv_count, 13);
        rc = ops_cuda.upload(bt.q, hq, q_count * 2, b->queue);
        if (rc == OPS_OK) rc = ops_cuda.upload(bt.k, hk, kv_count * 2, b->queue);
        if (rc == OPS_OK) rc = ops_cuda.upload(bt.v, hv, kv_count * 2, b->queue);
        // 0xffff is a bf16 NaN: a row the kernel never writes fails the check.
        if (rc == OPS_OK && cudaMemsetAsync(bt.out, 0xff, q_count * 2, b->stream) != cudaSuccess) rc = OPS_ERR_DEVICE;
        if (rc == OPS_OK) rc = ops_cuda.attention(&bt.params[0], b->queue);
        if (rc == OPS_OK) rc = ops_cuda.download(hout, bt.out, q_count * 2, b->queue);
        if (rc == OPS_OK) rc = ops_cuda.download(q_start, bt.d_q_start, (size_t)(c->n_seqs + 1) * 4, b->queue);
        if (rc == OPS_OK) rc = ops_cuda.download(indptr, bt.d_indptr, (size_t)(c->n_seqs + 1) * 4, b->queue);
        if (rc == OPS_OK) rc = ops_cuda.download(indices, bt.d_indices, (size_t)bt.blocks_per_copy * 4, b->queue);
        if (rc == OPS_OK) rc = ops_cuda.sync(b->queue);
    }
    if (rc == OPS_OK) {
        AttentionParams p = bt.params[0];
        p.q = fq;
        p.k_cache = fk;
        p.v_cache = fv;
        p.out = fout;
        p.q_start = q_start;
        p.ctx_len = c->ctx;
        p.kv_indptr = indptr;
        p.kv_indices = indices;
        void *ref_queue = ops_ref.queue_create();
        rc = ops_ref.attention(&p, ref_queue);
        ops_ref.queue_destroy(ref_queue);
    }
    if (rc == OPS_OK) {
        err = 0.0;
        for (size_t i = 0; i < q_count; i++) {
            const double d = fabs((double)bf16_to_f32(hout[i]) - fout[i]);
            if (!(d <= err)) err = isnan(d) ? INFINITY : d;
        }
    } else {
        fprintf(stderr, "bench_attention: check '%s': error %d\n", c->name, rc);
    }
    printf("check %-45s max abs err %.3e%s\n", c->name, err, err > BAD_ERROR ? "  BAD" : "");
    if (!(err <= BAD_ERROR)) b->failures++;
    if (res->n_checks < COUNT(res->checks)) {
        Check *ck = &res->checks[res->n_checks++];
        snprintf(ck->name, sizeof ck->name, "%s", c->name);
        ck->max_abs_err = err;
    }
    free(hq), free(hk), free(hv), free(hout), free(fq), free(fk), free(fv), free(fout);
    free(q_start), free(indptr), free(indices);
    if (bt.q) batch_free(&bt);
}

// ---- sweeps ---------------------------------------------------------------------------------

static bool fits(size_t bytes) {
    size_t free_b = 0, total_b = 0;
    if (ops_cuda_mem_info(&free_b, &total_b) != OPS_OK) return false;
    return bytes <= free_b / 10 * 7;
}

static void bench_one(Bench *b, const char *kind, const Heads *h, int batch, int ctx, int reps, Results *res) {
    const bool prefill = strcmp(kind, "prefill") == 0;
    int *q_len = malloc((size_t)batch * sizeof(int)), *ctxs = malloc((size_t)batch * sizeof(int));
    if (!q_len || !ctxs) {
        b->failures++;
        free(q_len);
        free(ctxs);
        return;
    }
    for (int s = 0; s < batch; s++) {
        q_len[s] = prefill ? ctx : 1;
        ctxs[s] = ctx;
    }
    const size_t kv = kv_bytes_per_copy(batch, ctxs, h->hkv, HEAD_DIM, BLOCK_SIZE);
    const size_t qo = (size_t)batch * (prefill ? ctx : 1) * h->hq * HEAD_DIM * 2 * 2;
    if (!fits(kv + qo)) {
        printf("%-7s %3d/%-3d %5d %6d  skipped: %.1f GB does not fit\n", kind, h->hq, h->hkv, batch, ctx,
               (double)(kv + qo) / 1e9);
        free(q_len);
        free(ctxs);
        return;
    }
    Batch bt;
    int rc = batch_init(b, &bt, batch, q_len, ctxs, h->hq, h->hkv, HEAD_DIM, BLOCK_SIZE, 0, !prefill,
                        (uint64_t)batch * 1000003u + (uint64_t)ctx);
    Row r = {.kind = kind, .hq = h->hq, .hkv = h->hkv, .batch = batch, .ctx = ctx};
    if (rc == OPS_OK) rc = time_attention(b, bt.params, bt.copies, reps, &r.t);
    if (rc != OPS_OK) {
        fprintf(stderr, "bench_attention: %s %d/%d batch %d ctx %d: error %d\n", kind, h->hq, h->hkv, batch, ctx,
                rc);
        b->failures++;
    } else {
        const double secs = r.t.median_us * 1e-6;
        const double pairs = (double)batch * ((double)ctx * (ctx + 1) / 2.0); // q_len = ctx
        r.tflops = prefill ? 4.0 * HEAD_DIM * h->hq * pairs / secs / 1e12 : 0.0;
        r.gbs = (double)kv / secs / 1e9;
        r.ratio = prefill ? r.tflops / TARGET_TFLOPS : (b->copy_gbs > 0 ? r.gbs / b->copy_gbs : 0.0);
        if (prefill)
            printf("%-7s %3d/%-3d %5d %6d %11.1f %11.1f %9.1f %9s %6.1f%%\n", kind, h->hq, h->hkv, batch, ctx,
                   r.t.median_us, r.t.min_us, r.tflops, "-", 100.0 * r.ratio);
        else
            printf("%-7s %3d/%-3d %5d %6d %11.1f %11.1f %9s %9.0f %6.1f%%\n", kind, h->hq, h->hkv, batch, ctx,
                   r.t.median_us, r.t.min_us, "-", r.gbs, 100.0 * r.ratio);
        fflush(stdout);
        add_row(res, &r);
    }
    batch_free(&bt); // a no-op after a failed batch_init
    free(q_len);
    free(ctxs);
}

// ---- main -----------------------------------------------------------------------------------

int main(int argc, char **argv) {
    Options o;
    const int pr = parse_options(argc, argv, &o);
    if (pr != 0) {
        fprintf(stderr, "usage: bench_attention [--mode all|prefill|decode|check] [--quick] [--reps N] "
                        "[--json FILE]\n");
        return pr > 0 ? 0 : 2;
    }
    if (cuda_device_count() == 0) {
        fprintf(stderr, "bench_attention: skipped: no CUDA device\n");
        return 77;
    }
    char device[256] = "unknown";
    cuda_device_describe(0, device, sizeof device);

    static Bench b;
    static Results res;
    b.queue = ops_cuda.queue_create();
    if (!b.queue || !ops_cuda.fill || cudaEventCreate(&b.start) != cudaSuccess ||
        cudaEventCreate(&b.stop) != cudaSuccess) {
        fprintf(stderr, "bench_attention: queue or event creation failed\n");
        return 1;
    }
    b.stream = queue_stream(b.queue);
    b.copy_gbs = measure_copy_gbs(&b);
    printf("# device: %s\n# copy bandwidth (read + write): %.0f GB/s; prefill target %.0f TFLOP/s\n", device,
           b.copy_gbs, TARGET_TFLOPS);

    if (o.check)
        for (int i = 0; i < COUNT(kChecks); i++) run_check(&b, &kChecks[i], &res);

    printf("%-7s %7s %5s %6s %11s %11s %9s %9s %7s\n", "kind", "Hq/Hkv", "batch", "ctx", "median_us", "min_us",
           "TFLOP/s", "GB/s", "%tgt/bw");
    for (int hi = 0; hi < COUNT(kHeads); hi++) {
        if (o.prefill)
            for (int bi = 0; bi < COUNT(kPrefillBatch); bi++)
                for (int ci = 0; ci < COUNT(kPrefillCtx); ci++) {
                    if (o.quick && (bi == 1 || ci == 1)) continue;
                    bench_one(&b, "prefill", &kHeads[hi], kPrefillBatch[bi], kPrefillCtx[ci], o.reps, &res);
                }
        if (o.decode)
            for (int bi = 0; bi < COUNT(kDecodeBatch); bi++)
                for (int ci = 0; ci < COUNT(kDecodeCtx); ci++) {
                    if (o.quick && (bi % 2 == 1 || ci % 2 == 1)) continue;
                    bench_one(&b, "decode", &kHeads[hi], kDecodeBatch[bi], kDecodeCtx[ci], o.reps, &res);
                }
    }

    if (o.json_path && write_json(o.json_path, device, b.copy_gbs, &res) != 0) {
        fprintf(stderr, "bench_attention: cannot write %s\n", o.json_path);
        b.failures++;
    }
    if (b.failures) printf("# %d failure(s)\n", b.failures);
    cudaEventDestroy(b.start);
    cudaEventDestroy(b.stop);
    ops_cuda.queue_destroy(b.queue);
    return b.failures ? 1 : 0;
}
