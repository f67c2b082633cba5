// Tests of ops_ref, the plain-C reference backend, against naive double-precision
// implementations written here (dense, unpaged, one loop per formula).
//
// Every op has a declarative case table with odd shapes; inputs come from a seeded RNG;
// outputs are poisoned with NaN before the op so an element the op forgot to write fails;
// every element is checked (NaN/Inf first, then against a tolerance stated with its
// reason). Then each op's argument validation: every bad-argument case must return
// OPS_ERR_ARG and leave all outputs untouched.
//
// u = 2^-24 below is the unit roundoff of f32.
#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "dtype.h"
#include "kernels.h"
#include "test_util.h"

#define U_F32 (1.0 / 16777216.0)
#define NOT_TOUCHED 12345.0f // sentinel for buffers an op must not write

// ---- helpers: RNG, buffers, comparison ----------------------------------------------------

static float *filled(size_t n, float value) {
    float *p = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = value;
    return p;
}

static float *random_f32(size_t n, float lo, float hi) {
    float *p = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = test_rng_float(lo, hi);
    return p;
}

// Random weights stored in dtype t, and `exact`: the same values as f32 (exactly).
typedef struct Weights {
    void *data;
    float *exact;
} Weights;

static Weights random_weights(DType t, size_t n, float lo, float hi) {
    Weights w = {xmalloc(n * dtype_size(t)), xmalloc(n * sizeof(float))};
    for (size_t i = 0; i < n; i++) {
        float v = test_rng_float(lo, hi);
        if (t == DT_F32) ((float *)w.data)[i] = v;
        if (t == DT_F16) ((uint16_t *)w.data)[i] = f32_to_f16(v);
        if (t == DT_BF16) ((uint16_t *)w.data)[i] = f32_to_bf16(v);
        w.exact[i] = dtype_load(w.data, t, i);
    }
    return w;
}

static void free_weights(Weights w) {
    free(w.data);
    free(w.exact);
}

// Every got[i] must be finite and within tol[i] of ref[i]. Prints the first few misses.
static void expect_close(const char *what, const float *got, const double *ref,
                         const double *tol, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        bool ok = isfinite(got[i]) && fabs((double)got[i] - ref[i]) <= tol[i];
        if (!ok && bad++ < 5)
            fprintf(stderr, "  %s: element %zu = %.9g, want %.9g (tol %.3g)\n", what, i,
                    (double)got[i], ref[i], tol[i]);
    }
    if (bad) fprintf(stderr, "  %s: %zu of %zu elements wrong\n", what, bad, n);
    CHECK(bad == 0);
}

static bool all_equal(const float *a, float value, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &value, sizeof value) != 0) return false;
    return true;
}

// ---- memory ops and the table -------------------------------------------------------------

static void test_table_and_memory(void) {
    CHECK(strcmp(ops_ref.name, "ref") == 0);
    CHECK(ops_ref.act_dtype == DT_F32);
    CHECK(ops_ref.host_memory);
    CHECK(ops_ref_threads() >= 1);
    void *z = ops_ref.alloc(0);
    CHECK(z != NULL);
    ops_ref.free(z);
    ops_ref.free(NULL);

    char src[100], back[100];
    for (int i = 0; i < 100; i++) src[i] = (char)i;
    char *dev = ops_ref.alloc(sizeof src);
    CHECK(dev != NULL && (uintptr_t)dev % 64 == 0);
    CHECK(ops_ref.upload(dev, src, sizeof src, NULL) == OPS_OK);
    CHECK(ops_ref.download(back, dev, sizeof back, NULL) == OPS_OK);
    CHECK(memcmp(src, back, sizeof src) == 0);
    CHECK(ops_ref.upload(NULL, src, 1, NULL) == OPS_ERR_ARG);
    CHECK(ops_ref.download(back, NULL, 1, NULL) == OPS_ERR_ARG);
    CHECK(ops_ref.upload(NULL, NULL, 0, NULL) == OPS_OK);
    CHECK(ops_ref.sync(NULL) == OPS_OK);
    ops_ref.free(dev);
    CHECK(ops_ref.alloc(SIZE_MAX) == NULL);
}

// ---- sum and copy_2d ----------------------------------------------------------------------

static void test_sum_and_copy_2d(void) {
    // Three f32 inputs summed in f32 into two outputs, one of them an input (allowed).
    enum { N = 1001 };
    float *a = random_f32(N, -4, 4), *b = random_f32(N, -4, 4), *c = random_f32(N, -4, 4);
    float *other = filled(N, NAN);
    double ref[N], tol[N];
    for (int i = 0; i < N; i++) {
        ref[i] = (double)a[i] + b[i] + c[i];
        tol[i] = 2 * U_F32 * (fabs(a[i]) + fabs(b[i]) + fabs(c[i])); // two f32 additions
    }
    SumParams p = {.in = {a, b, c}, .out = {b, other}, .n_in = 3, .n_out = 2, .count = N, .dtype = DT_F32};
    CHECK(ops_ref.sum(&p, NULL) == OPS_OK);
    expect_close("sum into an input", b, ref, tol, N);
    expect_close("sum into another", other, ref, tol, N);
    SumParams bad = p;
    bad.n_in = 0;
    CHECK(ops_ref.sum(&bad, NULL) == OPS_ERR_ARG);
    bad = p;
    bad.out[1] = NULL;
    CHECK(ops_ref.sum(&bad, NULL) == OPS_ERR_ARG);

    // A [3, 5] slice placed at column 4 of [3, 12] rows; the rest untouched.
    float full[36], slice[15];
    for (int i = 0; i < 36; i++) full[i] = NOT_TOUCHED;
    for (int i = 0; i < 15; i++) slice[i] = (float)i;
    CHECK(ops_ref.copy_2d(full + 4, 12 * sizeof(float), slice, 5 * sizeof(float), 5 * sizeof(float), 3, NULL) ==
          OPS_OK);
    for (int r = 0; r < 3; r++)
        for (int j = 0; j < 12; j++)
            CHECK(full[r * 12 + j] == (j >= 4 && j < 9 ? (float)(r * 5 + j - 4) : NOT_TOUCHED));
    // Overlapping spans are refused (a device copy would give no order), and so is a pitch
    // narrower than the row; nothing is written.
    CHECK(ops_ref.copy_2d(full + 1, 12 * sizeof(float), full, 12 * sizeof(float), 5 * sizeof(float), 3, NULL) ==
          OPS_ERR_ARG);
    CHECK(ops_ref.copy_2d(full, 4 * sizeof(float), slice, 5 * sizeof(float), 5 * sizeof(float), 2, NULL) ==
          OPS_ERR_ARG);
    CHECK(ops_ref.copy_2d(NULL, 0, slice, 0, 4, 1, NULL) == OPS_ERR_ARG);
    CHECK(ops_ref.copy_2d(NULL, 0, NULL, 0, 0, 0, NULL) == OPS_OK);
    CHECK(full[0] == NOT_TOUCHED && full[1] == NOT_TOUCHED);
    free(a);
    free(b);
    free(c);
    free(other);
}

