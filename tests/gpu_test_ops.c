// GPU op tests: every op of ops_cuda against ops_ref, element by element, on random inputs
// (the pattern of ggml's test-backend-ops).
//
// Inputs are random f32 rounded to bf16, so both backends see the same numbers: ops_ref
// reads them as f32 (weights straight as DT_BF16), ops_cuda as bf16 in device memory.
// Before every CUDA run each output buffer is filled with 0xFF bytes (NaN as bf16 and as
// f32, -1 as int32), so an element a kernel forgot to write fails. Every element is checked:
// NaN/Inf first, then against a per-op tolerance whose reason is written next to it. A
// kernel may decline a shape with OPS_ERR_UNSUPPORTED only where a comment says so; that is
// reported and the case skipped. In order: memory ops, embedding, rmsnorm, gemm (every
// CudaGemmImpl), lm_head, rope_kv_write, silu_mul, attention (prefill, split-KV decode,
// mixed, graph bounds), sample, fill, a graph capture and replay, host-visible bad
// arguments; at the end no sticky device error and no leaked buffer. One line per case
// gives its largest error and the share of the tolerance it used.
//
// Usage: gpu_test_ops [fixtures-dir] [--quick] [--op NAME]
//   --quick  a reduced set of cases, for compute-sanitizer memcheck / racecheck
//   --op     only the tests whose name contains NAME (gemm, attention, sample, ...)
// Exit code 77 (skipped) without the CUDA backend or without a device.
//
// Units: U_BF16 = 2^-8 bounds the relative rounding error of one bf16 store (8-bit
// significand, round to nearest); U_F32 = 2^-24 that of one f32 operation.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dtype.h"
#include "kernels.h"
#include "test_util.h"

#ifdef MYRMEX_HAVE_CUDA
#include "cuda_device.h"
#include "ops_cuda.h"

#define U_F32 (1.0 / 16777216.0)
#define U_BF16 (1.0 / 256.0)

static void *queue;       // the CUDA queue every op runs on
static bool quick;        // --quick: only the cases not marked slow
static int live_buffers;  // device buffers allocated and not yet freed
static int declined;      // cases skipped because a kernel returned OPS_ERR_UNSUPPORTED

// ---- helpers: RNG, host memory, status checks ---------------------------------------------

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *ops_status_name(int rc) {
    static const char *names[] = {"OPS_OK", "OPS_ERR_ARG", "OPS_ERR_UNSUPPORTED", "OPS_ERR_DEVICE",
                                  "OPS_ERR_NOMEM"};
    return rc >= 0 && rc <= OPS_ERR_NOMEM ? names[rc] : "(unknown status)";
}

// CHECK_STATUS of test_util.h names runtime MxStatus codes; ops return OpsStatus.
#define CHECK_OPS(got, want) check_ops((got), (want), __LINE__, #got)
static void check_ops(int got, int want, int line, const char *expr) {
    test_checks++;
    if (got != want) {
        test_failures++;
        fprintf(stderr, "%s:%d: %s returned %s, expected %s\n", __FILE__, line, expr,
                ops_status_name(got), ops_status_name(want));
    }
}

// Whether a case ran: OPS_OK, or OPS_ERR_UNSUPPORTED where `may_decline` (reported, skipped).
static bool op_ran(int rc, bool may_decline, const char *what) {
    if (rc == OPS_ERR_UNSUPPORTED && may_decline) {
        fprintf(stderr, "  %-58s not supported, skipped\n", what);
        declined++;
        return false;
    }
    if (rc != OPS_OK) fprintf(stderr, "  %s: %s\n", what, ops_status_name(rc));
    CHECK(rc == OPS_OK);
    return rc == OPS_OK;
}

// ---- values on both sides, device buffers -------------------------------------------------

// n random numbers that are exact bf16 values: f for ops_ref, h (bf16 bits) for ops_cuda.
typedef struct Vals {
    float *f;
    uint16_t *h;
} Vals;

static Vals vals_random(size_t n, float lo, float hi) {
    Vals v = {xmalloc(n * sizeof(float)), xmalloc(n * sizeof(uint16_t))};
    for (size_t i = 0; i < n; i++) {
        v.h[i] = f32_to_bf16(test_rng_float(lo, hi));
        v.f[i] = bf16_to_f32(v.h[i]);
    }
    return v;
}

static void vals_free(Vals v) {
    free(v.f);
    free(v.h);
}

static void *dev_alloc(size_t bytes) {
    void *p = ops_cuda.alloc(bytes);
    if (!p) {
        fprintf(stderr, "out of device memory (%zu bytes)\n", bytes);
        exit(1);
    }
    live_buffers++;
    return p;
}

static void dev_free(void *p) {
    if (!p) return;
    ops_cuda.free(p);
    live_buffers--;
}

static void *dev_copy(const void *src, size_t bytes) {
    void *d = dev_alloc(bytes);
    CHECK_OPS(ops_cuda.upload(d, src, bytes, queue), OPS_OK);
    return d;
}

static uint8_t *poison_bytes;
static size_t poison_len;

// 0xFF bytes: a NaN as bf16 (0xFFFF) and as f32, -1 as an int32 token id.
static void dev_poison(void *d, size_t bytes) {
    if (bytes > poison_len) {
        free(poison_bytes);
        poison_bytes = xmalloc(bytes);
        memset(poison_bytes, 0xFF, bytes);
        poison_len = bytes;
    }
    CHECK_OPS(ops_cuda.upload(d, poison_bytes, bytes, queue), OPS_OK);
}

static void dev_read(void *dst, const void *d, size_t bytes) {
    CHECK_OPS(ops_cuda.download(dst, d, bytes, queue), OPS_OK);
    CHECK_OPS(ops_cuda.sync(queue), OPS_OK); // also reports an asynchronous kernel fault
}

static float *dev_read_bf16(const void *d, size_t n) {
    uint16_t *h = xmalloc(n * sizeof *h);
    float *f = xmalloc(n * sizeof *f);
    dev_read(h, d, n * sizeof *h);
    for (size_t i = 0; i < n; i++) f[i] = bf16_to_f32(h[i]);
    free(h);
    return f;
}

static bool all_poison(const void *p, size_t bytes) {
    const uint8_t *b = p;
    for (size_t i = 0; i < bytes; i++)
        if (b[i] != 0xFF) return false;
    return true;
}

// Every got[i] must be finite (NaN/Inf checked first: an unwritten element is NaN) and
// within tol[i] of ref[i]. Prints the largest error and its share of the tolerance, or the
// first few misses.
static void expect_close(const char *what, const float *got, const float *ref, const double *tol, size_t n) {
    size_t nonfinite = 0, bad = 0;
    double max_err = 0, max_share = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            if (nonfinite++ < 3) fprintf(stderr, "  %s: element %zu is %g, want %.6g\n", what, i, (double)got[i], (double)ref[i]);
            continue;
        }
        double err = fabs((double)got[i] - (double)ref[i]);
        max_err = err > max_err ? err : max_err;
        max_share = err / tol[i] > max_share ? err / tol[i] : max_share;
        if (!(err <= tol[i]) && bad++ < 5)
            fprintf(stderr, "  %s: element %zu = %.6g, want %.6g (tol %.3g)\n", what, i, (double)got[i], (double)ref[i], tol[i]);
    }
    if (nonfinite || bad) fprintf(stderr, "  %s: %zu NaN/Inf and %zu more wrong of %zu\n", what, nonfinite, bad, n);
    else fprintf(stderr, "  %-58s max err %.3g (%3.0f%% of tol)\n", what, max_err, 100 * max_share);
    CHECK(nonfinite == 0 && bad == 0);
}

// ---- table and memory ---------------------------------------------------------------------

static void test_memory(void) {
    CHECK(strcmp(ops_cuda.name, "cuda") == 0);
    CHECK(ops_cuda.act_dtype == DT_BF16);
    CHECK(!ops_cuda.host_memory);
    enum { N = 1 << 20 };
    test_rng_seed(1);
    uint8_t *src = xmalloc(N), *back = xmalloc(N);
    for (int i = 0; i < N; i++) src[i] = (uint8_t)test_rng_next();
    void *d = dev_copy(src, N);
    dev_read(back, d, N);
    CHECK(memcmp(src, back, N) == 0);
    // pinned staging memory: must stay unchanged until the next sync, which dev_read does
    uint8_t *pinned = ops_cuda.host_alloc(N);
    CHECK(pinned != NULL);
    if (pinned) {
        memset(pinned, 0x5a, N);
        CHECK_OPS(ops_cuda.upload(d, pinned, N, queue), OPS_OK);
        dev_read(back, d, N);
        CHECK(back[0] == 0x5a && memcmp(back, back + 1, N - 1) == 0);
        ops_cuda.host_free(pinned);
    }
    CHECK_OPS(ops_cuda.upload(NULL, src, 1, queue), OPS_ERR_ARG);
    CHECK_OPS(ops_cuda.download(back, NULL, 1, queue), OPS_ERR_ARG);
    CHECK_OPS(ops_cuda.upload(d, src, 1, NULL), OPS_ERR_ARG);
    CHECK_OPS(ops_cuda.upload(d, src, 0, queue), OPS_OK);
    CHECK_OPS(ops_cuda.sync(NULL), OPS_ERR_ARG);
    // A failed allocation returns NULL and leaves no sticky error. (Not under --quick:
    // compute-sanitizer reports the failing cudaMalloc.)
    if (!quick) CHECK(ops_cuda.alloc(SIZE_MAX / 2) == NULL);
    CHECK_OPS(ops_cuda.sync(queue), OPS_OK);
    ops_cuda.free(NULL);
    dev_free(d);
    free(src);
    free(back);
}

// ---- embedding ----------------------------------------------------------------------------

