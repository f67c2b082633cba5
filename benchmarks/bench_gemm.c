// GEMM benchmark: every CudaGemmImpl against cuBLAS on the Llama-2-13B and Llama-2-70B layer
// shapes, decode (M = 1..64) to prefill (M = 512..8192).
//
// For each shape (N, K) and row count M it times ops_cuda.gemm under each implementation
// (ops_cuda_set_gemm; implementations this GPU or shape does not support are skipped), checks
// each result against cuBLAS's, and prints one line per (shape, M, impl):
//   time     median of --reps launches after --warmup, each between two CUDA events
//   TFLOP/s  2 M N K / time
//   GB/s     (N K + M K + M N) * 2 bytes / time: weights, activations, output
//   %bw      GB/s over the copy bandwidth measured in the same run (device-to-device
//            cudaMemcpy, bytes read + written)
//   %peak    TFLOP/s over the best cuBLAS rate at an 8192^3 bf16 GEMM measured in this run
//   xcublas  cuBLAS time / this time (> 1: faster than cuBLAS)
//   err      max |out - cuBLAS| / max |cuBLAS| over the checked elements (bf16 output:
//            ~0.004 is rounding; above 0.02 the line is flagged BAD and the exit status is 1)
// Weights are rotated over enough copies to span > 256 MB, so L2 (50-60 MB) does not hold
// them between launches; inputs are random, never zeros.
//
// Usage: bench_gemm [--models 13b,70b] [--m 1,2,4,...] [--impls cublas,auto,skinny,mma,wgmma]
//                   [--reps N] [--warmup N] [--csv FILE] [--json FILE]
// Exit status: 0, 1 (an error or a wrong result), 2 (usage), 77 (no GPU: skipped).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime.h>

#include "gpu_bench.h"
#include "cuda_device.h"
#include "kernels.h"
#include "ops_cuda.h"

// ---- shapes ---------------------------------------------------------------------------------

typedef struct Shape {
    const char *model, *layer;
    int n, k; // out features, in features
} Shape;

// Llama-2-13B: hidden 5120, 40 heads of 128, intermediate 13824.
// Llama-2-70B: hidden 8192, 64 q heads, 8 kv heads of 128, intermediate 28672.
static const Shape kShapes[] = {
    {"13b", "qkv", 3 * 5120, 5120},         {"13b", "o", 5120, 5120},
    {"13b", "gate_up", 2 * 13824, 5120},    {"13b", "down", 5120, 13824},
    {"70b", "qkv", (64 + 2 * 8) * 128, 8192}, {"70b", "o", 8192, 8192},
    {"70b", "gate_up", 2 * 28672, 8192},    {"70b", "down", 8192, 28672},
};
enum { N_SHAPES = sizeof kShapes / sizeof kShapes[0] };

static const int kDefaultM[] = {1, 2, 4, 8, 16, 32, 64, 512, 2048, 8192};
enum { MAX_M = 32, MAX_REPS = 1000 };

#define ROTATE_BYTES ((size_t)256 << 20) // weight copies span at least this much
#define MAX_W_COPIES 8
#define BAD_ERROR 0.02

// ---- options --------------------------------------------------------------------------------

typedef struct Options {
    int m[MAX_M], n_m;
    bool model_13b, model_70b;
    bool impl_on[CUDA_GEMM_IMPL_COUNT];
    int reps, warmup;
    const char *csv_path, *json_path;
} Options;

static int parse_positive(const char *s, int *out) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!s[0] || *end || v < 1 || v > 1 << 24) return -1;
    *out = (int)v;
    return 0;
}

static int parse_m_list(const char *s, Options *o) {
    char buf[512];
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    o->n_m = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->n_m == MAX_M || parse_positive(tok, &o->m[o->n_m]) != 0) return -1;
        o->n_m++;
    }
    return o->n_m > 0 ? 0 : -1;
}

static int parse_models(const char *s, Options *o) {
    o->model_13b = strstr(s, "13b") != NULL;
    o->model_70b = strstr(s, "70b") != NULL;
    return o->model_13b || o->model_70b ? 0 : -1;
}