// ---- embedding ----------------------------------------------------------------------------

static void test_embedding(void) {
    static const struct { int T, D, V; DType dt; } cases[] = {
        {17, 12, 97, DT_F32}, {1, 64, 5, DT_BF16}, {300, 128, 1000, DT_F16}, {54, 1, 1, DT_BF16},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int T = cases[c].T, D = cases[c].D, V = cases[c].V;
        test_rng_seed(100 + c);
        Weights table = random_weights(cases[c].dt, (size_t)V * D, -2, 2);
        int32_t *tokens = xmalloc((size_t)T * sizeof *tokens);
        for (int t = 0; t < T; t++) tokens[t] = test_rng_int(0, V - 1);
        float *out = filled((size_t)T * D, NAN);
        EmbeddingParams p = {tokens, table.data, cases[c].dt, out, T, D, V};
        CHECK(ops_ref.embedding(&p, NULL) == OPS_OK);
        // a conversion to f32 is exact: demand equality
        size_t bad = 0;
        for (int t = 0; t < T; t++)
            for (int j = 0; j < D; j++)
                bad += out[(size_t)t * D + j] != table.exact[(size_t)tokens[t] * D + j];
        CHECK(bad == 0);
        free_weights(table);
        free(tokens);
        free(out);
    }

    // Every f16 and bf16 bit pattern (inf, NaN, subnormals included) converts exactly as
    // dtype.h does: the backend's fast row conversion is checked bit for bit.
    for (DType dt = DT_F16; dt <= DT_BF16; dt++) {
        enum { V = 1024, D = 64 };
        uint16_t *table = xmalloc((size_t)V * D * sizeof *table);
        for (int i = 0; i < V * D; i++) table[i] = (uint16_t)i;
        int32_t tokens[V];
        for (int t = 0; t < V; t++) tokens[t] = t;
        test_shuffle(tokens, V);
        float *out = filled((size_t)V * D, NAN);
        EmbeddingParams p = {tokens, table, dt, out, V, D, V};
        CHECK(ops_ref.embedding(&p, NULL) == OPS_OK);
        size_t bad = 0;
        for (int t = 0; t < V; t++)
            for (int j = 0; j < D; j++) {
                uint16_t h = table[tokens[t] * D + j];
                float want = dt == DT_F16 ? f16_to_f32(h) : bf16_to_f32(h);
                bad += f32_to_bits(out[t * D + j]) != f32_to_bits(want);
            }
        CHECK(bad == 0);
        free(table);
        free(out);
    }
}

// ---- rmsnorm ------------------------------------------------------------------------------

static void test_rmsnorm(void) {
    static const struct { int T, D; bool residual, out_is_x; DType dt; float amp, eps; } cases[] = {
        {17, 12, true, false, DT_F32, 2, 1e-5f},
        {1, 4096, false, false, DT_BF16, 2, 1e-6f},
        {54, 97, true, true, DT_F16, 2, 1e-5f},
        {300, 768, true, false, DT_BF16, 2, 1e-5f},
        {3, 1, false, true, DT_F32, 2, 1e-5f},
        // small inputs and a large eps: a misplaced eps changes the result by far more than
        // the tolerance
        {19, 64, false, false, DT_F32, 0.1f, 1e-2f},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int T = cases[c].T, D = cases[c].D;
        const size_t n = (size_t)T * D;
        test_rng_seed(200 + c);
        float amp = cases[c].amp;
        float *x = random_f32(n, -amp, amp);
        float *res0 = random_f32(n, -amp, amp);
        float *res = xmalloc(n * sizeof(float));
        memcpy(res, res0, n * sizeof(float));
        Weights w = random_weights(cases[c].dt, (size_t)D, 0.5f, 1.5f);

        // the residual add is defined in f32; the norm reads the f32 sum
        double *ref = xmalloc(n * sizeof(double)), *tol = xmalloc(n * sizeof(double));
        float *h = xmalloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) h[i] = cases[c].residual ? res0[i] + x[i] : x[i];
        for (int t = 0; t < T; t++) {
            double ss = 0;
            for (int j = 0; j < D; j++) ss += (double)h[(size_t)t * D + j] * h[(size_t)t * D + j];
            double inv = 1.0 / sqrt(ss / D + cases[c].eps);
            for (int j = 0; j < D; j++) {
                size_t i = (size_t)t * D + j;
                ref[i] = w.exact[j] * (h[i] * inv);
                // f32 sum of D squares: relative error <= D*u (any order); the square root
                // halves it; the square, mean, rsqrt and two products add a few u
                tol[i] = (0.5 * D + 8) * U_F32 * fabs(ref[i]);
            }
        }

        float *out = cases[c].out_is_x ? x : filled(n, NAN);
        RmsNormParams p = {x, cases[c].residual ? res : NULL, w.data, cases[c].dt, out, T, D,
                           cases[c].eps};
        CHECK(ops_ref.rmsnorm(&p, NULL) == OPS_OK);
        expect_close("rmsnorm", out, ref, tol, n);
        if (cases[c].residual) CHECK(memcmp(res, h, n * sizeof(float)) == 0);
        else CHECK(memcmp(res, res0, n * sizeof(float)) == 0);

        if (out != x) free(out);
        free(x);
        free(res0);
        free(res);
        free(h);
        free(ref);
        free(tol);
        free_weights(w);
    }
}

// ---- gemm and lm_head ---------------------------------------------------------------------

// ref[r, n] = sum_k x[rows[r], k] * w[n, k] in double; tol = (K + 1) * u * sum |x w|, the
// worst-case bound for an f32 dot product of K terms in any summation order (with or
// without FMA), so every correct f32 implementation passes and a wrong term does not.
static void gemm_reference(const float *x, const int32_t *rows, int m, const float *w, int n,
                           int k, double *ref, double *tol) {
    for (int r = 0; r < m; r++) {
        const float *xr = x + (size_t)(rows ? rows[r] : r) * k;
        for (int j = 0; j < n; j++) {
            double s = 0, a = 0;
            for (int i = 0; i < k; i++) {
                double prod = (double)xr[i] * w[(size_t)j * k + i];
                s += prod;
                a += fabs(prod);
            }
            ref[(size_t)r * n + j] = s;
            tol[(size_t)r * n + j] = (k + 1) * U_F32 * a;
        }
    }
}