// A bf16 table is copied; f16 and f32 tables are converted to bf16 with one round to nearest
// even, which is deterministic: every element must match bit for bit. Token ids live in
// device memory, so ids out of [0, V) cannot be refused: their rows must be zero.
static void test_embedding(void) {
    static const struct { int T, D, V; DType dt; bool slow; } cases[] = {
        {17, 4096, 3000, DT_BF16, false}, {1, 72, 5, DT_BF16, false},   {54, 32, 301, DT_F16, false},
        {300, 5120, 1000, DT_F32, true},  {64, 64, 128256, DT_BF16, true}, {300, 8192, 97, DT_BF16, true},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (quick && cases[c].slow) continue;
        const int T = cases[c].T, D = cases[c].D, V = cases[c].V;
        const DType dt = cases[c].dt;
        const size_t n = (size_t)T * D, tn = (size_t)V * D;
        char what[160];
        snprintf(what, sizeof what, "embedding T=%d D=%d V=%d %s", T, D, V, dtype_name(dt));
        test_rng_seed(100 + c);
        uint8_t *table = xmalloc(tn * dtype_size(dt));
        for (size_t i = 0; i < tn; i++) {
            float v = test_rng_float(-2, 2);
            if (dt == DT_F32) ((float *)table)[i] = v;
            else ((uint16_t *)table)[i] = dt == DT_F16 ? f32_to_f16(v) : f32_to_bf16(v);
        }
        int32_t *tok = xmalloc((size_t)T * sizeof *tok), *ref_tok = xmalloc((size_t)T * sizeof *tok);
        for (int t = 0; t < T; t++) tok[t] = test_rng_int(0, V - 1);
        if (T >= 17) tok[1] = V, tok[T / 2] = -1, tok[T - 1] = INT32_MAX, tok[3] = INT32_MIN;
        for (int t = 0; t < T; t++) ref_tok[t] = tok[t] >= 0 && tok[t] < V ? tok[t] : 0;
        float *ref = xmalloc(n * sizeof *ref);
        EmbeddingParams rp = {ref_tok, table, dt, ref, T, D, V};
        CHECK_OPS(ops_ref.embedding(&rp, NULL), OPS_OK);

        void *dtok = dev_copy(tok, (size_t)T * sizeof *tok), *dtable = dev_copy(table, tn * dtype_size(dt));
        void *dout = dev_alloc(n * 2);
        dev_poison(dout, n * 2);
        EmbeddingParams p = {dtok, dtable, dt, dout, T, D, V};
        if (op_ran(ops_cuda.embedding(&p, queue), false, what)) {
            uint16_t *got = xmalloc(n * sizeof *got);
            dev_read(got, dout, n * sizeof *got);
            size_t bad = 0;
            for (int t = 0; t < T; t++) {
                bool valid = tok[t] >= 0 && tok[t] < V;
                for (int j = 0; j < D; j++) {
                    uint16_t g = got[(size_t)t * D + j];
                    bool ok = valid ? g == f32_to_bf16(ref[(size_t)t * D + j]) : (g & 0x7fff) == 0;
                    if (!ok && bad++ < 5)
                        fprintf(stderr, "  %s: token %d (id %d) element %d = 0x%04x, want %s\n", what, t, tok[t], j, g,
                                valid ? "the table's" : "0");
                }
            }
            if (bad) fprintf(stderr, "  %s: %zu elements wrong\n", what, bad);
            else fprintf(stderr, "  %-58s exact\n", what);
            CHECK(bad == 0);
            free(got);
        }
        dev_free(dtok);
        dev_free(dtable);
        dev_free(dout);
        free(table);
        free(tok);
        free(ref_tok);
        free(ref);
    }
}

// ---- rmsnorm ------------------------------------------------------------------------------

// Tolerance: one bf16 store (U_BF16 relative) of a result whose f32 computation differs
// between the backends by at most 2 (D/2 + 8) U_F32 relative (the sum of D squares in any
// order, then the mean, rsqrt and two products: the bound test_ops_ref.c proves for one
// backend, twice). With a residual, the kernel may normalise the f32 sum or its bf16
// rounding (what a bf16 PyTorch model does); both are right, so the distance between the
// two references is allowed as well. The residual itself is stored in bf16: one rounding of
// the f32 sum (plus 2 U_F32 should a kernel round the exact sum instead).
static void run_rmsnorm_case(int T, int D, bool res, bool alias, DType wdt, int c) {
    const size_t n = (size_t)T * D;
    const float amp = D == 32 ? 0.1f : 2.0f, eps = D == 32 ? 1e-2f : 1e-5f; // small x, large eps: a misplaced eps shows
    char what[160];
    snprintf(what, sizeof what, "rmsnorm T=%d D=%d %s%s w %s", T, D, res ? "+residual" : "", alias ? " out=x" : "",
             dtype_name(wdt));
    test_rng_seed(200 + (uint64_t)c);
    Vals x = vals_random(n, -amp, amp), r0 = vals_random(n, -amp, amp);
    uint8_t *w = xmalloc((size_t)D * dtype_size(wdt));
    for (int j = 0; j < D; j++) {
        float v = test_rng_float(0.5f, 1.5f);
        if (wdt == DT_F32) ((float *)w)[j] = v;
        else ((uint16_t *)w)[j] = wdt == DT_F16 ? f32_to_f16(v) : f32_to_bf16(v);
    }
    float *ref_res = xmalloc(n * sizeof(float)), *ref = xmalloc(n * sizeof(float)), *ref_b = xmalloc(n * sizeof(float));
    memcpy(ref_res, r0.f, n * sizeof(float));
    RmsNormParams rp = {x.f, res ? ref_res : NULL, w, wdt, ref, T, D, eps};
    CHECK_OPS(ops_ref.rmsnorm(&rp, NULL), OPS_OK);
    memcpy(ref_b, ref, n * sizeof(float));
    if (res) { // the norm of the bf16-rounded sum
        float *hr = xmalloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) hr[i] = bf16_to_f32(f32_to_bf16(ref_res[i]));
        RmsNormParams rb = {hr, NULL, w, wdt, ref_b, T, D, eps};
        CHECK_OPS(ops_ref.rmsnorm(&rb, NULL), OPS_OK);
        free(hr);
    }

    void *dx = dev_copy(x.h, n * 2), *dres = res ? dev_copy(r0.h, n * 2) : NULL;
    void *dw = dev_copy(w, (size_t)D * dtype_size(wdt)), *dout = alias ? dx : dev_alloc(n * 2);
    if (!alias) dev_poison(dout, n * 2);
    RmsNormParams p = {dx, dres, dw, wdt, dout, T, D, eps};
    if (op_ran(ops_cuda.rmsnorm(&p, queue), false, what)) {
        double *tol = xmalloc(n * sizeof *tol);
        float *got = dev_read_bf16(dout, n);
        for (size_t i = 0; i < n; i++) {
            double mag = fmax(fabs(ref[i]), fabs(ref_b[i]));
            tol[i] = (U_BF16 + (D + 16) * U_F32) * mag + fabs((double)ref[i] - ref_b[i]) + 1e-6;
        }
        expect_close(what, got, ref, tol, n);
        free(got);
        if (res) {
            got = dev_read_bf16(dres, n);
            for (size_t i = 0; i < n; i++) tol[i] = (U_BF16 + 2 * U_F32) * fabs(ref_res[i]);
            strcat(what, ": residual");
            expect_close(what, got, ref_res, tol, n);
            free(got);
        }
        free(tol);
    }
    dev_free(dx);
    dev_free(dres);
    dev_free(dw);
    if (!alias) dev_free(dout);
    vals_free(x);
    vals_free(r0);
    free(w);
    free(ref_res);
    free(ref);
    free(ref_b);
}

static void test_rmsnorm(void) {
    static const int dims[] = {32, 72, 5120, 8192}, rows[] = {1, 17, 300};
    int c = 0;
    for (int d = 0; d < 4; d++)
        for (int r = 0; r < 3; r++)
            for (int res = 0; res < 2; res++, c++) {
                if (quick && (d == 0 || d == 3 || r == 2)) continue;
                DType wdt = c % 4 == 3 ? DT_F32 : c % 4 == 2 && d < 2 ? DT_F16 : DT_BF16; // norm weights: any dtype
                run_rmsnorm_case(rows[r], dims[d], res, c % 3 == 1, wdt, c);
            }
    // D not a multiple of 8 takes the scalar kernels: a warp per row (100) and a block per
    // row (1030, past a warp's 1024); D = 40000 is past the 4096 chunks of 8 a block's vector
    // kernel holds in registers, so it falls back to the block-per-row scalar kernel.
    static const struct { int T, D; bool slow; } odd[] = {{17, 100, false}, {54, 1030, false}, {5, 40000, true}};
    for (int i = 0; i < 3; i++)
        for (int res = 0; res < 2; res++, c++) {
            if (quick && odd[i].slow) continue;
            DType wdt = c % 4 == 3 ? DT_F32 : c % 4 == 2 ? DT_F16 : DT_BF16;
            run_rmsnorm_case(odd[i].T, odd[i].D, res, c % 3 == 1, wdt, c);
        }
}

// ---- gemm and lm_head ---------------------------------------------------------------------

// The reference and its error scale: ref = x . w^T by ops_ref, and abs_ref = |x| . |w|^T, the
// sum of |x_k w_k| that bounds every f32 dot product's rounding: (K + 1) U_F32 abs for any
// summation order, with or without FMA (test_ops_ref.c), once per backend. Weights go to
// ops_ref as DT_BF16.
static void gemm_refs(const Vals *x, const int32_t *rows, int m, int x_rows, const Vals *w, int n, int k, float *ref,
                      float *abs_ref) {
    float *ax = xmalloc((size_t)x_rows * k * sizeof(float));
    uint16_t *aw = xmalloc((size_t)n * k * sizeof(uint16_t));
    for (size_t i = 0; i < (size_t)x_rows * k; i++) ax[i] = fabsf(x->f[i]);
    for (size_t i = 0; i < (size_t)n * k; i++) aw[i] = w->h[i] & 0x7fff;
    if (rows) {
        LmHeadParams rp = {x->f, rows, w->h, DT_BF16, ref, m, x_rows, k, n};
        CHECK_OPS(ops_ref.lm_head(&rp, NULL), OPS_OK);
        rp.hidden = ax, rp.w = aw, rp.logits = abs_ref;
        CHECK_OPS(ops_ref.lm_head(&rp, NULL), OPS_OK);
    } else {
        GemmParams rp = {x->f, w->h, DT_BF16, ref, m, n, k};
        CHECK_OPS(ops_ref.gemm(&rp, NULL), OPS_OK);
        rp.x = ax, rp.w = aw, rp.out = abs_ref;
        CHECK_OPS(ops_ref.gemm(&rp, NULL), OPS_OK);
    }
    free(ax);
    free(aw);
}

static const struct { int M, N, K; bool slow; } gemm_shapes[] = {
    {1, 4096, 4096, false}, {1, 128, 72, false},    {2, 301, 145, false},   {8, 5120, 1024, true},
    {17, 301, 145, false},  {33, 1000, 1000, true}, {64, 2048, 512, true},  {65, 512, 256, false},
    {97, 640, 320, true},   {128, 256, 64, false},  {512, 1024, 1024, true}, {1000, 768, 512, true},
    {2048, 512, 2048, true},
    {200, 130, 24, false}, // K under one 64-wide K block; M and N not multiples of 16 (tile tails)
};