static int parse_impls(const char *s, Options *o) {
    char buf[256];
    if (strlen(s) >= sizeof buf) return -1;
    strcpy(buf, s);
    memset(o->impl_on, 0, sizeof o->impl_on);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int found = -1;
        for (int i = 0; i < CUDA_GEMM_IMPL_COUNT; i++)
            if (strcmp(tok, cuda_gemm_impl_name((CudaGemmImpl)i)) == 0) found = i;
        if (found < 0) return -1;
        o->impl_on[found] = true;
    }
    o->impl_on[CUDA_GEMM_CUBLAS] = true; // the reference for every other line
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_gemm [--models 13b,70b] [--m 1,2,4,8,...] "
                    "[--impls NAME,...] [--reps N] [--warmup N] [--csv FILE] [--json FILE]\n"
                    "impl names:");
    for (int i = 0; i < CUDA_GEMM_IMPL_COUNT; i++)
        fprintf(stderr, " %s", cuda_gemm_impl_name((CudaGemmImpl)i));
    fprintf(stderr, "\n");
}

static int parse_options(int argc, char **argv, Options *o) {
    memset(o, 0, sizeof *o);
    memcpy(o->m, kDefaultM, sizeof kDefaultM);
    o->n_m = (int)(sizeof kDefaultM / sizeof kDefaultM[0]);
    o->model_13b = o->model_70b = true;
    for (int i = 0; i < CUDA_GEMM_IMPL_COUNT; i++) o->impl_on[i] = true;
    o->reps = 20;
    o->warmup = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
        if (!v) bad = 1;
        else if (strcmp(a, "--m") == 0) bad = parse_m_list(v, o);
        else if (strcmp(a, "--models") == 0) bad = parse_models(v, o);
        else if (strcmp(a, "--impls") == 0) bad = parse_impls(v, o);
        else if (strcmp(a, "--reps") == 0) bad = parse_positive(v, &o->reps) || o->reps > MAX_REPS;
        else if (strcmp(a, "--warmup") == 0) bad = parse_positive(v, &o->warmup);
        else if (strcmp(a, "--csv") == 0) o->csv_path = v;
        else if (strcmp(a, "--json") == 0) o->json_path = v;
        else bad = 1;
        if (bad) {
            fprintf(stderr, "bench_gemm: bad argument '%s%s%s'\n", a, v ? " " : "", v ? v : "");
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

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// Random bf16 in [-scale, scale): a xorshift stream, never zeros.
static void fill_random(uint16_t *p, size_t count, uint64_t seed, float scale) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < count; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        const float u = (float)(s >> 40) * (1.0f / 16777216.0f); // [0, 1)
        p[i] = f32_to_bf16((2.0f * u - 1.0f) * scale);
    }
}

typedef struct Timing {
    double median_us, min_us;
} Timing;

typedef struct Bench {
    void *queue;
    cudaStream_t stream;
    cudaEvent_t ev[2 * MAX_REPS];
    float times[MAX_REPS];
} Bench;

// Times p on the queue's current GEMM implementation, rotating p->w over w_copies.
// Returns the OpsStatus of the first failing call (nothing timed), or OPS_OK.
static int time_gemm(Bench *b, GemmParams p, void *const *w_copies, int n_w, int warmup, int reps,
                     Timing *t) {
    const double t0 = now_ms();
    for (int i = 0; i < warmup; i++) {
        p.w = w_copies[i % n_w];
        const int rc = ops_cuda.gemm(&p, b->queue);
        if (rc != OPS_OK) return rc;
    }
    if (ops_cuda.sync(b->queue) != OPS_OK) return OPS_ERR_DEVICE;
    // About two seconds at most per line, at least five launches.
    const double per_launch = (now_ms() - t0) / warmup;
    if (per_launch > 0 && reps > 5 && per_launch * reps > 2000.0) {
        reps = (int)(2000.0 / per_launch);
        if (reps < 5) reps = 5;
    }
    for (int r = 0; r < reps; r++) {
        p.w = w_copies[r % n_w];
        cudaEventRecord(b->ev[2 * r], b->stream);
        const int rc = ops_cuda.gemm(&p, b->queue);
        cudaEventRecord(b->ev[2 * r + 1], b->stream);
        if (rc != OPS_OK) return rc;
    }
    if (cudaEventSynchronize(b->ev[2 * reps - 1]) != cudaSuccess) return OPS_ERR_DEVICE;
    for (int r = 0; r < reps; r++)
        if (cudaEventElapsedTime(&b->times[r], b->ev[2 * r], b->ev[2 * r + 1]) != cudaSuccess)
            return OPS_ERR_DEVICE;
    qsort(b->times, reps, sizeof(float), cmp_float);
    t->median_us = 1e3 * (reps % 2 ? b->times[reps / 2]
                                   : 0.5 * (b->times[reps / 2 - 1] + b->times[reps / 2]));
    t->min_us = 1e3 * b->times[0];
    return OPS_OK;
}