static void test_gemm(void) {
    static const struct { int M, N, K; DType dt; } cases[] = {
        {1, 1, 1, DT_F32},       {17, 33, 97, DT_BF16},  {54, 130, 64, DT_F16},
        {300, 67, 128, DT_BF16}, {3, 1000, 768, DT_F32}, {1, 2048, 300, DT_F16},
        {65, 17, 1, DT_BF16},    {129, 40, 33, DT_F32},  {0, 5, 7, DT_F16},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int M = cases[c].M, N = cases[c].N, K = cases[c].K;
        test_rng_seed(300 + c);
        float *x = random_f32((size_t)M * K, -1, 1);
        Weights w = random_weights(cases[c].dt, (size_t)N * K, -1, 1);
        double *ref = xmalloc((size_t)M * N * sizeof(double));
        double *tol = xmalloc((size_t)M * N * sizeof(double));
        gemm_reference(x, NULL, M, w.exact, N, K, ref, tol);
        float *out = filled((size_t)M * N, NAN);
        GemmParams p = {x, w.data, cases[c].dt, out, M, N, K};
        CHECK(ops_ref.gemm(&p, NULL) == OPS_OK);
        expect_close(dtype_name(cases[c].dt), out, ref, tol, (size_t)M * N);

        // the result does not depend on the thread count: rerun on 3 threads and on 1
        int saved = omp_get_max_threads();
        for (int threads = 3; threads >= 1; threads -= 2) {
            float *again = filled((size_t)M * N, NAN);
            p.out = again;
            omp_set_num_threads(threads);
            CHECK(ops_ref.gemm(&p, NULL) == OPS_OK);
            CHECK(memcmp(again, out, (size_t)M * N * sizeof(float)) == 0);
            free(again);
        }
        omp_set_num_threads(saved);
        free(x);
        free(out);
        free(ref);
        free(tol);
        free_weights(w);
    }
}

static void test_lm_head(void) {
    static const struct { int R, T, D, V; DType dt; } cases[] = {
        {17, 54, 64, 1000, DT_BF16}, {1, 1, 12, 97, DT_F16}, {5, 300, 128, 50, DT_F32},
        {0, 3, 8, 9, DT_BF16},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int R = cases[c].R, T = cases[c].T, D = cases[c].D, V = cases[c].V;
        test_rng_seed(400 + c);
        float *hidden = random_f32((size_t)T * D, -1, 1);
        Weights w = random_weights(cases[c].dt, (size_t)V * D, -1, 1);
        int32_t *rows = xmalloc((size_t)R * sizeof *rows);
        for (int r = 0; r < R; r++) rows[r] = test_rng_int(0, T - 1); // duplicates allowed
        if (R > 1) rows[R - 1] = T - 1;
        double *ref = xmalloc((size_t)R * V * sizeof(double));
        double *tol = xmalloc((size_t)R * V * sizeof(double));
        gemm_reference(hidden, rows, R, w.exact, V, D, ref, tol); // tolerance as for gemm
        float *logits = filled((size_t)R * V, NAN);
        LmHeadParams p = {hidden, rows, w.data, cases[c].dt, logits, R, T, D, V};
        CHECK(ops_ref.lm_head(&p, NULL) == OPS_OK);
        expect_close("lm_head", logits, ref, tol, (size_t)R * V);
        free(hidden);
        free(rows);
        free(ref);
        free(tol);
        free(logits);
        free_weights(w);
    }
}

// ---- rope_kv_write ------------------------------------------------------------------------

static void test_rope_kv_write(void) {
    static const struct { int T, Hq, Hkv, Dh, max_pos, bs, nb; float base; } cases[] = {
        {17, 4, 1, 8, 4096, 1, 40, 10000},    {1, 8, 8, 128, 100000, 16, 2, 500000},
        {54, 12, 4, 12, 2048, 16, 8, 10000},  {300, 8, 2, 64, 300, 16, 20, 10000},
        {5, 2, 1, 2, 7, 2, 4, 10000},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int T = cases[c].T, Hq = cases[c].Hq, Hkv = cases[c].Hkv, Dh = cases[c].Dh;
        const int half = Dh / 2, bs = cases[c].bs, nb = cases[c].nb;
        test_rng_seed(500 + c);
        float *inv_freq = xmalloc((size_t)half * sizeof(float));
        for (int i = 0; i < half; i++) inv_freq[i] = 1.0f / powf(cases[c].base, (float)(2 * i) / Dh);
        int32_t *pos = xmalloc((size_t)T * sizeof *pos);
        for (int t = 0; t < T; t++) pos[t] = t == 0 ? 0 : test_rng_int(0, cases[c].max_pos);
        const size_t q_row = (size_t)Hq * Dh, kv_row = (size_t)Hkv * Dh, qkv_row = q_row + 2 * kv_row;
        const size_t n_slots = (size_t)bs * nb;
        float *qkv = random_f32((size_t)T * qkv_row, -2, 2);
        // distinct random slots (token 0 always written), about one token in five skipped
        int32_t *perm = xmalloc(n_slots * sizeof *perm);
        for (size_t i = 0; i < n_slots; i++) perm[i] = (int32_t)i;
        test_shuffle(perm, (int)n_slots);
        int64_t *slots = xmalloc((size_t)T * sizeof *slots);
        for (int t = 0; t < T; t++) slots[t] = t > 0 && test_rng_int(0, 4) == 0 ? -1 - t : perm[t];
        float *q = filled((size_t)T * q_row, NAN);
        float *kc = filled(n_slots * kv_row, NOT_TOUCHED), *vc = filled(n_slots * kv_row, NOT_TOUCHED);
        RopeKvWriteParams p = {qkv, q, kc, vc, pos, slots, inv_freq, T, Hq, Hkv, Dh, bs, nb};
        CHECK(ops_ref.rope_kv_write(&p, NULL) == OPS_OK);

        // Independent formula: the pair (x[i], x[i + Dh/2]) is the complex number
        // x[i] + i x[i + Dh/2], multiplied by e^(i angle). The angle is the f32 product
        // (the spec rounds it like PyTorch), then everything is double. Tolerance: cosf and
        // sinf are within an ulp, and two products and a sum add a rounding each, so
        // 4u * (|x0| + |x1|) bounds the f32 error. Rotated k is compared in its slot.
        double *ref = xmalloc((size_t)T * qkv_row * sizeof(double)), *tol = xmalloc((size_t)T * qkv_row * sizeof(double));
        float *got = xmalloc((size_t)T * qkv_row * sizeof(float));
        size_t n = 0;
        for (int t = 0; t < T; t++) {
            const float *in = qkv + (size_t)t * qkv_row;
            int heads = slots[t] < 0 ? Hq : Hq + Hkv; // k only when written
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < half; i++) {
                    size_t a = (size_t)h * Dh + i, b = a + half;
                    double angle = (float)pos[t] * inv_freq[i];
                    double complex z = (in[a] + in[b] * I) * cexp(angle * I);
                    const float *dst = h < Hq ? q + (size_t)t * q_row + a
                                              : kc + (size_t)slots[t] * kv_row + (a - q_row);
                    ref[n] = creal(z), got[n] = dst[0], tol[n++] = 4 * U_F32 * (fabs(in[a]) + fabs(in[b]));
                    ref[n] = cimag(z), got[n] = dst[half], tol[n++] = 4 * U_F32 * (fabs(in[a]) + fabs(in[b]));
                }
        }
        expect_close("rope q and k", got, ref, tol, n);
        // v is copied exactly; slots no token maps to are untouched
        char *written = calloc(n_slots, 1);
        size_t bad = 0;
        for (int t = 0; t < T; t++) {
            if (slots[t] < 0) continue;
            written[slots[t]] = 1;
            bad += memcmp(vc + slots[t] * kv_row, qkv + t * qkv_row + q_row + kv_row, kv_row * sizeof(float)) != 0;
        }
        for (size_t sl = 0; sl < n_slots; sl++)
            if (!written[sl]) bad += !all_equal(kc + sl * kv_row, NOT_TOUCHED, kv_row) || !all_equal(vc + sl * kv_row, NOT_TOUCHED, kv_row);
        CHECK(bad == 0);
        // position 0 (token 0) is the identity, bit for bit
        CHECK(memcmp(q, qkv, q_row * sizeof(float)) == 0);
        CHECK(memcmp(kc + slots[0] * kv_row, qkv + q_row, kv_row * sizeof(float)) == 0);
        free(written);
        free(ref);
        free(tol);
        free(got);
        free(inv_freq);
        free(pos);
        free(qkv);
        free(perm);
        free(slots);
        free(q);
        free(kc);
        free(vc);
    }
}