// Every implementation on every shape. AUTO and CUBLAS must take every shape; the others may
// decline one (OPS_ERR_UNSUPPORTED), and WGMMA exists only on Hopper. Tolerance: the bf16
// store of the output (U_BF16 relative, of a value itself within the dot-product bound)
// plus the two backends' f32 dot-product bounds.
static void test_gemm(void) {
    bool have[CUDA_GEMM_IMPL_COUNT];
    for (int i = 0; i < CUDA_GEMM_IMPL_COUNT; i++) {
        int rc = ops_cuda_set_gemm(queue, (CudaGemmImpl)i);
        have[i] = rc == OPS_OK;
        if (rc == OPS_ERR_UNSUPPORTED && i != CUDA_GEMM_AUTO && i != CUDA_GEMM_CUBLAS)
            fprintf(stderr, "  gemm %s: not on this GPU, skipped\n", cuda_gemm_impl_name((CudaGemmImpl)i));
        else CHECK_OPS(rc, OPS_OK);
    }
    for (size_t c = 0; c < sizeof gemm_shapes / sizeof gemm_shapes[0]; c++) {
        if (quick && gemm_shapes[c].slow) continue;
        const int M = gemm_shapes[c].M, N = gemm_shapes[c].N, K = gemm_shapes[c].K;
        const size_t n = (size_t)M * N;
        test_rng_seed(300 + c);
        Vals x = vals_random((size_t)M * K, -1, 1), w = vals_random((size_t)N * K, -1, 1);
        float *ref = xmalloc(n * sizeof(float)), *abs_ref = xmalloc(n * sizeof(float));
        gemm_refs(&x, NULL, M, M, &w, N, K, ref, abs_ref);
        double *tol = xmalloc(n * sizeof *tol);
        for (size_t i = 0; i < n; i++) tol[i] = U_BF16 * fabs(ref[i]) + (1 + U_BF16) * 2 * (K + 1) * U_F32 * abs_ref[i] + 1e-6;

        void *dx = dev_copy(x.h, (size_t)M * K * 2), *dw = dev_copy(w.h, (size_t)N * K * 2), *dout = dev_alloc(n * 2);
        for (int i = 0; i < CUDA_GEMM_IMPL_COUNT; i++) {
            if (!have[i]) continue;
            char what[160];
            snprintf(what, sizeof what, "gemm %-6s M=%d N=%d K=%d", cuda_gemm_impl_name((CudaGemmImpl)i), M, N, K);
            CHECK_OPS(ops_cuda_set_gemm(queue, (CudaGemmImpl)i), OPS_OK);
            dev_poison(dout, n * 2);
            GemmParams p = {dx, dw, DT_BF16, dout, M, N, K};
            bool optional = i != CUDA_GEMM_AUTO && i != CUDA_GEMM_CUBLAS;
            if (op_ran(ops_cuda.gemm(&p, queue), optional, what)) {
                float *got = dev_read_bf16(dout, n);
                expect_close(what, got, ref, tol, n);
                free(got);
            }
        }
        CHECK_OPS(ops_cuda_set_gemm(queue, CUDA_GEMM_AUTO), OPS_OK);
        dev_free(dx);
        dev_free(dw);
        dev_free(dout);
        vals_free(x);
        vals_free(w);
        free(ref);
        free(abs_ref);
        free(tol);
    }
}