// Copy bandwidth (bytes read + written per second, GB/s) on the benchmark's stream.
static double measure_copy_gbs(Bench *b) { return gpu_copy_bandwidth_gbs(b->stream); }

// cuBLAS TFLOP/s of an 8192^3 bf16 GEMM on random data (the compute ceiling).
static double measure_peak_tflops(Bench *b) {
    const int s = 8192;
    const size_t count = (size_t)s * s, bytes = count * 2;
    uint16_t *host = malloc(bytes);
    void *x = ops_cuda.alloc(bytes), *w = ops_cuda.alloc(bytes), *out = ops_cuda.alloc(bytes);
    double tflops = 0.0;
    if (host && x && w && out && ops_cuda_set_gemm(b->queue, CUDA_GEMM_CUBLAS) == OPS_OK) {
        fill_random(host, count, 7, 1.0f);
        int rc = ops_cuda.upload(x, host, bytes, b->queue);
        if (rc == OPS_OK) rc = ops_cuda.upload(w, host, bytes, b->queue);
        if (rc == OPS_OK) rc = ops_cuda.sync(b->queue);
        GemmParams p = {.x = x, .w = w, .w_dtype = DT_BF16, .out = out, .m = s, .n = s, .k = s};
        Timing t;
        if (rc == OPS_OK && time_gemm(b, p, &w, 1, 3, 10, &t) == OPS_OK)
            tflops = 2.0 * s * (double)s * s / (t.median_us * 1e-6) / 1e12;
    }
    free(host);
    ops_cuda.free(x);
    ops_cuda.free(w);
    ops_cuda.free(out);
    return tflops;
}

// max |out - ref| / max |ref| over the rows checked (all rows up to 64 M elements, then
// every stride-th row); NaN anywhere in out gives INFINITY.
static double max_rel_error(const uint16_t *out, const uint16_t *ref, int m, int n) {
    const size_t total = (size_t)m * n, budget = (size_t)64 << 20;
    const int stride = total > budget ? (int)((total + budget - 1) / budget) : 1;
    double max_diff = 0.0, max_ref = 0.0;
    for (int r = 0; r < m; r += stride) {
        const uint16_t *o = out + (size_t)r * n, *e = ref + (size_t)r * n;
        for (int c = 0; c < n; c++) {
            const double a = bf16_to_f32(o[c]), b = bf16_to_f32(e[c]);
            if (isnan(a) || isinf(a)) return INFINITY;
            const double d = fabs(a - b);
            if (d > max_diff) max_diff = d;
            if (fabs(b) > max_ref) max_ref = fabs(b);
        }
    }
    return max_ref > 0.0 ? max_diff / max_ref : max_diff;
}

// ---- results --------------------------------------------------------------------------------

typedef struct Row {
    const Shape *shape;
    int m;
    CudaGemmImpl impl;
    Timing t;
    double tflops, gbs, frac_bw, frac_peak, vs_cublas, err;
} Row;

static void print_header(void) {
    printf("%-5s %-8s %5s %6s %6s %-7s %10s %8s %8s %6s %6s %8s %9s\n", "model", "layer", "M",
           "N", "K", "impl", "time_us", "TFLOP/s", "GB/s", "%bw", "%peak", "xcublas", "err");
}