// ---- silu_mul -----------------------------------------------------------------------------

static void test_silu_mul(void) {
    static const struct { int T, dim, extra; } cases[] = {{17, 12, 12}, {1, 2048, 0}, {300, 97, 5}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        // gate and up side by side in one [T, stride] buffer, stride = 2I + extra
        const int T = cases[c].T, Di = cases[c].dim, stride = 2 * Di + cases[c].extra;
        test_rng_seed(600 + c);
        float *gu = random_f32((size_t)T * stride, -8, 8);
        gu[0] = -100; // exp overflows to inf: silu is -0, not NaN
        gu[1 % Di] = 100;
        gu[2 % Di] = 0;
        double *ref = xmalloc((size_t)T * Di * sizeof(double));
        double *tol = xmalloc((size_t)T * Di * sizeof(double));
        for (int t = 0; t < T; t++)
            for (int j = 0; j < Di; j++) {
                double g = gu[(size_t)t * stride + j], u = gu[(size_t)t * stride + Di + j];
                size_t i = (size_t)t * Di + j;
                ref[i] = g / (1 + exp(-g)) * u;
                // expf within an ulp, then a sum, a quotient and a product: 6u relative;
                // plus the f32 subnormal range where silu(-100) underflows
                tol[i] = 6 * U_F32 * fabs(ref[i]) + 1e-37;
            }
        float *out = filled((size_t)T * Di, NAN);
        SiluMulParams p = {gu, gu + Di, out, T, Di, stride};
        CHECK(ops_ref.silu_mul(&p, NULL) == OPS_OK);
        expect_close("silu_mul", out, ref, tol, (size_t)T * Di);
        free(gu);
        free(ref);
        free(tol);
        free(out);
    }
}

static void expect_rejected(const char *op, int c, int rc, bool untouched);

// ---- sample -------------------------------------------------------------------------------

// The kernels.h rule in double precision: the expected token for draw u, or -1 when u
// falls within a relative 2e-5 of a cut-off or cumulative boundary, where f32 and double
// rounding may legitimately disagree (an f32 sum of 1000 weights is off by < 1e-5 in practice).
static int expected_draw(const float *l, int V, float temp, int top_k, float top_p, double u) {
    int *order = xmalloc((size_t)V * sizeof *order);
    double *w = xmalloc((size_t)V * sizeof *w), max = -INFINITY;
    for (int i = 0; i < V; i++) max = fmax(max, l[i]);
    for (int i = 0; i < V; i++) order[i] = i, w[i] = exp(((double)l[i] - max) / temp);
    for (int i = 1; i < V; i++) // insertion sort: decreasing weight, lower id first
        for (int j = i; j > 0 && (w[order[j]] > w[order[j - 1]] || (w[order[j]] == w[order[j - 1]] && order[j] < order[j - 1])); j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    int kept = top_k <= 0 || top_k >= V ? V : top_k;
    double total = 0;
    for (int i = 0; i < kept; i++) total += w[order[i]];
    int result = -2;
    if (top_p < 1.0f) {
        double run = 0;
        int n = 0;
        while (n < kept && (n == 0 || run < top_p * total)) run += w[order[n++]];
        if (fabs(run - w[order[n - 1]] - top_p * total) < 2e-5 * total) result = -1; // at the cut
        kept = n;
        total = run;
    }
    double run = 0;
    for (int i = 0; i < kept && result == -2; i++) {
        run += w[order[i]];
        if (fabs(run - u * total) < 2e-5 * total) result = -1;
        else if (run > u * total) result = order[i];
    }
    if (result == -2) result = order[kept - 1];
    free(order);
    free(w);
    return result;
}

static void test_sample(void) {
    static const struct { int V; float temp; int top_k; float top_p, spread; } cases[] = {
        {5, 1.0f, 0, 1.0f, 2},   {301, 0.7f, 0, 1.0f, 4}, {301, 1.3f, 40, 1.0f, 4},
        {301, 1.0f, 0, 0.9f, 4}, {1000, 0.8f, 50, 0.5f, 8}, {7, 1.0f, 1, 1.0f, 1},
        {64, 2.0f, 64, 0.95f, 3},
    };
    enum { R = 200 };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int V = cases[c].V;
        test_rng_seed(900 + c);
        float *logits = random_f32((size_t)R * V, -cases[c].spread, cases[c].spread);
        for (int r = 0; r < R; r += 7) logits[(size_t)r * V + V / 2] = logits[(size_t)r * V]; // ties
        float temp[R], top_p[R];
        int32_t top_k[R], out[R];
        uint64_t seed[R], counter[R];
        for (int r = 0; r < R; r++) {
            temp[r] = cases[c].temp, top_k[r] = cases[c].top_k, top_p[r] = cases[c].top_p;
            seed[r] = 42 + (uint64_t)(r % 3), counter[r] = (uint64_t)r;
            out[r] = -7;
        }
        SampleParams p = {logits, temp, top_k, top_p, seed, counter, out, R, V};
        CHECK(ops_ref.sample(&p, NULL) == OPS_OK);
        int skipped = 0, bad = 0;
        for (int r = 0; r < R; r++) {
            int want = expected_draw(logits + (size_t)r * V, V, temp[r], top_k[r], top_p[r],
                                     sample_uniform(seed[r], counter[r]));
            if (want < 0) skipped++;
            else if (out[r] != want && bad++ < 5) fprintf(stderr, "  sample case %zu row %d: %d, want %d\n", c, r, out[r], want);
        }
        CHECK(bad == 0);
        if (skipped >= R / 20) fprintf(stderr, "  sample case %zu: %d of %d draws at a boundary\n", c, skipped, R);
        CHECK(skipped < R / 20);
        // greedy: the argmax, lowest id on ties
        for (int r = 0; r < R; r++) temp[r] = r % 2 ? 0.0f : -1.0f;
        CHECK(ops_ref.sample(&p, NULL) == OPS_OK);
        for (int r = 0; r < R; r++) {
            const float *l = logits + (size_t)r * V;
            int best = 0;
            for (int i = 1; i < V; i++)
                if (l[i] > l[best]) best = i;
            CHECK(out[r] == best);
        }
        free(logits);
    }

    // The draws follow the distribution: 20000 draws over 4 tokens with probabilities
    // 0.1, 0.2, 0.3, 0.4 land within 5 standard deviations of the expected counts.
    enum { N = 20000 };
    float l4[4] = {logf(0.1f), logf(0.2f), logf(0.3f), logf(0.4f)}, one = 1.0f, t1 = 1.0f;
    int32_t k0 = 0, tok;
    int counts[4] = {0};
    for (uint64_t i = 0; i < N; i++) {
        uint64_t seed = 7;
        SampleParams p = {l4, &t1, &k0, &one, &seed, &i, &tok, 1, 4};
        CHECK(ops_ref.sample(&p, NULL) == OPS_OK);
        counts[tok]++;
    }
    for (int i = 0; i < 4; i++) {
        double pi = 0.1 * (i + 1), mean = N * pi, sd = sqrt(N * pi * (1 - pi));
        CHECK(fabs(counts[i] - mean) < 5 * sd);
    }

    // Bad arguments are refused before anything is written.
    float bad_l[3] = {0, 1, 2};
    for (int c = 0;; c++) {
        float t = 1.0f, tp = 1.0f;
        int32_t tk = 0, o = -7;
        uint64_t sd = 1, ct = 0;
        SampleParams p = {bad_l, &t, &tk, &tp, &sd, &ct, &o, 1, 3};
        switch (c) {
        case 0: p.logits = NULL; break;
        case 1: p.out = NULL; break;
        case 2: p.seed = NULL; break;
        case 3: p.n_rows = -1; break;
        case 4: p.vocab = 0; break;
        case 5: t = NAN; break;
        case 6: tp = 0.0f; break;
        case 7: tp = 1.5f; break;
        case 8: tp = NAN; break;
        default: return;
        }
        int rc = ops_ref.sample(&p, NULL);
        expect_rejected("sample", c, rc, o == -7);
    }
}