// f32 logits for rows gathered in any order, repeats included. Tolerance: the two backends'
// f32 dot-product bounds (no bf16 store).
static void test_lm_head(void) {
    static const struct { int R, T, D, V; bool slow; } cases[] = {
        {1, 1, 4096, 32000, true},  {17, 54, 1024, 32000, true}, {64, 100, 64, 128256, true},
        {100, 300, 72, 301, false}, {1, 17, 64, 128256, false}, {17, 17, 2048, 301, false},
        {5, 9, 512, 32000, false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (quick && cases[c].slow) continue;
        const int R = cases[c].R, T = cases[c].T, D = cases[c].D, V = cases[c].V;
        const size_t n = (size_t)R * V;
        char what[160];
        snprintf(what, sizeof what, "lm_head R=%d T=%d D=%d V=%d", R, T, D, V);
        test_rng_seed(400 + c);
        Vals h = vals_random((size_t)T * D, -1, 1), w = vals_random((size_t)V * D, -1, 1);
        int32_t *rows = xmalloc((size_t)R * sizeof *rows);
        for (int r = 0; r < R; r++) rows[r] = test_rng_int(0, T - 1);
        if (R >= 3) rows[R / 2] = rows[0], rows[R - 1] = T - 1, rows[1] = 0; // a repeat, both ends
        float *ref = xmalloc(n * sizeof(float)), *abs_ref = xmalloc(n * sizeof(float));
        gemm_refs(&h, rows, R, T, &w, V, D, ref, abs_ref);
        double *tol = xmalloc(n * sizeof *tol);
        for (size_t i = 0; i < n; i++) tol[i] = 2 * (D + 1) * U_F32 * abs_ref[i] + 1e-6;

        void *dh = dev_copy(h.h, (size_t)T * D * 2), *dw = dev_copy(w.h, (size_t)V * D * 2);
        void *drows = dev_copy(rows, (size_t)R * sizeof *rows), *dlogits = dev_alloc(n * sizeof(float));
        dev_poison(dlogits, n * sizeof(float));
        LmHeadParams p = {dh, drows, dw, DT_BF16, dlogits, R, T, D, V};
        if (op_ran(ops_cuda.lm_head(&p, queue), false, what)) {
            float *got = xmalloc(n * sizeof(float));
            dev_read(got, dlogits, n * sizeof(float));
            expect_close(what, got, ref, tol, n);
            free(got);
        }
        dev_free(dh);
        dev_free(dw);
        dev_free(drows);
        dev_free(dlogits);
        vals_free(h);
        vals_free(w);
        free(rows);
        free(ref);
        free(abs_ref);
        free(tol);
    }
}

// ---- rope_kv_write ------------------------------------------------------------------------

// Tolerance for a rotated element: its bf16 store (U_BF16 relative) plus the f32 rotation on
// each side: cosf/sinf within 2 ulp on the GPU (CUDA's documented bound, positions up to
// 100000 need the accurate functions, not __sinf) and 1 on the CPU, two products and a sum:
// 12 U_F32 (|x0| + |x1|) for both. The angle is the f32 product position * inv_freq, as the
// contract and PyTorch define it. v is copied: exact. Slots no token writes keep their
// poison, tokens with a negative slot write nothing, and head dims 8 and 12 may be declined.
static void test_rope_kv_write(void) {
    static const struct { int T, Hq, Hkv, Dh, max_pos, bs, nb; float base; bool slow; } cases[] = {
        {17, 4, 1, 8, 4096, 1, 40, 10000, false},     {1, 32, 8, 128, 100000, 16, 2, 500000, false},
        {54, 12, 4, 12, 2048, 16, 8, 10000, false},   {97, 8, 8, 128, 100000, 1, 200, 500000, false},
        {300, 32, 8, 64, 100000, 16, 40, 10000, true}, {300, 28, 4, 128, 32768, 16, 32, 1000000, true},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (quick && cases[c].slow) continue;
        const int T = cases[c].T, Hq = cases[c].Hq, Hkv = cases[c].Hkv, Dh = cases[c].Dh;
        const int half = Dh / 2, bs = cases[c].bs, nb = cases[c].nb;
        const size_t q_row = (size_t)Hq * Dh, kv_row = (size_t)Hkv * Dh, qkv_row = q_row + 2 * kv_row;
        const size_t n_slots = (size_t)bs * nb, cache_n = n_slots * kv_row;
        char what[160];
        snprintf(what, sizeof what, "rope_kv_write T=%d Hq=%d Hkv=%d Dh=%d page %d", T, Hq, Hkv, Dh, bs);
        test_rng_seed(500 + c);
        float *inv_freq = xmalloc((size_t)half * sizeof(float));
        for (int i = 0; i < half; i++) inv_freq[i] = 1.0f / powf(cases[c].base, (float)(2 * i) / Dh);
        int32_t *pos = xmalloc((size_t)T * sizeof *pos);
        for (int t = 0; t < T; t++) pos[t] = t == 0 ? 0 : t == 1 ? cases[c].max_pos : test_rng_int(0, cases[c].max_pos);
        // distinct random slots, token 0 always written, about one token in five skipped
        int32_t *perm = xmalloc(n_slots * sizeof *perm);
        for (size_t i = 0; i < n_slots; i++) perm[i] = (int32_t)i;
        test_shuffle(perm, (int)n_slots);
        int64_t *slots = xmalloc((size_t)T * sizeof *slots);
        for (int t = 0; t < T; t++) slots[t] = t > 0 && test_rng_int(0, 4) == 0 ? (t % 2 ? -1 : INT64_MIN + t) : perm[t];
        Vals qkv = vals_random((size_t)T * qkv_row, -2, 2);

        float *ref_q = xmalloc((size_t)T * q_row * sizeof(float));
        float *ref_k = xmalloc(cache_n * sizeof(float)), *ref_v = xmalloc(cache_n * sizeof(float));
        for (size_t i = 0; i < cache_n; i++) ref_k[i] = ref_v[i] = NAN;
        RopeKvWriteParams rp = {qkv.f, ref_q, ref_k, ref_v, pos, slots, inv_freq, T, Hq, Hkv, Dh, bs, nb};
        CHECK_OPS(ops_ref.rope_kv_write(&rp, NULL), OPS_OK);

        void *dqkv = dev_copy(qkv.h, (size_t)T * qkv_row * 2), *dpos = dev_copy(pos, (size_t)T * sizeof *pos);
        void *dslots = dev_copy(slots, (size_t)T * sizeof *slots), *dfreq = dev_copy(inv_freq, (size_t)half * sizeof(float));
        void *dq = dev_alloc((size_t)T * q_row * 2), *dk = dev_alloc(cache_n * 2), *dv = dev_alloc(cache_n * 2);
        dev_poison(dq, (size_t)T * q_row * 2);
        dev_poison(dk, cache_n * 2);
        dev_poison(dv, cache_n * 2);
        RopeKvWriteParams p = {dqkv, dq, dk, dv, dpos, dslots, dfreq, T, Hq, Hkv, Dh, bs, nb};
        if (op_ran(ops_cuda.rope_kv_write(&p, queue), Dh != 64 && Dh != 128, what)) {
            uint16_t *gq = xmalloc((size_t)T * q_row * 2), *gk = xmalloc(cache_n * 2), *gv = xmalloc(cache_n * 2);
            dev_read(gq, dq, (size_t)T * q_row * 2);
            dev_read(gk, dk, cache_n * 2);
            dev_read(gv, dv, cache_n * 2);
            // q of every token and k of written tokens, compared pair by pair
            size_t cap = (size_t)T * (q_row + kv_row), m = 0;
            float *got = xmalloc(cap * sizeof(float)), *ref = xmalloc(cap * sizeof(float));
            double *tol = xmalloc(cap * sizeof *tol);
            for (int t = 0; t < T; t++) {
                const float *in = qkv.f + (size_t)t * qkv_row;
                int heads = slots[t] < 0 ? Hq : Hq + Hkv;
                for (int h = 0; h < heads; h++)
                    for (int i = 0; i < Dh; i++) {
                        size_t a = (size_t)h * Dh + i, lo = (size_t)h * Dh + (size_t)(i % half);
                        size_t at = h < Hq ? (size_t)t * q_row + a : (size_t)slots[t] * kv_row + (a - q_row);
                        got[m] = bf16_to_f32(h < Hq ? gq[at] : gk[at]);
                        ref[m] = h < Hq ? ref_q[at] : ref_k[at];
                        tol[m] = U_BF16 * fabs(ref[m]) + 12 * U_F32 * (fabs(in[lo]) + fabs(in[lo + half]));
                        m++;
                    }
            }
            char what_qk[180];
            snprintf(what_qk, sizeof what_qk, "%s: q, k", what);
            expect_close(what_qk, got, ref, tol, m);
            // v copied exactly; slots no token maps to untouched (k and v)
            char *written = calloc(n_slots, 1);
            size_t bad = 0;
            for (int t = 0; t < T; t++) {
                if (slots[t] < 0) continue;
                written[slots[t]] = 1;
                bad += memcmp(gv + slots[t] * kv_row, qkv.h + t * qkv_row + q_row + kv_row, kv_row * 2) != 0;
            }
            for (size_t sl = 0; sl < n_slots; sl++)
                if (!written[sl]) bad += !all_poison(gk + sl * kv_row, kv_row * 2) || !all_poison(gv + sl * kv_row, kv_row * 2);
            if (bad) fprintf(stderr, "  %s: %zu slots with a wrong v or written though no token maps there\n", what, bad);
            CHECK(bad == 0);
            // position 0 (token 0) is the identity: bit for bit
            CHECK(memcmp(gq, qkv.h, q_row * 2) == 0);
            CHECK(memcmp(gk + slots[0] * kv_row, qkv.h + q_row, kv_row * 2) == 0);
            free(written);
            free(got);
            free(ref);
            free(tol);
            free(gq);
            free(gk);
            free(gv);
        }
        void *bufs[] = {dqkv, dpos, dslots, dfreq, dq, dk, dv};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dev_free(bufs[i]);
        vals_free(qkv);
        free(inv_freq);
        free(pos);
        free(perm);
        free(slots);
        free(ref_q);
        free(ref_k);
        free(ref_v);
    }
}

// ---- silu_mul -----------------------------------------------------------------------------

// Tolerance: the bf16 store (U_BF16) plus the f32 formula on both sides: 6 U_F32 for
// ops_ref (expf within an ulp, a sum, a quotient, a product) and up to 32 U_F32 for a kernel
// with the fast __expf (2 + 1.16 |x| ulp for |x| <= 8) and a fast division; 1e-6 absolute
// for silu(-100), which underflows to a subnormal or zero.
static void test_silu_mul(void) {
    static const struct { int T, I; bool fused, slow; } cases[] = {
        {17, 145, true, false}, {54, 97, false, false}, {1, 14336, true, false},
        {300, 2048, true, true}, {300, 145, true, true},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (quick && cases[c].slow) continue;
        // fused: one [T, 2I] gate|up buffer (the fused projection); else two [T, I] buffers
        const int T = cases[c].T, I = cases[c].I, stride = cases[c].fused ? 2 * I : I;
        const size_t n = (size_t)T * I, in_n = (size_t)T * stride;
        char what[160];
        snprintf(what, sizeof what, "silu_mul T=%d I=%d %s", T, I, cases[c].fused ? "gate|up" : "gate, up");
        test_rng_seed(600 + c);
        Vals g = vals_random(in_n, -8, 8), u = vals_random(in_n, -4, 4);
        const float special[3] = {-100, 100, 0}; // exp overflows to inf: silu is -0, not NaN
        for (int i = 0; i < 3 && i < I; i++) g.h[i] = f32_to_bf16(special[i]), g.f[i] = special[i];
        if (cases[c].fused) // up is the second half of each gate row
            for (int t = 0; t < T; t++)
                for (int j = 0; j < I; j++) g.h[(size_t)t * stride + I + j] = u.h[(size_t)t * I + j],
                                            g.f[(size_t)t * stride + I + j] = u.f[(size_t)t * I + j];
        const float *up_f = cases[c].fused ? g.f + I : u.f;
        float *ref = xmalloc(n * sizeof(float));
        SiluMulParams rp = {g.f, up_f, ref, T, I, stride};
        CHECK_OPS(ops_ref.silu_mul(&rp, NULL), OPS_OK);
        double *tol = xmalloc(n * sizeof *tol);
        for (size_t i = 0; i < n; i++) tol[i] = (U_BF16 + 40 * U_F32) * fabs(ref[i]) + 1e-6;

        uint16_t *dg = dev_copy(g.h, in_n * 2), *du = cases[c].fused ? NULL : dev_copy(u.h, in_n * 2);
        void *dout = dev_alloc(n * 2);
        dev_poison(dout, n * 2);
        SiluMulParams p = {dg, cases[c].fused ? dg + I : du, dout, T, I, stride};
        if (op_ran(ops_cuda.silu_mul(&p, queue), false, what)) {
            float *got = dev_read_bf16(dout, n);
            expect_close(what, got, ref, tol, n);
            free(got);
        }
        dev_free(dg);
        dev_free(du);
        dev_free(dout);
        vals_free(g);
        vals_free(u);
        free(ref);
        free(tol);
    }
}

// ---- attention ----------------------------------------------------------------------------

#define MAX_SEQS 17

typedef struct AttnCase {
    const char *name;
    int n_seqs;
    int n_q[MAX_SEQS], ctx[MAX_SEQS]; // per sequence, unless decode_max_ctx > 0
    int decode_max_ctx; // > 0: every sequence decodes one token; ctx random in [1, this], the last exactly this
    int Hq, Hkv, Dh, bs, window;
    float q_amp;            // queries in [-q_amp, q_amp]: larger makes the softmax peakier
    int q_bound, ctx_bound; // > 0: max_q_len / max_ctx_len passed (a graph bucket's); else exact
    bool slow;
} AttnCase;

static const AttnCase attn_cases[] = {
    // the cases of test_ops_ref.c
    {"decode x17, gqa 8, dh 64, page 16", 17, {0}, {0}, 300, 8, 1, 64, 16, 0, 1, 0, 0, false},
    {"prefill 1/54/97, mha, dh 12, page 1", 3, {1, 54, 97}, {1, 54, 97}, 0, 4, 4, 12, 1, 0, 1, 0, 0, false},
    {"prefill 333, mha, dh 64, page 16", 1, {333}, {333}, 0, 8, 8, 64, 16, 0, 2, 0, 0, true},
    {"chunked prefill + empty seq, gqa 4, dh 128, window 64", 5, {37, 54, 1, 0, 100}, {300, 54, 97, 5, 333}, 0,
     8, 2, 128, 16, 64, 2, 0, 0, false},
    {"prefill 310/17, gqa 4, dh 8, window 32", 2, {310, 17}, {310, 40}, 0, 8, 2, 8, 16, 32, 4, 0, 0, false},
    {"decode x17, window 7, page 1, dh 128", 17, {0}, {0}, 97, 4, 1, 128, 1, 7, 1, 0, 0, false},
    {"long decodes 1000/777, gqa 8, peaky", 2, {1, 3}, {1000, 777}, 0, 8, 1, 64, 16, 0, 8, 0, 0, true},
    // long contexts, head dims, the split-KV decode kernel, mixed batches, graph bounds
    {"prefill 1500, gqa 8, dh 128, page 16", 1, {1500}, {1500}, 0, 8, 1, 128, 16, 0, 2, 0, 0, true},
    {"decode x17 up to 4000, gqa 4, dh 128, page 16", 17, {0}, {0}, 4000, 16, 4, 128, 16, 0, 1, 0, 0, true},
    {"decode x1 4000 (split-KV), mha, dh 64, page 1", 1, {0}, {0}, 4000, 8, 8, 64, 1, 0, 2, 0, 0, true},
    {"decode x17, dh 12, gqa 4, page 16, window 100", 17, {0}, {0}, 1000, 8, 2, 12, 16, 100, 2, 0, 0, true},
    {"decode x17, dh 8, mha, page 1", 17, {0}, {0}, 54, 2, 2, 8, 1, 0, 1, 0, 0, false},
    {"mixed x17: decodes + chunks, gqa 4, dh 64, page 1", 17,
     {1, 1, 54, 1, 97, 1, 1, 17, 1, 1, 1, 3, 1, 1, 200, 1, 1},
     {300, 1, 54, 999, 200, 5, 77, 17, 1, 1500, 33, 3, 64, 16, 400, 2, 4000}, 0, 16, 4, 64, 1, 0, 2, 0, 0, false},
    {"2-token steps x5, gqa 8 (16 rows: decode kernel)", 5, {2, 1, 2, 2, 1}, {300, 2, 1000, 54, 97}, 0, 8, 1,
     128, 16, 0, 2, 0, 0, false},
    {"decode x17, graph bound ctx 16384, gqa 4, dh 128", 17, {0}, {0}, 300, 8, 2, 128, 16, 0, 1, 0, 16384, false},
    {"mixed, graph bounds q 256 ctx 8192, gqa 8, dh 128", 4, {1, 97, 1, 30}, {500, 97, 1, 2000}, 0, 8, 1, 128,
     16, 0, 1, 256, 8192, false},
    {"window 1024: chunk 500 of 1500 + decodes, gqa 8, dh 128", 3, {500, 1, 1}, {1500, 4000, 1030}, 0, 8, 1,
     128, 16, 1024, 2, 0, 0, true},
    // the tile kernels' other head dims (16, 32, 96; 256 keeps Q in shared memory and halves
    // the key tile): a prefill (prefill kernel) and a decode over up to 500 keys (decode
    // kernel, split KV) each
    {"prefill 54/97, gqa 4, dh 16, page 16", 2, {54, 97}, {54, 97}, 0, 8, 2, 16, 16, 0, 2, 0, 0, false},
    {"decode x17, gqa 4, dh 16, page 1", 17, {0}, {0}, 500, 8, 2, 16, 1, 0, 2, 0, 0, false},
    {"prefill 54/97, gqa 4, dh 32, page 16", 2, {54, 97}, {54, 97}, 0, 8, 2, 32, 16, 0, 2, 0, 0, false},
    {"decode x17, gqa 4, dh 32, page 1", 17, {0}, {0}, 500, 8, 2, 32, 1, 0, 2, 0, 0, false},
    {"prefill 54/97, gqa 4, dh 96, page 16", 2, {54, 97}, {54, 97}, 0, 8, 2, 96, 16, 0, 2, 0, 0, false},
    {"decode x17, gqa 4, dh 96, page 1", 17, {0}, {0}, 500, 8, 2, 96, 1, 0, 1, 0, 0, false},
    {"prefill 54/97, gqa 4, dh 256, page 16", 2, {54, 97}, {54, 97}, 0, 8, 2, 256, 16, 0, 1, 0, 0, false},
    {"decode x17, gqa 4, dh 256, page 1", 17, {0}, {0}, 500, 8, 2, 256, 1, 0, 1, 0, 0, false},
    // GQA 16: the whole group of a decode fills the decode kernel's 16-row tile
    {"decode x17, gqa 16 (Hq 16, Hkv 1), dh 128, page 16", 17, {0}, {0}, 500, 16, 1, 128, 16, 0, 1, 0, 0, false},
};

// Tolerance: flash attention rounds the softmax weights to bf16 before the P.V product
// (moving the output by up to U_BF16 max|v|) and stores bf16 (U_BF16 |ref|); 1e-3 absolute
// covers the f32 score, exp and sum differences (test_ops_ref.c bounds each below 1e-4 for
// these amplitudes and lengths). The cache comes uploaded directly (bf16 on CUDA, f32 on
// ref, the same values); slots no sequence owns, including the tails of partly filled
// pages, hold NaN, as a stale page may: reading one must not reach the output. No head dim
// up to 256 may be declined: the tile kernels take 16, 32, 64, 96, 128 and 256, the generic
// kernel every other; larger ones are declined (bad_attention checks that).
static void run_attention_case(const AttnCase *ac, uint64_t seed) {
    test_rng_seed(seed);
    const int S = ac->n_seqs, Hq = ac->Hq, Hkv = ac->Hkv, Dh = ac->Dh, bs = ac->bs;
    const size_t row = (size_t)Hkv * Dh; // elements per token in K or V
    int32_t q_start[MAX_SEQS + 1] = {0}, ctx_len[MAX_SEQS], kv_indptr[MAX_SEQS + 1] = {0};
    size_t kv_off[MAX_SEQS + 1] = {0}; // sequence s's rows in the dense K, V
    int max_q = 0, max_ctx = 0;
    for (int s = 0; s < S; s++) {
        int n_q = ac->decode_max_ctx ? 1 : ac->n_q[s];
        ctx_len[s] = !ac->decode_max_ctx ? ac->ctx[s] : s == S - 1 ? ac->decode_max_ctx : test_rng_int(1, ac->decode_max_ctx);
        q_start[s + 1] = q_start[s] + n_q;
        kv_indptr[s + 1] = kv_indptr[s] + (ctx_len[s] + bs - 1) / bs;
        kv_off[s + 1] = kv_off[s] + (size_t)ctx_len[s];
        max_q = n_q > max_q ? n_q : max_q;
        max_ctx = ctx_len[s] > max_ctx ? ctx_len[s] : max_ctx;
    }
    const int T = q_start[S], num_blocks = kv_indptr[S] + 3; // 3 blocks stay unused
    const size_t total_ctx = kv_off[S], cache_n = (size_t)num_blocks * bs * row, n_out = (size_t)T * Hq * Dh;
    int32_t *kv_indices = xmalloc((size_t)num_blocks * sizeof *kv_indices); // scattered pages
    for (int b = 0; b < num_blocks; b++) kv_indices[b] = b;
    test_shuffle(kv_indices, num_blocks);

    Vals K = vals_random(total_ctx * row, -1, 1), V = vals_random(total_ctx * row, -1, 1);
    float *kc = xmalloc(cache_n * sizeof(float)), *vc = xmalloc(cache_n * sizeof(float));
    uint16_t *kh = xmalloc(cache_n * 2), *vh = xmalloc(cache_n * 2);
    for (size_t i = 0; i < cache_n; i++) kc[i] = vc[i] = NAN, kh[i] = vh[i] = 0xFFFF;
    double max_v = 0;
    for (int s = 0; s < S; s++)
        for (int j = 0; j < ctx_len[s]; j++) {
            size_t slot = (size_t)kv_indices[kv_indptr[s] + j / bs] * bs + (size_t)(j % bs), src = (kv_off[s] + j) * row;
            memcpy(kc + slot * row, K.f + src, row * sizeof(float));
            memcpy(vc + slot * row, V.f + src, row * sizeof(float));
            memcpy(kh + slot * row, K.h + src, row * 2);
            memcpy(vh + slot * row, V.h + src, row * 2);
            for (size_t d = 0; d < row; d++) max_v = fmax(max_v, fabs(V.f[src + d]));
        }
    Vals q = vals_random(n_out, -ac->q_amp, ac->q_amp);
    const int q_bound = ac->q_bound ? ac->q_bound : max_q, ctx_bound = ac->ctx_bound ? ac->ctx_bound : max_ctx;
    const float scale = 1.0f / sqrtf((float)Dh);
    float *ref = xmalloc(n_out * sizeof(float));
    AttentionParams rp = {q.f, kc, vc, ref, q_start, ctx_len, kv_indptr, kv_indices, S, T, Hq, Hkv, Dh, bs,
                          num_blocks, ac->window, scale, q_bound, ctx_bound};
    CHECK_OPS(ops_ref.attention(&rp, NULL), OPS_OK);

    void *dq = dev_copy(q.h, n_out * 2), *dk = dev_copy(kh, cache_n * 2), *dv = dev_copy(vh, cache_n * 2);
    void *dqs = dev_copy(q_start, (size_t)(S + 1) * 4), *dctx = dev_copy(ctx_len, (size_t)S * 4);
    void *dptr = dev_copy(kv_indptr, (size_t)(S + 1) * 4), *dind = dev_copy(kv_indices, (size_t)num_blocks * 4);
    void *dout = dev_alloc(n_out * 2);
    dev_poison(dout, n_out * 2);
    AttentionParams p = {dq, dk, dv, dout, dqs, dctx, dptr, dind, S, T, Hq, Hkv, Dh, bs,
                         num_blocks, ac->window, scale, q_bound, ctx_bound};
    char what[160];
    snprintf(what, sizeof what, "attention %s", ac->name);
    if (op_ran(ops_cuda.attention(&p, queue), Dh > 256, what)) {
        float *got = dev_read_bf16(dout, n_out);
        double *tol = xmalloc(n_out * sizeof *tol);
        for (size_t i = 0; i < n_out; i++) tol[i] = U_BF16 * max_v + U_BF16 * fabs(ref[i]) + 1e-3;
        expect_close(what, got, ref, tol, n_out);
        free(got);
        free(tol);
    }
    void *bufs[] = {dq, dk, dv, dqs, dctx, dptr, dind, dout};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dev_free(bufs[i]);
    vals_free(K);
    vals_free(V);
    vals_free(q);
    free(kv_indices);
    free(kc);
    free(vc);
    free(kh);
    free(vh);
    free(ref);
}

static void test_attention(void) {
    for (size_t c = 0; c < sizeof attn_cases / sizeof attn_cases[0]; c++)
        if (!quick || !attn_cases[c].slow) run_attention_case(&attn_cases[c], 800 + c);
}

// ---- sample -------------------------------------------------------------------------------

// One row of logits shaped like a language model's: n_cand random ids get logits in
// [0, spread], every other id one in [-60, -40], whose weights (below e^-30 of the top) are
// too small to move an f32 sum, or -inf when `masked` (a vocabulary mask: weight 0). (Over
// a flat distribution on a large vocabulary, the rounding of the running f32 sums alone
// moves the drawn token between two correct backends.) n_cand >= V: all ids in [0, spread].
static void lm_logits(float *l, int V, int n_cand, float spread, bool masked) {
    for (int i = 0; i < V; i++)
        l[i] = n_cand >= V ? test_rng_float(0, spread) : masked ? -INFINITY : test_rng_float(-60, -40);
    for (int k = 0; n_cand < V && k < n_cand; k++) l[test_rng_int(0, V - 1)] = test_rng_float(0, spread);
}

typedef struct WeightId {
    double w, err; // a token's exact weight, and how far a correct kernel's may be from it
    int32_t id;
} WeightId;

static int by_weight_then_id(const void *a, const void *b) {
    const WeightId *x = a, *y = b;
    if (x->w != y->w) return x->w > y->w ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

// Whether `got` is a token the SampleParams contract allows for this row, up to a correct
// kernel's rounding. Computed in double from the exact weights w_i = exp(x_i),
// x_i = (l_i - max) / T, in the contract's order with running sums c_j. A kernel's f32
// weight may be off by err_i = (5e-7 + 2.4e-7 |x_i|) w_i (twice expf's 2 ulp and the two
// roundings of x_i), and its sums by 2^-31 per token (fixed-point or f32 steps), so each
// running sum it forms (the top-k total, the top-p prefix c_last, the sums up to `got`) is
// within tol = sum err_i + 2^-31 V of the exact one over as many tokens, and tokens within
// those errors of got's weight may come on either side of it. Weights below 2^-40 are left
// out of the order (their sum joins tol): a kernel's share of them rounds to 0 and is never
// drawn. Allowed: a token of weight >= 2^-40, with fewer than top_k tokens surely ahead of
// it, and, for some c_last the cut-offs allow,
//   (weight surely ahead) - tol <= u c_last < (weight possibly ahead, and its own) + tol.
// e and c: scratch for V entries. O(V) plus a sort of the weights >= 2^-40.
static bool draw_allowed(const float *l, int V, float temp, int top_k, float top_p, float u, int got, WeightId *e,
                         double *c) {
    if (got < 0 || got >= V || !isfinite(l[got])) return false;
    const double tiny = 0x1p-40;
    double max = -INFINITY, tol = V * 0x1p-31;
    for (int i = 0; i < V; i++) max = l[i] > max ? l[i] : max;
    int n = 0; // entries of e: the weights >= tiny
    for (int i = 0; i < V; i++) {
        const double x = ((double)l[i] - max) / temp, w = exp(x), err = (5e-7 + 2.4e-7 * fabs(x)) * w;
        if (w < tiny) tol += w;
        else e[n++] = (WeightId){w, err, i}, tol += err;
    }
    const double x_got = ((double)l[got] - max) / temp, W = exp(x_got), W_err = (5e-7 + 2.4e-7 * fabs(x_got)) * W;
    if (!(W >= tiny)) return false;
    qsort(e, (size_t)n, sizeof *e, by_weight_then_id);
    double run = 0;
    for (int i = 0; i < n; i++) c[i] = run += e[i].w;
    const int kept = top_k > 0 && top_k < V ? top_k : V, last = (kept < n ? kept : n) - 1;
    double cl_lo = c[last] - tol, cl_hi = c[last] + tol; // c_last's range
    if (top_p < 1.0f) { // the shortest prefix reaching top_p of the kept weight, give or take tol
        const double goal = (double)top_p * c[last];
        int lo = 0, hi = 0;
        while (lo < last && c[lo] < goal - 2 * tol) lo++;
        while (hi < last && c[hi] < goal + 2 * tol) hi++;
        cl_lo = c[lo] - tol, cl_hi = c[hi] + tol;
    }
    double ahead = 0, through = 0; // weight surely ahead of got; possibly ahead of it, and its own
    int n_ahead = 0;
    for (int i = 0; i < n && e[i].w + e[i].err >= W - W_err; i++) {
        through += e[i].w;
        if (e[i].w - e[i].err > W + W_err) ahead += e[i].w, n_ahead++;
    }
    return n_ahead < kept && ahead - tol <= u * cl_hi && u * cl_lo < through + tol;
}

// Greedy rows (temperature <= 0) must equal ops_ref exactly, ties included (lowest id).
// Every sampled row must draw a token draw_allowed accepts. Sampled rows must also draw
// ops_ref's token except where u lands at a rounding boundary of the cumulative weights: at
// most 2% of them (at least 1) may differ, and each is printed; but not over a flat large
// vocabulary, where ops_ref's running f32 sums drift by more than a token's weight
// (lm_logits): there draw_allowed alone judges.
static void test_sample(void) {
    static const struct { int V, n_cand; float spread; int top_k; float top_p; bool masked, slow; } cases[] = {
        {301, 301, 4, 0, 0, false, false},    {301, 30, 8, 0, 0, false, false},
        {32000, 256, 6, 0, 0, false, false},  {128256, 256, 6, 0, 0, false, false},
        {128256, 2000, 10, 0, 0, false, true}, {32000, 1000, 8, 0, 0, false, true},
        // masked vocabularies: every id but the candidates -inf (weight 0: never drawn; with
        // 30 candidates the top_k 40 rows reach past the finite ones); row 2 has one finite logit
        {128256, 30, 8, 0, 0, true, false},   {32000, 3000, 6, 0, 0, true, true},
        // flat logits, one top_k / top_p for every sampled row: top_k 5000 cuts past the
        // kernel's 2048-key shared buffer (a radix descent), alone and under top_p 0.9;
        // top_p 0.99 keeps a nucleus of nearly the whole vocabulary
        {128256, 128256, 2, 5000, 1.0f, false, true}, {32000, 32000, 4, 5000, 0.9f, false, true},
        {128256, 128256, 1, 0, 0.99f, false, true},
    };
    static const int top_ks[3] = {0, 1, 40}; // rows cycle through these where the table's top_p is 0
    static const float top_ps[3] = {1.0f, 0.9f, 0.5f};
    enum { R = 64 };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (quick && cases[c].slow) continue;
        const int V = cases[c].V;
        const bool vs_ref = cases[c].n_cand < V || V <= 1000;
        test_rng_seed(900 + c);
        float *logits = xmalloc((size_t)R * V * sizeof(float)), temp[R], top_p[R];
        int32_t top_k[R], want[R], got[R], tie_lo[R];
        uint64_t seed[R], counter[R];
        for (int r = 0; r < R; r++) {
            float *l = logits + (size_t)r * V;
            lm_logits(l, V, cases[c].n_cand, cases[c].spread, cases[c].masked);
            if (cases[c].masked && r == 2) { // one finite logit: the only token that may be drawn
                for (int i = 0; i < V; i++) l[i] = -INFINITY;
                l[test_rng_int(0, V - 1)] = 1;
            }
            seed[r] = 1234 + (uint64_t)(r % 5), counter[r] = c * 1000 + (uint64_t)r;
            top_k[r] = cases[c].top_p > 0 ? cases[c].top_k : top_ks[r % 3];
            top_p[r] = cases[c].top_p > 0 ? cases[c].top_p : top_ps[(r / 3) % 3];
            tie_lo[r] = -1;
            if (r % 5 == 4) { // greedy, with a tie at the maximum: the lowest id must win
                temp[r] = r % 2 ? 0.0f : -1.0f;
                int a = r == 4 ? 0 : r == 9 ? V - 2 : test_rng_int(0, V - 2), b = r == 4 ? V - 1 : test_rng_int(a + 1, V - 1);
                l[a] = l[b] = cases[c].spread + 1;
                tie_lo[r] = a;
            } else {
                temp[r] = test_rng_float(0.7f, 1.3f);
                if (r % 7 == 0) { // a tie somewhere
                    int i = test_rng_int(0, V - 1), j = test_rng_int(0, V - 1);
                    l[i] = l[j];
                }
            }
        }
        SampleParams rp = {logits, temp, top_k, top_p, seed, counter, want, R, V};
        CHECK_OPS(ops_ref.sample(&rp, NULL), OPS_OK);

        void *dl = dev_copy(logits, (size_t)R * V * sizeof(float)), *dt = dev_copy(temp, sizeof temp);
        void *dk = dev_copy(top_k, sizeof top_k), *dp = dev_copy(top_p, sizeof top_p);
        void *ds = dev_copy(seed, sizeof seed), *dc = dev_copy(counter, sizeof counter), *dout = dev_alloc(sizeof got);
        dev_poison(dout, sizeof got);
        SampleParams p = {dl, dt, dk, dp, ds, dc, dout, R, V};
        char what[160];
        int len = snprintf(what, sizeof what, "sample V=%d, %d candidates%s", V, cases[c].n_cand,
                           cases[c].masked ? " (rest -inf)" : "");
        if (cases[c].top_p > 0)
            snprintf(what + len, sizeof what - (size_t)len, ", top_k %d top_p %.2f", cases[c].top_k, (double)cases[c].top_p);
        if (op_ran(ops_cuda.sample(&p, queue), false, what)) {
            dev_read(got, dout, sizeof got);
            WeightId *scratch = xmalloc((size_t)V * sizeof *scratch);
            double *sums = xmalloc((size_t)V * sizeof *sums);
            int greedy = 0, sampled = 0, differ = 0, outside = 0;
            for (int r = 0; r < R; r++) {
                CHECK(got[r] >= 0 && got[r] < V);
                if (tie_lo[r] >= 0) {
                    greedy++;
                    CHECK(want[r] == tie_lo[r]); // the reference itself
                    if (got[r] != want[r]) fprintf(stderr, "  %s: greedy row %d: %d, want %d\n", what, r, got[r], want[r]);
                    CHECK(got[r] == want[r]);
                    continue;
                }
                sampled++;
                const float u = sample_uniform(seed[r], counter[r]);
                const bool in_contract = draw_allowed(logits + (size_t)r * V, V, temp[r], top_k[r], top_p[r], u,
                                                      got[r], scratch, sums);
                if (!in_contract || (vs_ref && got[r] != want[r])) {
                    differ += vs_ref && got[r] != want[r];
                    outside += !in_contract;
                    fprintf(stderr, "  %s: row %d (temperature %.3f, top_k %d, top_p %.2f, u %.6f): %d, ref %d%s\n",
                            what, r, (double)temp[r], top_k[r], (double)top_p[r], (double)u, got[r], want[r],
                            in_contract ? "" : ", NOT A DRAW THE CONTRACT ALLOWS");
                }
            }
            int allowed = sampled * 2 / 100 > 1 ? sampled * 2 / 100 : 1;
            if (vs_ref)
                fprintf(stderr, "  %-58s %d greedy rows, %d of %d draws differ (%d allowed), %d outside the contract\n",
                        what, greedy, differ, sampled, allowed, outside);
            else
                fprintf(stderr, "  %-58s %d greedy rows, %d of %d draws outside the contract (not compared with ops_ref)\n",
                        what, greedy, outside, sampled);
            CHECK(differ <= allowed);
            CHECK(outside == 0);
            free(scratch);
            free(sums);
        }
        void *bufs[] = {dl, dt, dk, dp, ds, dc, dout};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dev_free(bufs[i]);
        free(logits);
    }
}

// ---- fill ---------------------------------------------------------------------------------

// Both backends hash (seed, i) the same way; the one rounding that may differ is
// lo + (hi - lo) u, which nvcc contracts into an FMA: at most an f32 ulp of the operands,
// so a bf16 or f16 store may land one ulp of that dtype away. lo == hi is exact. The
// elements past n must keep their poison.
static void test_fill(void) {
    static const struct { size_t n; DType dt; uint64_t seed; float lo, hi; } cases[] = {
        {1, DT_BF16, 1, -1, 1},        {1000003, DT_BF16, 42, -0.02f, 0.02f}, {4097, DT_F32, 7, 0.5f, 1.5f},
        {65537, DT_F16, 9, -1, 1},     {100, DT_BF16, 3, 0.25f, 0.25f},      {0, DT_F32, 5, 0, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const size_t n = cases[c].n, es = dtype_size(cases[c].dt), pad = 64;
        const DType dt = cases[c].dt;
        char what[160];
        snprintf(what, sizeof what, "fill n=%zu %s [%g, %g]", n, dtype_name(dt), (double)cases[c].lo, (double)cases[c].hi);
        uint8_t *ref = xmalloc(n * es), *got = xmalloc((n + pad) * es);
        CHECK_OPS(ops_ref.fill(ref, n, dt, cases[c].seed, cases[c].lo, cases[c].hi, NULL), OPS_OK);
        void *d = dev_alloc((n + pad) * es);
        dev_poison(d, (n + pad) * es);
        if (op_ran(ops_cuda.fill(d, n, dt, cases[c].seed, cases[c].lo, cases[c].hi, queue), false, what)) {
            dev_read(got, d, (n + pad) * es);
            const double ulp = dt == DT_F32 ? 2 * U_F32 : dt == DT_F16 ? 1.0 / 1024 : 2 * U_BF16;
            const double slack = 4 * U_F32 * (fabs(cases[c].lo) + fabs(cases[c].hi)) + (dt == DT_F16 ? 0x1p-24 : 0);
            float *gf = xmalloc((n ? n : 1) * sizeof(float)), *rf = xmalloc((n ? n : 1) * sizeof(float));
            double *tol = xmalloc((n ? n : 1) * sizeof *tol);
            for (size_t i = 0; i < n; i++) {
                gf[i] = dtype_load(got, dt, i), rf[i] = dtype_load(ref, dt, i);
                tol[i] = cases[c].lo == cases[c].hi ? 0 : ulp * fabs(rf[i]) + slack;
            }
            expect_close(what, gf, rf, tol, n);
            CHECK(all_poison(got + n * es, pad * es));
            free(gf);
            free(rf);
            free(tol);
        }
        dev_free(d);
        free(ref);
        free(got);
    }
}

// ---- graph capture ------------------------------------------------------------------------

// rmsnorm + gemm captured once, replayed with new input contents: the same kernels on the
// same data, so equal bit for bit to an eager run; and each replay sees its own input.
static void test_graph_capture(void) {
    if (!ops_cuda.capture_begin || !ops_cuda.capture_end || !ops_cuda.graph_launch || !ops_cuda.graph_destroy) {
        fprintf(stderr, "  graph capture: not provided, skipped\n");
        return;
    }
    enum { T = 17, D = 1024, N = 768 };
    test_rng_seed(1000);
    Vals nw = vals_random(D, 0.5f, 1.5f), w = vals_random((size_t)N * D, -1, 1);
    void *dx = dev_alloc((size_t)T * D * 2), *dh = dev_alloc((size_t)T * D * 2), *dy = dev_alloc((size_t)T * N * 2);
    void *dnw = dev_copy(nw.h, D * 2), *dw = dev_copy(w.h, (size_t)N * D * 2);
    RmsNormParams norm = {dx, NULL, dnw, DT_BF16, dh, T, D, 1e-5f};
    GemmParams gemm = {dh, dw, DT_BF16, dy, T, N, D};
    void *graph = NULL;
    CHECK_OPS(ops_cuda.capture_begin(queue), OPS_OK);
    int rc_norm = ops_cuda.rmsnorm(&norm, queue), rc_gemm = ops_cuda.gemm(&gemm, queue);
    CHECK_OPS(ops_cuda.capture_end(queue, &graph), OPS_OK);
    CHECK_OPS(rc_norm, OPS_OK);
    CHECK_OPS(rc_gemm, OPS_OK);
    uint16_t *prev = NULL;
    for (int round = 0; graph && round < 3; round++) {
        Vals x = vals_random((size_t)T * D, -2, 2);
        uint16_t *replayed = xmalloc((size_t)T * N * 2), *eager = xmalloc((size_t)T * N * 2);
        CHECK_OPS(ops_cuda.upload(dx, x.h, (size_t)T * D * 2, queue), OPS_OK);
        dev_poison(dh, (size_t)T * D * 2);
        dev_poison(dy, (size_t)T * N * 2);
        CHECK_OPS(ops_cuda.graph_launch(graph, queue), OPS_OK);
        dev_read(replayed, dy, (size_t)T * N * 2);
        dev_poison(dh, (size_t)T * D * 2);
        dev_poison(dy, (size_t)T * N * 2);
        CHECK_OPS(ops_cuda.rmsnorm(&norm, queue), OPS_OK);
        CHECK_OPS(ops_cuda.gemm(&gemm, queue), OPS_OK);
        dev_read(eager, dy, (size_t)T * N * 2);
        bool same = memcmp(replayed, eager, (size_t)T * N * 2) == 0;
        bool fresh = !prev || memcmp(replayed, prev, (size_t)T * N * 2) != 0;
        fprintf(stderr, "  graph replay %d: %s eager run, %s\n", round, same ? "equals the" : "DIFFERS from the",
                fresh ? "new input seen" : "SAME output as the previous input");
        size_t nan = 0;
        for (size_t i = 0; i < (size_t)T * N; i++) nan += (replayed[i] & 0x7fff) > 0x7f80;
        CHECK(same);
        CHECK(fresh);
        CHECK(nan == 0); // every output written
        free(prev);
        prev = replayed;
        free(eager);
        vals_free(x);
    }
    free(prev);
    CHECK_OPS(ops_cuda.graph_launch(NULL, queue), OPS_ERR_ARG);
    CHECK_OPS(ops_cuda.capture_end(queue, NULL), OPS_ERR_ARG);
    if (graph) ops_cuda.graph_destroy(graph);
    void *bufs[] = {dx, dh, dy, dnw, dw};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dev_free(bufs[i]);
    vals_free(nw);
    vals_free(w);
}

// ---- bad arguments ------------------------------------------------------------------------
//
// Only what the host can see: NULL params, queue or pointers, bad sizes and dtypes. Each op
// gets a small valid call with device buffers, then one mutation per case. A rejected call
// must return the contract's status and leave its (poisoned) output as it was; the valid
// call and a call with zero items must succeed. Case numbers run until `default`.

static void bad_case(const char *op, int c, int rc, int want, void *out, size_t bytes) {
    uint8_t *back = xmalloc(bytes);
    dev_read(back, out, bytes);
    bool untouched = all_poison(back, bytes);
    if (want == OPS_OK) {
        if (rc != OPS_OK) fprintf(stderr, "  %s valid case %d: %s\n", op, c, ops_status_name(rc));
        CHECK(rc == OPS_OK);
    } else {
        if (rc != want || !untouched)
            fprintf(stderr, "  %s bad-argument case %d: %s (want %s), output %s\n", op, c, ops_status_name(rc),
                    ops_status_name(want), untouched ? "untouched" : "CHANGED");
        CHECK(rc == want);
        CHECK(untouched);
    }
    free(back);
}

static void bad_embedding(void) {
    int32_t tok[3] = {0, 4, 2};
    uint16_t table[5 * 64] = {0};
    void *dtok = dev_copy(tok, sizeof tok), *dtab = dev_copy(table, sizeof table), *dout = dev_alloc(3 * 64 * 2);
    for (int c = 0;; c++) {
        EmbeddingParams p = {dtok, dtab, DT_BF16, dout, 3, 64, 5}, *pp = &p;
        void *q = queue;
        int want = OPS_ERR_ARG;
        switch (c) {
        case 0: pp = NULL; break;
        case 1: q = NULL; break;
        case 2: p.tokens = NULL; break;
        case 3: p.table = NULL; break;
        case 4: p.out = NULL; break;
        case 5: p.table_dtype = (DType)3; break;
        case 6: p.n_tokens = -1; break;
        case 7: p.dim = 0; break;
        case 8: p.vocab = 0; break;
        case 9: p.n_tokens = 0, want = OPS_OK; break;
        case 10: want = OPS_OK; break;
        default: c = -1;
        }
        if (c < 0) break;
        dev_poison(dout, 3 * 64 * 2);
        bad_case("embedding", c, ops_cuda.embedding(pp, q), want, dout, 3 * 64 * 2);
    }
    dev_free(dtok);
    dev_free(dtab);
    dev_free(dout);
}

static void bad_rmsnorm(void) {
    uint16_t x[2 * 64] = {0}, w[64] = {0};
    void *dx = dev_copy(x, sizeof x), *dw = dev_copy(w, sizeof w), *dout = dev_alloc(sizeof x);
    for (int c = 0;; c++) {
        RmsNormParams p = {dx, NULL, dw, DT_BF16, dout, 2, 64, 1e-5f}, *pp = &p;
        void *q = queue;
        int want = OPS_ERR_ARG;
        switch (c) {
        case 0: pp = NULL; break;
        case 1: q = NULL; break;
        case 2: p.x = NULL; break;
        case 3: p.weight = NULL; break;
        case 4: p.out = NULL; break;
        case 5: p.weight_dtype = (DType)3; break;
        case 6: p.n_rows = -1; break;
        case 7: p.dim = 0; break;
        case 8: p.eps = -1e-5f; break;
        case 9: p.eps = NAN; break;
        case 10: p.n_rows = 0, want = OPS_OK; break;
        case 11: want = OPS_OK; break;
        default: c = -1;
        }
        if (c < 0) break;
        dev_poison(dout, sizeof x);
        bad_case("rmsnorm", c, ops_cuda.rmsnorm(pp, q), want, dout, sizeof x);
    }
    dev_free(dx);
    dev_free(dw);
    dev_free(dout);
}

// For every GEMM implementation: weights must be bf16 (OPS_ERR_UNSUPPORTED otherwise).
static void bad_gemm(void) {
    uint16_t x[2 * 64] = {0}, w[64 * 64] = {0};
    void *dx = dev_copy(x, sizeof x), *dw = dev_copy(w, sizeof w), *dout = dev_alloc(2 * 64 * 2);
    for (int i = 0; i < CUDA_GEMM_IMPL_COUNT; i++) {
        if (ops_cuda_set_gemm(queue, (CudaGemmImpl)i) != OPS_OK) continue;
        char op[64];
        snprintf(op, sizeof op, "gemm %s", cuda_gemm_impl_name((CudaGemmImpl)i));
        for (int c = 0;; c++) {
            GemmParams p = {dx, dw, DT_BF16, dout, 2, 64, 64}, *pp = &p;
            void *q = queue;
            int want = OPS_ERR_ARG;
            switch (c) {
            case 0: pp = NULL; break;
            case 1: q = NULL; break;
            case 2: p.x = NULL; break;
            case 3: p.w = NULL; break;
            case 4: p.out = NULL; break;
            case 5: p.m = -1; break;
            case 6: p.n = 0; break;
            case 7: p.k = 0; break;
            case 8: p.n = -4; break;
            case 9: p.w_dtype = DT_F32, want = OPS_ERR_UNSUPPORTED; break;
            case 10: p.w_dtype = DT_F16, want = OPS_ERR_UNSUPPORTED; break;
            case 11: p.m = 0, want = OPS_OK; break;
            case 12: want = OPS_OK; break;
            default: c = -1;
            }
            if (c < 0) break;
            dev_poison(dout, 2 * 64 * 2);
            int rc = ops_cuda.gemm(pp, q);
            if (want == OPS_OK && rc == OPS_ERR_UNSUPPORTED && i != CUDA_GEMM_AUTO && i != CUDA_GEMM_CUBLAS) continue;
            bad_case(op, c, rc, want, dout, 2 * 64 * 2);
        }
    }
    CHECK_OPS(ops_cuda_set_gemm(queue, CUDA_GEMM_AUTO), OPS_OK);
    dev_free(dx);
    dev_free(dw);
    dev_free(dout);
}

static void bad_lm_head(void) {
    int32_t rows[2] = {2, 0};
    uint16_t h[3 * 64] = {0}, w[96 * 64] = {0};
    void *dh = dev_copy(h, sizeof h), *drows = dev_copy(rows, sizeof rows), *dw = dev_copy(w, sizeof w);
    void *dl = dev_alloc(2 * 96 * sizeof(float));
    for (int c = 0;; c++) {
        LmHeadParams p = {dh, drows, dw, DT_BF16, dl, 2, 3, 64, 96}, *pp = &p;
        void *q = queue;
        int want = OPS_ERR_ARG;
        switch (c) {
        case 0: pp = NULL; break;
        case 1: q = NULL; break;
        case 2: p.hidden = NULL; break;
        case 3: p.rows = NULL; break;
        case 4: p.w = NULL; break;
        case 5: p.logits = NULL; break;
        case 6: p.n_rows = -1; break;
        case 7: p.n_tokens = -1; break;
        case 8: p.n_tokens = 0; break; // rows to gather but no row to gather from
        case 9: p.dim = 0; break;
        case 10: p.vocab = 0; break;
        case 11: p.w_dtype = DT_F32, want = OPS_ERR_UNSUPPORTED; break;
        case 12: p.n_rows = 0, want = OPS_OK; break;
        case 13: want = OPS_OK; break;
        default: c = -1;
        }
        if (c < 0) break;
        dev_poison(dl, 2 * 96 * sizeof(float));
        bad_case("lm_head", c, ops_cuda.lm_head(pp, q), want, dl, 2 * 96 * sizeof(float));
    }
    void *bufs[] = {dh, drows, dw, dl};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dev_free(bufs[i]);
}

// 3 tokens, Hq 2, Hkv 1, Dh 64; 4 pages of 2 slots. Only q_out is checked untouched (the
// valid call fills the cache).
static void bad_rope_kv_write(void) {
    enum { QKV = 4 * 64, Q = 3 * 2 * 64, CACHE = 4 * 2 * 64 };
    uint16_t qkv[3 * QKV] = {0}, cache[CACHE];
    int32_t pos[3] = {3, 9, 0};
    int64_t slots[3] = {7, -1, 0};
    float freq[32];
    for (int i = 0; i < 32; i++) freq[i] = 1.0f / powf(10000.0f, i / 32.0f);
    memset(cache, 0xFF, sizeof cache);
    void *dqkv = dev_copy(qkv, sizeof qkv), *dpos = dev_copy(pos, sizeof pos), *dsl = dev_copy(slots, sizeof slots);
    void *dfreq = dev_copy(freq, sizeof freq), *dk = dev_copy(cache, sizeof cache), *dv = dev_copy(cache, sizeof cache);
    void *dq = dev_alloc(Q * 2);
    for (int c = 0;; c++) {
        RopeKvWriteParams p = {dqkv, dq, dk, dv, dpos, dsl, dfreq, 3, 2, 1, 64, 2, 4}, *pp = &p;
        void *q = queue;
        int want = OPS_ERR_ARG;
        switch (c) {
        case 0: pp = NULL; break;
        case 1: q = NULL; break;
        case 2: p.qkv = NULL; break;
        case 3: p.q_out = NULL; break;
        case 4: p.k_cache = NULL; break;
        case 5: p.v_cache = NULL; break;
        case 6: p.positions = NULL; break;
        case 7: p.slot_mapping = NULL; break;
        case 8: p.inv_freq = NULL; break;
        case 9: p.n_tokens = -1; break;
        case 10: p.n_q_heads = 0; break;
        case 11: p.n_kv_heads = 0; break;
        case 12: p.head_dim = 0; break;
        case 13: p.head_dim = 63; break; // odd: no rotate-half pairs
        case 14: p.block_size = 0; break;
        case 15: p.num_blocks = 0; break;
        case 16: p.n_tokens = 0, want = OPS_OK; break;
        case 17: want = OPS_OK; break;
        default: c = -1;
        }
        if (c < 0) break;
        dev_poison(dq, Q * 2);
        bad_case("rope_kv_write", c, ops_cuda.rope_kv_write(pp, q), want, dq, Q * 2);
    }
    void *bufs[] = {dqkv, dpos, dsl, dfreq, dk, dv, dq};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dev_free(bufs[i]);
}

static void bad_silu_mul(void) {
    uint16_t gu[2 * 128] = {0};
    void *dgu = dev_copy(gu, sizeof gu), *dout = dev_alloc(2 * 64 * 2);
    for (int c = 0;; c++) {
        SiluMulParams p = {dgu, (uint16_t *)dgu + 64, dout, 2, 64, 128}, *pp = &p;
        void *q = queue;
        int want = OPS_ERR_ARG;
        switch (c) {
        case 0: pp = NULL; break;
        case 1: q = NULL; break;
        case 2: p.gate = NULL; break;
        case 3: p.up = NULL; break;
        case 4: p.out = NULL; break;
        case 5: p.n_rows = -1; break;
        case 6: p.dim = 0; break;
        case 7: p.in_stride = 63; break; // < dim
        case 8: p.n_rows = 0, want = OPS_OK; break;
        case 9: want = OPS_OK; break;
        default: c = -1;
        }
        if (c < 0) break;
        dev_poison(dout, 2 * 64 * 2);
        bad_case("silu_mul", c, ops_cuda.silu_mul(pp, q), want, dout, 2 * 64 * 2);
    }
    dev_free(dgu);
    dev_free(dout);
}

// 2 sequences: 2 queries over a context of 3, 1 query over 5; pages of 2 slots (as in
// test_ops_ref.c, with Dh 64).
static void bad_attention(void) {
    enum { Hq = 4, Hkv = 2, Dh = 64, BS = 2, NB = 6, T = 3, OUT = T * Hq * Dh, CACHE = NB * BS * Hkv * Dh };
    static uint16_t qh[OUT], cache[CACHE];
    for (int i = 0; i < OUT; i++) qh[i] = f32_to_bf16(0.25f);
    for (int i = 0; i < CACHE; i++) cache[i] = f32_to_bf16(0.5f);
    int32_t q_start[3] = {0, 2, 3}, ctx_len[2] = {3, 5}, indptr[3] = {0, 2, 5}, indices[5] = {5, 1, 0, 2, 4};
    void *dq = dev_copy(qh, sizeof qh), *dk = dev_copy(cache, sizeof cache), *dv = dev_copy(cache, sizeof cache);
    void *dqs = dev_copy(q_start, sizeof q_start), *dctx = dev_copy(ctx_len, sizeof ctx_len);
    void *dptr = dev_copy(indptr, sizeof indptr), *dind = dev_copy(indices, sizeof indices), *dout = dev_alloc(OUT * 2);
    for (int c = 0;; c++) {
        AttentionParams p = {dq, dk, dv, dout, dqs, dctx, dptr, dind, 2, T, Hq, Hkv, Dh, BS, NB, 0, 0.125f, 2, 5};
        AttentionParams *pp = &p;
        void *q = queue;
        int want = OPS_ERR_ARG;
        switch (c) {
        case 0: pp = NULL; break;
        case 1: q = NULL; break;
        case 2: p.q = NULL; break;
        case 3: p.k_cache = NULL; break;
        case 4: p.v_cache = NULL; break;
        case 5: p.out = NULL; break;
        case 6: p.q_start = NULL; break;
        case 7: p.ctx_len = NULL; break;
        case 8: p.kv_indptr = NULL; break;
        case 9: p.kv_indices = NULL; break;
        case 10: p.n_seqs = -1; break;
        case 11: p.n_tokens = -1; break;
        case 12: p.n_q_heads = 0; break;
        case 13: p.n_kv_heads = 0; break;
        case 14: p.n_kv_heads = 3; break; // does not divide 4
        case 15: p.head_dim = 0; break;
        case 16: p.block_size = 0; break;
        case 17: p.num_blocks = 0; break;
        case 18: p.sliding_window = -1; break;
        case 19: p.scale = NAN; break;
        case 20: p.max_q_len = -1; break;
        case 21: p.max_ctx_len = -1; break;
        case 22: p.head_dim = 264, want = OPS_ERR_UNSUPPORTED; break; // past 256: declined, nothing run
        case 23: p.n_seqs = 0, p.n_tokens = 0, want = OPS_OK; break;
        case 24: want = OPS_OK; break;
        default: c = -1;
        }
        if (c < 0) break;
        dev_poison(dout, OUT * 2);
        bad_case("attention", c, ops_cuda.attention(pp, q), want, dout, OUT * 2);
    }
    // the valid call: every value is 0.5, so every output is 0.5 whatever the weights
    uint16_t *out = xmalloc(OUT * 2);
    dev_read(out, dout, OUT * 2);
    size_t wrong = 0;
    for (int i = 0; i < OUT; i++) wrong += out[i] != f32_to_bf16(0.5f);
    CHECK(wrong == 0);
    free(out);
    void *bufs[] = {dq, dk, dv, dqs, dctx, dptr, dind, dout};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dev_free(bufs[i]);
}

static void bad_sample(void) {
    enum { V = 64 };
    float logits[V] = {0}, temp = 1.0f, top_p = 1.0f;
    int32_t top_k = 0;
    uint64_t seed = 1, counter = 0;
    void *dl = dev_copy(logits, sizeof logits), *dt = dev_copy(&temp, 4), *dk = dev_copy(&top_k, 4);
    void *dp = dev_copy(&top_p, 4), *ds = dev_copy(&seed, 8), *dc = dev_copy(&counter, 8), *dout = dev_alloc(4);
    for (int c = 0;; c++) {
        SampleParams p = {dl, dt, dk, dp, ds, dc, dout, 1, V}, *pp = &p;
        void *q = queue;
        int want = OPS_ERR_ARG;
        switch (c) {
        case 0: pp = NULL; break;
        case 1: q = NULL; break;
        case 2: p.logits = NULL; break;
        case 3: p.temperature = NULL; break;
        case 4: p.top_k = NULL; break;
        case 5: p.top_p = NULL; break;
        case 6: p.seed = NULL; break;
        case 7: p.counter = NULL; break;
        case 8: p.out = NULL; break;
        case 9: p.n_rows = -1; break;
        case 10: p.vocab = 0; break;
        case 11: p.n_rows = 0, want = OPS_OK; break;
        case 12: want = OPS_OK; break;
        default: c = -1;
        }
        if (c < 0) break;
        dev_poison(dout, 4);
        bad_case("sample", c, ops_cuda.sample(pp, q), want, dout, 4);
    }
    void *bufs[] = {dl, dt, dk, dp, ds, dc, dout};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dev_free(bufs[i]);
}

static void bad_fill(void) {
    void *d = dev_alloc(64 * 4);
    for (int c = 0;; c++) {
        void *dst = d, *q = queue;
        DType dt = DT_BF16;
        float lo = -1, hi = 1;
        int want = OPS_ERR_ARG;
        switch (c) {
        case 0: q = NULL; break;
        case 1: dst = NULL; break;
        case 2: dt = (DType)3; break;
        case 3: lo = NAN; break;
        case 4: hi = INFINITY; break;
        case 5: lo = 2; break; // lo > hi
        case 6: want = OPS_OK; break;
        default: c = -1;
        }
        if (c < 0) break;
        dev_poison(d, 64 * 4);
        bad_case("fill", c, ops_cuda.fill(dst, 64, dt, 1, lo, hi, q), want, d, want == OPS_OK ? 0 : 64 * 4);
    }
    dev_free(d);
}

static void test_bad_arguments(void) {
    bad_embedding();
    bad_rmsnorm();
    bad_gemm();
    bad_lm_head();
    bad_rope_kv_write();
    bad_silu_mul();
    bad_attention();
    bad_sample();
    bad_fill();
}

// ---- main ---------------------------------------------------------------------------------

static const char *only_op; // --op NAME

#define RUN_TIMED(fn)                                                                         \
    do {                                                                                      \
        if (only_op && !strstr(#fn, only_op)) break;                                          \
        double t0_ = now_s();                                                                 \
        RUN(fn);                                                                              \
        fprintf(stderr, "      %.1f s\n", now_s() - t0_);                                    \
    } while (0)
#endif // MYRMEX_HAVE_CUDA

int main(int argc, char **argv) {
#ifndef MYRMEX_HAVE_CUDA
    (void)argc;
    (void)argv;
    fprintf(stderr, "skipped: built without the CUDA backend\n");
    return 77;
#else
    // argv[1] is the fixtures directory when CTest runs us (unused); flags may follow
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = true;
        else if (strcmp(argv[i], "--op") == 0 && i + 1 < argc) only_op = argv[++i];
    }
    if (cuda_device_count() == 0) {
        fprintf(stderr, "skipped: no CUDA device\n");
        return 77;
    }
    char desc[256] = "";
    cuda_device_describe(0, desc, sizeof desc);
    fprintf(stderr, "device 0: %s; ops_ref on %d threads%s\n", desc, ops_ref_threads(), quick ? "; --quick" : "");
    CHECK_OPS(ops_cuda_use_device(0), OPS_OK);
    queue = ops_cuda.queue_create();
    CHECK(queue != NULL);
    if (!queue) return test_exit();

    double t0 = now_s();
    RUN_TIMED(test_memory);
    RUN_TIMED(test_embedding);
    RUN_TIMED(test_rmsnorm);
    RUN_TIMED(test_gemm);
    RUN_TIMED(test_lm_head);
    RUN_TIMED(test_rope_kv_write);
    RUN_TIMED(test_silu_mul);
    RUN_TIMED(test_attention);
    RUN_TIMED(test_sample);
    RUN_TIMED(test_fill);
    RUN_TIMED(test_graph_capture);
    RUN_TIMED(test_bad_arguments);

    CHECK_OPS(ops_cuda.sync(queue), OPS_OK); // no sticky device error after all of it
    ops_cuda.queue_destroy(queue);
    if (live_buffers != 0) fprintf(stderr, "%d device buffers not freed\n", live_buffers);
    CHECK(live_buffers == 0);
    free(poison_bytes);
    fprintf(stderr, "%d cases declined by a kernel (OPS_ERR_UNSUPPORTED); %.1f s in all\n", declined, now_s() - t0);
    return test_exit();
#endif
}