static void print_row(const Row *r) {
    printf("%-5s %-8s %5d %6d %6d %-7s %10.1f %8.1f %8.0f %5.1f%% %5.1f%% %8.3f %9.2e%s\n",
           r->shape->model, r->shape->layer, r->m, r->shape->n, r->shape->k,
           cuda_gemm_impl_name(r->impl), r->t.median_us, r->tflops, r->gbs, 100.0 * r->frac_bw,
           100.0 * r->frac_peak, r->vs_cublas, r->err, r->err > BAD_ERROR ? "  BAD" : "");
    fflush(stdout);
}

static int write_csv(const char *path, const Row *rows, int n_rows) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "model,layer,m,n,k,impl,time_us,min_us,tflops,gbs,frac_bw,frac_peak,vs_cublas,"
               "max_rel_err\n");
    for (int i = 0; i < n_rows; i++) {
        const Row *r = &rows[i];
        fprintf(f, "%s,%s,%d,%d,%d,%s,%.3f,%.3f,%.3f,%.1f,%.4f,%.4f,%.4f,%.3e\n", r->shape->model,
                r->shape->layer, r->m, r->shape->n, r->shape->k, cuda_gemm_impl_name(r->impl),
                r->t.median_us, r->t.min_us, r->tflops, r->gbs, r->frac_bw, r->frac_peak,
                r->vs_cublas, r->err);
    }
    return fclose(f) == 0 ? 0 : -1;
}