// ---- attention ----------------------------------------------------------------------------

#define MAX_SEQS 17

typedef struct AttnCase {
    const char *name;
    int n_seqs;
    int n_q[MAX_SEQS], ctx[MAX_SEQS]; // per sequence, unless decode_max_ctx > 0
    int decode_max_ctx; // > 0: every sequence decodes one token, its ctx random in [1, this]
    int Hq, Hkv, Dh, bs, window;
    float q_amp; // queries in [-q_amp, q_amp]: larger makes the softmax peakier
} AttnCase;

static const AttnCase attn_cases[] = {
    {"decode x17, gqa 8, dh 64, page 16", 17, {0}, {0}, 300, 8, 1, 64, 16, 0, 1},
    {"prefill 1/54/97, mha, dh 12, page 1", 3, {1, 54, 97}, {1, 54, 97}, 0, 4, 4, 12, 1, 0, 1},
    {"prefill 333, mha, dh 64, page 16", 1, {333}, {333}, 0, 8, 8, 64, 16, 0, 2},
    {"chunked prefill + empty seq, gqa 4, dh 128, window 64", 5, {37, 54, 1, 0, 100},
     {300, 54, 97, 5, 333}, 0, 8, 2, 128, 16, 64, 2},
    {"prefill 310/17, gqa 4, dh 8, window 32", 2, {310, 17}, {310, 40}, 0, 8, 2, 8, 16, 32, 4},
    {"decode x17, window 7, page 1, dh 128", 17, {0}, {0}, 97, 4, 1, 128, 1, 7, 1},
    {"long decodes 1000/777, gqa 8, peaky", 2, {1, 3}, {1000, 777}, 0, 8, 1, 64, 16, 0, 8},
};

static void run_attention_case(const AttnCase *ac, uint64_t seed) {
    test_rng_seed(seed);
    const int S = ac->n_seqs, Hq = ac->Hq, Hkv = ac->Hkv, Dh = ac->Dh, bs = ac->bs;
    const size_t row = (size_t)Hkv * Dh; // floats per token in K or V
    int32_t q_start[MAX_SEQS + 1] = {0}, ctx_len[MAX_SEQS], kv_indptr[MAX_SEQS + 1] = {0};
    size_t kv_off[MAX_SEQS + 1] = {0}; // sequence s's rows in the dense K, V
    for (int s = 0; s < S; s++) {
        int n_q = ac->decode_max_ctx ? 1 : ac->n_q[s];
        ctx_len[s] = ac->decode_max_ctx ? test_rng_int(1, ac->decode_max_ctx) : ac->ctx[s];
        q_start[s + 1] = q_start[s] + n_q;
        kv_indptr[s + 1] = kv_indptr[s] + (ctx_len[s] + bs - 1) / bs;
        kv_off[s + 1] = kv_off[s] + (size_t)ctx_len[s];
    }
    const int T = q_start[S], num_blocks = kv_indptr[S] + 3; // 3 blocks stay unused
    const size_t total_ctx = kv_off[S];

    // a random permutation of block ids, so every sequence's pages are scattered
    int32_t *kv_indices = xmalloc((size_t)num_blocks * sizeof *kv_indices);
    for (int b = 0; b < num_blocks; b++) kv_indices[b] = b;
    test_shuffle(kv_indices, num_blocks);

    // dense per-sequence K and V: [ctx_len[s], Hkv, Dh] each, back to back
    float *K = random_f32(total_ctx * row, -1, 1), *V = random_f32(total_ctx * row, -1, 1);

    // Fill the paged cache through rope_kv_write at position 0 (rotation by angle 0 is
    // the identity, exactly): each sequence's context, after one padding token (slot < 0,
    // must be skipped). Unwritten cache slots hold NaN, so reading one shows up as a NaN
    // output. The fill's q rows (one head) are discarded.
    const size_t n_fill = total_ctx + (size_t)S, fill_row = (size_t)Dh + 2 * row;
    float *fill = random_f32(n_fill * fill_row, -1, 1), *fill_q = xmalloc(n_fill * (size_t)Dh * sizeof(float));
    float *zero_freq = filled((size_t)Dh / 2, 0.0f);
    int32_t *zero_pos = calloc(n_fill, sizeof *zero_pos);
    int64_t *slots = xmalloc(n_fill * sizeof *slots);
    size_t f = 0;
    for (int s = 0; s < S; s++) {
        slots[f++] = -1;
        for (int j = 0; j < ctx_len[s]; j++, f++) {
            slots[f] = (int64_t)kv_indices[kv_indptr[s] + j / bs] * bs + j % bs;
            memcpy(fill + f * fill_row + Dh, K + (kv_off[s] + j) * row, row * sizeof(float));
            memcpy(fill + f * fill_row + Dh + row, V + (kv_off[s] + j) * row, row * sizeof(float));
        }
    }
    const size_t cache_n = (size_t)num_blocks * bs * row;
    float *k_cache = filled(cache_n, NAN), *v_cache = filled(cache_n, NAN);
    RopeKvWriteParams w = {fill, fill_q, k_cache, v_cache, zero_pos, slots, zero_freq,
                           (int)n_fill, 1, Hkv, Dh, bs, num_blocks};
    CHECK(ops_ref.rope_kv_write(&w, NULL) == OPS_OK);

    const size_t n_out = (size_t)T * Hq * Dh;
    float *q = random_f32(n_out, -ac->q_amp, ac->q_amp), *out = filled(n_out, NAN);
    int max_q = 0, max_ctx = 0;
    for (int s = 0; s < S; s++) {
        if (q_start[s + 1] - q_start[s] > max_q) max_q = q_start[s + 1] - q_start[s];
        if (ctx_len[s] > max_ctx) max_ctx = ctx_len[s];
    }
    AttentionParams p = {q, k_cache, v_cache, out, q_start, ctx_len, kv_indptr, kv_indices,
                         S, T, Hq, Hkv, Dh, bs, num_blocks, ac->window, 1.0f / sqrtf((float)Dh),
                         max_q, max_ctx};
    CHECK(ops_ref.attention(&p, NULL) == OPS_OK);

    // Reference: dense K and V, double precision, softmax written out in full.
    // Tolerance per (token, head), for |v| <= 1: each f32 score is off by at most
    // e_j = (Dh + 2) u scale sum_d |q_d k_jd| (dot product bound) plus 2u |s_j - max|
    // (the subtraction before exp); shifting scores by <= E = max e_j moves each softmax
    // weight by a factor within e^(+-2E), so the output moves by <= ~2E (3E allowed).
    // exp, the sums of L weights and of L weighted values, and the division add
    // (2L + 16) u relative error at most.
    double *ref = xmalloc(n_out * sizeof(double)), *tol = xmalloc(n_out * sizeof(double));
    double *score = xmalloc((size_t)max_ctx * sizeof(double));
    double *absdot = xmalloc((size_t)max_ctx * sizeof(double));
    for (int s = 0; s < S; s++)
        for (int t = q_start[s]; t < q_start[s + 1]; t++)
            for (int h = 0; h < Hq; h++) {
                const int kvh = h / (Hq / Hkv);
                const int pos = ctx_len[s] - (q_start[s + 1] - q_start[s]) + (t - q_start[s]);
                const int lo = ac->window > 0 && pos - ac->window + 1 > 0 ? pos - ac->window + 1 : 0;
                const float *qv = q + ((size_t)t * Hq + h) * Dh;
                double max = -INFINITY;
                for (int j = lo; j <= pos; j++) {
                    const float *kv = K + (kv_off[s] + j) * row + (size_t)kvh * Dh;
                    double dot = 0, a = 0;
                    for (int d = 0; d < Dh; d++) {
                        dot += (double)qv[d] * kv[d];
                        a += fabs((double)qv[d] * kv[d]);
                    }
                    score[j] = dot * p.scale;
                    absdot[j] = a * p.scale;
                    max = score[j] > max ? score[j] : max;
                }
                double sum = 0, E = 0;
                for (int j = lo; j <= pos; j++) {
                    sum += exp(score[j] - max);
                    double e = (Dh + 2) * U_F32 * absdot[j] + 2 * U_F32 * fabs(score[j] - max);
                    E = e > E ? e : E;
                }
                const int L = pos - lo + 1;
                for (int d = 0; d < Dh; d++) {
                    double acc = 0;
                    for (int j = lo; j <= pos; j++)
                        acc += exp(score[j] - max) * V[(kv_off[s] + j) * row + (size_t)kvh * Dh + d];
                    size_t i = ((size_t)t * Hq + h) * Dh + d;
                    ref[i] = acc / sum;
                    tol[i] = 3 * E + (2.0 * L + 16) * U_F32;
                }
            }
    expect_close(ac->name, out, ref, tol, n_out);

    // every (token, head) is computed by one thread: 3 threads give the same bits
    int saved = omp_get_max_threads();
    float *again = filled(n_out, NAN);
    p.out = again;
    omp_set_num_threads(3);
    CHECK(ops_ref.attention(&p, NULL) == OPS_OK);
    omp_set_num_threads(saved);
    CHECK(memcmp(again, out, n_out * sizeof(float)) == 0);

    free(kv_indices);
    free(K);
    free(V);
    free(fill);
    free(fill_q);
    free(zero_freq);
    free(zero_pos);
    free(slots);
    free(k_cache);
    free(v_cache);
    free(q);
    free(out);
    free(again);
    free(ref);
    free(tol);
    free(score);
    free(absdot);
}

static void test_attention(void) {
    for (size_t c = 0; c < sizeof attn_cases / sizeof attn_cases[0]; c++)
        run_attention_case(&attn_cases[c], 800 + c);
}

// ---- argument validation ------------------------------------------------------------------
//
// Each op gets a small valid call, then one mutation per case. A rejected call must return
// OPS_ERR_ARG and leave every buffer it may write exactly as it was. The unmutated call
// must succeed (so each case failed for its own reason), and so must a call with zero
// tokens or rows, which changes nothing.

static void expect_rejected(const char *op, int c, int rc, bool untouched) {
    if (rc != OPS_ERR_ARG || !untouched)
        fprintf(stderr, "  %s bad-argument case %d: returned %d, outputs %s\n", op, c, rc,
                untouched ? "untouched" : "CHANGED");
    CHECK(rc == OPS_ERR_ARG);
    CHECK(untouched);
}