static int write_json(const char *path, const char *device, double copy_gbs, double peak_tflops,
                      const Row *rows, int n_rows) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "{\n  \"device\": \"%s\",\n  \"copy_gbs\": %.1f,\n  \"peak_tflops\": %.1f,\n"
               "  \"results\": [\n", device, copy_gbs, peak_tflops);
    for (int i = 0; i < n_rows; i++) {
        const Row *r = &rows[i];
        // JSON has no infinity: a NaN result is reported as error 1e30.
        fprintf(f,
                "    {\"model\": \"%s\", \"layer\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, "
                "\"impl\": \"%s\", \"time_us\": %.3f, \"min_us\": %.3f, \"tflops\": %.3f, "
                "\"gbs\": %.1f, \"frac_bw\": %.4f, \"frac_peak\": %.4f, \"vs_cublas\": %.4f, "
                "\"max_rel_err\": %.3e}%s\n",
                r->shape->model, r->shape->layer, r->m, r->shape->n, r->shape->k,
                cuda_gemm_impl_name(r->impl), r->t.median_us, r->t.min_us, r->tflops, r->gbs,
                r->frac_bw, r->frac_peak, r->vs_cublas, isfinite(r->err) ? r->err : 1e30,
                i + 1 < n_rows ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    return fclose(f) == 0 ? 0 : -1;
}

// ---- one shape --------------------------------------------------------------------------------

typedef struct Results {
    Row *rows;
    int n_rows, cap;
    int failures;
} Results;

static void add_row(Results *res, const Row *r) {
    if (res->n_rows == res->cap) {
        const int cap = res->cap ? 2 * res->cap : 256;
        Row *rows = realloc(res->rows, (size_t)cap * sizeof *rows);
        if (!rows) {
            res->failures++;
            return;
        }
        res->rows = rows;
        res->cap = cap;
    }
    res->rows[res->n_rows++] = *r;
}

static void bench_shape(Bench *b, const Options *o, const Shape *s, const bool *impl_ok,
                        double copy_gbs, double peak_tflops, Results *res) {
    int max_m = 0;
    for (int i = 0; i < o->n_m; i++)
        if (o->m[i] > max_m) max_m = o->m[i];
    const size_t w_count = (size_t)s->n * s->k, w_bytes = w_count * 2;
    const size_t x_count = (size_t)max_m * s->k, out_count = (size_t)max_m * s->n;
    int n_w = (int)((ROTATE_BYTES + w_bytes - 1) / w_bytes);
    if (n_w > MAX_W_COPIES) n_w = MAX_W_COPIES;
    if (n_w < 1) n_w = 1;

    void *w[MAX_W_COPIES] = {0};
    void *x = ops_cuda.alloc(x_count * 2), *out = ops_cuda.alloc(out_count * 2);
    uint16_t *host_w = malloc(w_bytes), *host_x = malloc(x_count * 2);
    uint16_t *ref = malloc(out_count * 2), *got = malloc(out_count * 2);
    bool ok = x && out && host_w && host_x && ref && got;
    for (int i = 0; ok && i < n_w; i++) ok = (w[i] = ops_cuda.alloc(w_bytes)) != NULL;
    if (!ok) {
        fprintf(stderr, "bench_gemm: %s %s: out of memory\n", s->model, s->layer);
        res->failures++;
        goto done;
    }
    // w ~ U(-1, 1) / sqrt(K) keeps outputs O(1) at every K.
    fill_random(host_w, w_count, 1000 + (uint64_t)s->n, 1.0f / sqrtf((float)s->k));
    fill_random(host_x, x_count, 2000 + (uint64_t)s->k, 1.0f);
    for (int i = 0; ok && i < n_w; i++) ok = ops_cuda.upload(w[i], host_w, w_bytes, b->queue) == OPS_OK;
    ok = ok && ops_cuda.upload(x, host_x, x_count * 2, b->queue) == OPS_OK;
    ok = ok && ops_cuda.sync(b->queue) == OPS_OK;
    if (!ok) {
        fprintf(stderr, "bench_gemm: %s %s: upload failed\n", s->model, s->layer);
        res->failures++;
        goto done;
    }

    for (int mi = 0; mi < o->n_m; mi++) {
        const int m = o->m[mi];
        const GemmParams p = {.x = x, .w = w[0], .w_dtype = DT_BF16, .out = out, .m = m,
                              .n = s->n, .k = s->k};
        const size_t out_bytes = (size_t)m * s->n * 2;
        const double flops = 2.0 * m * (double)s->n * s->k;
        const double bytes = 2.0 * ((double)s->n * s->k + (double)m * s->k + (double)m * s->n);
        double cublas_us = 0.0;
        // cuBLAS first: its time and output are the reference for the other lines.
        for (int step = 0; step < CUDA_GEMM_IMPL_COUNT; step++) {
            const CudaGemmImpl impl = step == 0 ? CUDA_GEMM_CUBLAS
                                      : step == CUDA_GEMM_CUBLAS ? (CudaGemmImpl)0
                                                                 : (CudaGemmImpl)step;
            if (!o->impl_on[impl] || !impl_ok[impl]) continue;
            if (ops_cuda_set_gemm(b->queue, impl) != OPS_OK) continue;
            Row r = {.shape = s, .m = m, .impl = impl};
            // Poison the output (0xffff is a bf16 NaN) so a kernel that writes nothing fails.
            if (cudaMemsetAsync(out, 0xff, out_bytes, b->stream) != cudaSuccess) {
                res->failures++;
                continue;
            }
            int rc = ops_cuda.gemm(&p, b->queue);
            if (rc == OPS_ERR_UNSUPPORTED) continue;
            if (rc == OPS_OK) rc = ops_cuda.download(impl == CUDA_GEMM_CUBLAS ? ref : got, out,
                                                     out_bytes, b->queue);
            if (rc == OPS_OK) rc = ops_cuda.sync(b->queue);
            if (rc == OPS_OK) rc = time_gemm(b, p, w, n_w, o->warmup, o->reps, &r.t);
            if (rc != OPS_OK) {
                fprintf(stderr, "bench_gemm: %s %s M=%d %s: error %d\n", s->model, s->layer, m,
                        cuda_gemm_impl_name(impl), rc);
                res->failures++;
                if (impl == CUDA_GEMM_CUBLAS) break; // no reference for this M
                continue;
            }
            if (impl == CUDA_GEMM_CUBLAS) cublas_us = r.t.median_us;
            r.err = impl == CUDA_GEMM_CUBLAS ? 0.0 : max_rel_error(got, ref, m, s->n);
            r.tflops = flops / (r.t.median_us * 1e-6) / 1e12;
            r.gbs = bytes / (r.t.median_us * 1e-6) / 1e9;
            r.frac_bw = copy_gbs > 0 ? r.gbs / copy_gbs : 0.0;
            r.frac_peak = peak_tflops > 0 ? r.tflops / peak_tflops : 0.0;
            r.vs_cublas = cublas_us > 0 ? cublas_us / r.t.median_us : 0.0;
            if (!(r.err <= BAD_ERROR)) res->failures++;
            print_row(&r);
            add_row(res, &r);
        }
    }
done:
    for (int i = 0; i < n_w; i++) ops_cuda.free(w[i]);
    ops_cuda.free(x);
    ops_cuda.free(out);
    free(host_w);
    free(host_x);
    free(ref);
    free(got);
}

// ---- main -----------------------------------------------------------------------------------

int main(int argc, char **argv) {
    Options o;
    const int pr = parse_options(argc, argv, &o);
    if (pr != 0) {
        usage();
        return pr > 0 ? 0 : 2;
    }
    if (cuda_device_count() == 0) {
        fprintf(stderr, "bench_gemm: skipped: no CUDA device\n");
        return 77;
    }
    char device[256] = "unknown";
    cuda_device_describe(0, device, sizeof device);

    static Bench b; // large event and time arrays: not on the stack
    b.queue = ops_cuda.queue_create();
    if (!b.queue) {
        fprintf(stderr, "bench_gemm: queue_create failed\n");
        return 1;
    }
    b.stream = queue_stream(b.queue);
    for (int i = 0; i < 2 * MAX_REPS; i++) {
        if (cudaEventCreate(&b.ev[i]) != cudaSuccess) {
            fprintf(stderr, "bench_gemm: cudaEventCreate failed\n");
            return 1;
        }
    }
    bool impl_ok[CUDA_GEMM_IMPL_COUNT];
    for (int i = 0; i < CUDA_GEMM_IMPL_COUNT; i++) {
        impl_ok[i] = ops_cuda_set_gemm(b.queue, (CudaGemmImpl)i) == OPS_OK;
        if (!impl_ok[i] && o.impl_on[i])
            printf("# %s: not supported on this GPU, skipped\n", cuda_gemm_impl_name((CudaGemmImpl)i));
    }
    if (!impl_ok[CUDA_GEMM_CUBLAS]) {
        fprintf(stderr, "bench_gemm: the cuBLAS baseline is unavailable\n");
        return 1;
    }

    const double copy_gbs = measure_copy_gbs(&b);
    const double peak_tflops = measure_peak_tflops(&b);
    printf("# device: %s\n# copy bandwidth (read + write): %.0f GB/s; cuBLAS bf16 8192^3: %.1f "
           "TFLOP/s\n", device, copy_gbs, peak_tflops);
    print_header();

    Results res = {0};
    for (int i = 0; i < N_SHAPES; i++) {
        const Shape *s = &kShapes[i];
        if ((strcmp(s->model, "13b") == 0 && !o.model_13b) ||
            (strcmp(s->model, "70b") == 0 && !o.model_70b))
            continue;
        bench_shape(&b, &o, s, impl_ok, copy_gbs, peak_tflops, &res);
    }

    if (o.csv_path && write_csv(o.csv_path, res.rows, res.n_rows) != 0) {
        fprintf(stderr, "bench_gemm: cannot write %s\n", o.csv_path);
        res.failures++;
    }
    if (o.json_path &&
        write_json(o.json_path, device, copy_gbs, peak_tflops, res.rows, res.n_rows) != 0) {
        fprintf(stderr, "bench_gemm: cannot write %s\n", o.json_path);
        res.failures++;
    }
    if (res.failures) printf("# %d failure(s)\n", res.failures);
    for (int i = 0; i < 2 * MAX_REPS; i++) cudaEventDestroy(b.ev[i]);
    ops_cuda.queue_destroy(b.queue);
    free(res.rows);
    return res.failures ? 1 : 0;
}