// Case numbers run from 0 until a switch reaches `default`; the last two cases are the
// zero-count call and the valid call.
static void test_bad_embedding(void) {
    float table[5 * 4] = {0}, out[3 * 4];
    for (int c = 0;; c++) {
        int32_t tokens[3] = {0, 4, 2};
        EmbeddingParams p = {tokens, table, DT_F32, out, 3, 4, 5};
        bool ok = false;
        switch (c) {
        case 0: p.tokens = NULL; break;
        case 1: p.table = NULL; break;
        case 2: p.out = NULL; break;
        case 3: p.table_dtype = (DType)3; break;
        case 4: p.n_tokens = -1; break;
        case 5: p.dim = 0; break;
        case 6: p.vocab = 0; break;
        case 7: tokens[2] = 5; break;
        case 8: tokens[2] = -1; break;
        case 9: p.vocab = 4; break; // token 4 is out of range now
        case 10: p.n_tokens = 0; ok = true; break;
        case 11: ok = true; break;
        default: return;
        }
        for (int i = 0; i < 12; i++) out[i] = NOT_TOUCHED;
        int rc = ops_ref.embedding(&p, NULL);
        if (!ok) expect_rejected("embedding", c, rc, all_equal(out, NOT_TOUCHED, 12));
        else CHECK(rc == OPS_OK && (p.n_tokens == 0) == all_equal(out, NOT_TOUCHED, 12));
    }
}

static void test_bad_rmsnorm(void) {
    float x[2 * 4] = {1, 2, 3, 4, 5, 6, 7, 8}, w[4] = {1, 1, 1, 1}, res[8], out[8];
    for (int c = 0;; c++) {
        RmsNormParams p = {x, res, w, DT_F32, out, 2, 4, 1e-5f};
        bool ok = false;
        switch (c) {
        case 0: p.x = NULL; break;
        case 1: p.weight = NULL; break;
        case 2: p.out = NULL; break;
        case 3: p.weight_dtype = (DType)-1; break;
        case 4: p.n_rows = -1; break;
        case 5: p.dim = 0; break;
        case 6: p.eps = -1e-5f; break;
        case 7: p.eps = NAN; break;
        case 8: p.eps = INFINITY; break;
        case 9: p.n_rows = 0; ok = true; break;
        case 10: ok = true; break;
        default: return;
        }
        for (int i = 0; i < 8; i++) res[i] = out[i] = NOT_TOUCHED;
        int rc = ops_ref.rmsnorm(&p, NULL);
        bool untouched = all_equal(out, NOT_TOUCHED, 8) && all_equal(res, NOT_TOUCHED, 8);
        if (!ok) expect_rejected("rmsnorm", c, rc, untouched);
        else CHECK(rc == OPS_OK && (p.n_rows == 0) == untouched);
    }
}

static void test_bad_gemm(void) {
    float x[2 * 3] = {1, 2, 3, 4, 5, 6}, w[4 * 3] = {0}, out[2 * 4];
    for (int c = 0;; c++) {
        GemmParams p = {x, w, DT_F32, out, 2, 4, 3};
        bool ok = false;
        switch (c) {
        case 0: p.x = NULL; break;
        case 1: p.w = NULL; break;
        case 2: p.out = NULL; break;
        case 3: p.w_dtype = (DType)7; break;
        case 4: p.m = -1; break;
        case 5: p.n = 0; break;
        case 6: p.k = 0; break;
        case 7: p.n = -4; break;
        case 8: p.m = 0; ok = true; break;
        case 9: ok = true; break;
        default: return;
        }
        for (int i = 0; i < 8; i++) out[i] = NOT_TOUCHED;
        int rc = ops_ref.gemm(&p, NULL);
        if (!ok) expect_rejected("gemm", c, rc, all_equal(out, NOT_TOUCHED, 8));
        else CHECK(rc == OPS_OK && (p.m == 0) == all_equal(out, NOT_TOUCHED, 8));
    }
}

static void test_bad_lm_head(void) {
    float hidden[3 * 2] = {0}, w[5 * 2] = {0}, logits[2 * 5];
    for (int c = 0;; c++) {
        int32_t rows[2] = {2, 0};
        LmHeadParams p = {hidden, rows, w, DT_BF16, logits, 2, 3, 2, 5};
        bool ok = false;
        switch (c) {
        case 0: p.hidden = NULL; break;
        case 1: p.rows = NULL; break;
        case 2: p.w = NULL; break;
        case 3: p.logits = NULL; break;
        case 4: p.w_dtype = (DType)3; break;
        case 5: p.n_rows = -1; break;
        case 6: p.n_tokens = -1; break;
        case 7: p.dim = 0; break;
        case 8: p.vocab = 0; break;
        case 9: rows[1] = 3; break;
        case 10: rows[1] = -1; break;
        case 11: p.n_tokens = 2; break; // row 2 is out of range now
        case 12: p.n_rows = 0; ok = true; break;
        case 13: ok = true; break;
        default: return;
        }
        for (int i = 0; i < 10; i++) logits[i] = NOT_TOUCHED;
        int rc = ops_ref.lm_head(&p, NULL);
        if (!ok) expect_rejected("lm_head", c, rc, all_equal(logits, NOT_TOUCHED, 10));
        else CHECK(rc == OPS_OK && (p.n_rows == 0) == all_equal(logits, NOT_TOUCHED, 10));
    }
}

static void test_bad_rope_kv_write(void) {
    // 3 tokens, Hq 2, Hkv 1, Dh 4: qkv rows of 16; 4 blocks of 2 slots
    float qkv[3 * 16], q[3 * 8], kc[4 * 2 * 4], vc[4 * 2 * 4], inv_freq[2] = {1, 0.5f};
    for (int i = 0; i < 48; i++) qkv[i] = (float)i;
    for (int c = 0;; c++) {
        int32_t pos[3] = {3, 9, 0};
        int64_t slots[3] = {7, -1, 0};
        RopeKvWriteParams p = {qkv, q, kc, vc, pos, slots, inv_freq, 3, 2, 1, 4, 2, 4};
        bool ok = false;
        switch (c) {
        case 0: p.qkv = NULL; break;
        case 1: p.q_out = NULL; break;
        case 2: p.k_cache = NULL; break;
        case 3: p.v_cache = NULL; break;
        case 4: p.positions = NULL; break;
        case 5: p.slot_mapping = NULL; break;
        case 6: p.inv_freq = NULL; break;
        case 7: p.n_tokens = -1; break;
        case 8: p.n_q_heads = 0; break;
        case 9: p.n_kv_heads = 0; break;
        case 10: p.head_dim = 0; break;
        case 11: p.head_dim = 3; break; // odd
        case 12: p.block_size = 0; break;
        case 13: p.num_blocks = 0; break;
        case 14: pos[1] = -1; break;
        case 15: slots[2] = 8; break; // the last token: validation precedes every write
        case 16: slots[2] = INT64_MAX; break;
        case 17: p.num_blocks = 3; break; // slot 7 is out of range now
        case 18: p.n_tokens = 0; ok = true; break;
        case 19: ok = true; break;
        default: return;
        }
        for (int i = 0; i < 24; i++) q[i] = NOT_TOUCHED;
        for (int i = 0; i < 32; i++) kc[i] = vc[i] = NOT_TOUCHED;
        int rc = ops_ref.rope_kv_write(&p, NULL);
        bool untouched = all_equal(q, NOT_TOUCHED, 24) && all_equal(kc, NOT_TOUCHED, 32) && all_equal(vc, NOT_TOUCHED, 32);
        if (!ok) expect_rejected("rope_kv_write", c, rc, untouched);
        else CHECK(rc == OPS_OK && (p.n_tokens == 0) == untouched);
    }
}

static void test_bad_silu_mul(void) {
    float gu[2 * 6] = {0}, out[2 * 3];
    for (int c = 0;; c++) {
        SiluMulParams p = {gu, gu + 3, out, 2, 3, 6};
        bool ok = false;
        switch (c) {
        case 0: p.gate = NULL; break;
        case 1: p.up = NULL; break;
        case 2: p.out = NULL; break;
        case 3: p.n_rows = -1; break;
        case 4: p.dim = 0; break;
        case 5: p.in_stride = 2; break; // < dim
        case 6: p.n_rows = 0; ok = true; break;
        case 7: ok = true; break;
        default: return;
        }
        for (int i = 0; i < 6; i++) out[i] = NOT_TOUCHED;
        int rc = ops_ref.silu_mul(&p, NULL);
        if (!ok) expect_rejected("silu_mul", c, rc, all_equal(out, NOT_TOUCHED, 6));
        else CHECK(rc == OPS_OK && (p.n_rows == 0) == all_equal(out, NOT_TOUCHED, 6));
    }
}

static void test_bad_attention(void) {
    // 2 sequences: 2 queries over a context of 3, 1 query over 5; pages of 2 slots
    enum { Hq = 4, Hkv = 2, Dh = 4, BS = 2, NB = 6, T = 3 };
    float q[T * Hq * Dh], out[T * Hq * Dh], kc[NB * BS * Hkv * Dh], vc[NB * BS * Hkv * Dh];
    for (int i = 0; i < NB * BS * Hkv * Dh; i++) kc[i] = vc[i] = 0.5f;
    for (int i = 0; i < T * Hq * Dh; i++) q[i] = 0.25f;
    for (int c = 0;; c++) {
        int32_t q_start[3] = {0, 2, 3}, ctx_len[2] = {3, 5}, indptr[3] = {0, 2, 5};
        int32_t indices[5] = {5, 1, 0, 2, 4};
        AttentionParams p = {q, kc, vc, out, q_start, ctx_len, indptr, indices, 2, T, Hq, Hkv,
                             Dh, BS, NB, 0, 0.5f, 2, 5};
        bool ok = false;
        switch (c) {
        case 0: p.q = NULL; break;
        case 1: p.k_cache = NULL; break;
        case 2: p.v_cache = NULL; break;
        case 3: p.out = NULL; break;
        case 4: p.q_start = NULL; break;
        case 5: p.ctx_len = NULL; break;
        case 6: p.kv_indptr = NULL; break;
        case 7: p.kv_indices = NULL; break;
        case 8: p.n_seqs = -1; break;
        case 9: p.n_tokens = -1; break;
        case 10: p.n_q_heads = 0; break;
        case 11: p.n_kv_heads = 0; break;
        case 12: p.n_kv_heads = 3; break; // does not divide 4
        case 13: p.head_dim = 0; break;
        case 14: p.block_size = 0; break;
        case 15: p.num_blocks = 0; break;
        case 16: p.num_blocks = 5; break; // block id 5 is out of range now
        case 17: p.sliding_window = -1; break;
        case 18: p.scale = NAN; break;
        case 19: q_start[0] = 1; break;
        case 20: q_start[1] = 4; break; // not monotone
        case 21: p.n_tokens = 4; break; // q_start[S] != T
        case 22: q_start[1] = INT32_MIN; break;
        case 23: ctx_len[0] = 1; break; // fewer than its 2 queries
        case 24: ctx_len[1] = -1; break;
        case 25: ctx_len[1] = 7; break; // needs 4 pages, has 3
        case 26: indptr[0] = 1; break;
        case 27: indptr[1] = 6; break; // not monotone
        case 28: indptr[1] = INT32_MIN; break;
        case 29: indices[4] = NB; break;
        case 30: indices[0] = -1; break;
        case 31: p.n_seqs = 0; break; // q_start[0] = 0 != T
        case 32: p.n_seqs = 0, p.n_tokens = 0; ok = true; break;
        case 33: ctx_len[1] = 6, p.max_ctx_len = 6; ok = true; break; // 3 pages of 2: still enough
        case 34: p.sliding_window = 1; ok = true; break;
        case 35: p.max_q_len = 1; break; // sequence 0 has 2 queries
        case 36: p.max_ctx_len = 4; break; // sequence 1's context is 5
        case 37: ok = true; break;
        default: return;
        }
        for (int i = 0; i < T * Hq * Dh; i++) out[i] = NOT_TOUCHED;
        int rc = ops_ref.attention(&p, NULL);
        bool untouched = all_equal(out, NOT_TOUCHED, T * Hq * Dh);
        if (!ok) {
            expect_rejected("attention", c, rc, untouched);
        } else {
            CHECK(rc == OPS_OK && (p.n_tokens == 0) == untouched);
            // every value row is 0.5, so every output is 0.5 whatever the weights
            if (p.n_tokens) CHECK(all_equal(out, 0.5f, T * Hq * Dh));
        }
    }
}

static void test_bad_arguments(void) {
    CHECK(ops_ref.embedding(NULL, NULL) == OPS_ERR_ARG);
    CHECK(ops_ref.rmsnorm(NULL, NULL) == OPS_ERR_ARG);
    CHECK(ops_ref.gemm(NULL, NULL) == OPS_ERR_ARG);
    CHECK(ops_ref.rope_kv_write(NULL, NULL) == OPS_ERR_ARG);
    CHECK(ops_ref.sample(NULL, NULL) == OPS_ERR_ARG);
    CHECK(ops_ref.attention(NULL, NULL) == OPS_ERR_ARG);
    CHECK(ops_ref.silu_mul(NULL, NULL) == OPS_ERR_ARG);
    CHECK(ops_ref.lm_head(NULL, NULL) == OPS_ERR_ARG);
    test_bad_embedding();
    test_bad_rmsnorm();
    test_bad_gemm();
    test_bad_lm_head();
    test_bad_rope_kv_write();
    test_bad_silu_mul();
    test_bad_attention();
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    RUN(test_table_and_memory);
    RUN(test_sum_and_copy_2d);
    RUN(test_embedding);
    RUN(test_rmsnorm);
    RUN(test_gemm);
    RUN(test_lm_head);
    RUN(test_rope_kv_write);
    RUN(test_silu_mul);
    RUN(test_sample);
    RUN(test_attention);
    RUN(test_bad_arguments);
    return test_exit();
}
