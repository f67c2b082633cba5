// The cuBLAS baseline for gemm (`--gemm cublas`, and the reference the benchmarks and tests
// measure the hand-written kernels against): out[m, n] = sum_k x[m, k] * w[n, k], bf16 in and
// out, f32 accumulation (CUBLAS_COMPUTE_32F).
//
// cuBLAS is column-major. Our row-major out [M, N] is, read column-major, out^T [N, M] with
// leading dimension N, and out^T = w * x^T: w [N, K] row-major is w^T column-major (so op(A) =
// T, lda = K) and x [M, K] row-major is x^T column-major (op(B) = N, ldb = K).
//
// The handle is created when a queue switches to cuBLAS (ops_cuda_set_gemm, so never inside
// a graph capture) or else on its first cuBLAS GEMM; it is bound to the queue's stream and
// given q->scratch as its workspace so that it never allocates on its own (which it must not
// do while a CUDA graph is being captured). Sharing scratch with the split-K / split-KV
// partials of other ops is safe because ops on one queue run one after another.
//
// libcublas is opened with dlopen on first use, not linked: cuBLASLt's start-up code costs
// every process ~0.1 s and ~200 MB of memory, which commands that never touch it (tokenize,
// serve on the CPU, the test suite's hundreds of runs) should not pay.
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <mutex>

#include "cuda_internal.cuh"

// The entry points used, typed from cublas_v2.h (its macros map cublasCreate to *_v2 etc.).
struct CublasApi {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetWorkspace_v2) set_workspace;
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int m, int n, int k,
                              const void *alpha, const void *a, cudaDataType a_type, int lda, const void *b,
                              cudaDataType b_type, int ldb, const void *beta, void *c, cudaDataType c_type, int ldc,
                              cublasComputeType_t compute, cublasGemmAlgo_t algo); // the C entry point
};

static CublasApi api;
static char load_error[512];

#define CUBLAS_SONAME_(v) "libcublas.so." #v
#define CUBLAS_SONAME(v) CUBLAS_SONAME_(v)

// The loader's search path first, then the directory of the libcudart in use (the
// toolkit's lib folder or a Python wheel's), then the toolkit this was built with.
static void *open_cublas(void) {
    const char *name = CUBLAS_SONAME(CUBLAS_VER_MAJOR);
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (h) return h;
    snprintf(load_error, sizeof load_error, "%s", dlerror());
    char dirs[2][1024] = {"", ""};
    Dl_info info;
    if (dladdr((void *)&cudaRuntimeGetVersion, &info) && info.dli_fname && strrchr(info.dli_fname, '/'))
        snprintf(dirs[0], sizeof dirs[0], "%.*s", (int)(strrchr(info.dli_fname, '/') - info.dli_fname), info.dli_fname);
#ifdef MYRMEX_CUDA_LIB_DIR
    snprintf(dirs[1], sizeof dirs[1], "%s", MYRMEX_CUDA_LIB_DIR);
#endif
    for (int i = 0; i < 2 && !h; i++) {
        char path[1100];
        if (dirs[i][0] && snprintf(path, sizeof path, "%s/%s", dirs[i], name) < (int)sizeof path)
            h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    }
    return h;
}

static void load_cublas(void) {
    void *h = open_cublas();
    if (!h) return; // load_error says why
    CublasApi a;
    bool ok = (a.create = (decltype(a.create))dlsym(h, "cublasCreate_v2")) &&
              (a.destroy = (decltype(a.destroy))dlsym(h, "cublasDestroy_v2")) &&
              (a.set_stream = (decltype(a.set_stream))dlsym(h, "cublasSetStream_v2")) &&
              (a.set_workspace = (decltype(a.set_workspace))dlsym(h, "cublasSetWorkspace_v2")) &&
              (a.gemm_ex = (decltype(a.gemm_ex))dlsym(h, "cublasGemmEx"));
    if (!ok) {
        snprintf(load_error, sizeof load_error, "%s lacks an entry point: %s", CUBLAS_SONAME(CUBLAS_VER_MAJOR),
                 dlerror());
        dlclose(h);
        return;
    }
    api = a;
    load_error[0] = 0;
}

extern "C" const char *ops_cuda_cublas_error(void) {
    static std::once_flag once;
    std::call_once(once, load_cublas);
    return api.gemm_ex ? NULL : load_error;
}

static int cublas_status(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return OPS_OK;
    case CUBLAS_STATUS_INVALID_VALUE: return OPS_ERR_ARG;
    case CUBLAS_STATUS_NOT_SUPPORTED:
    case CUBLAS_STATUS_ARCH_MISMATCH: return OPS_ERR_UNSUPPORTED;
    case CUBLAS_STATUS_ALLOC_FAILED: return OPS_ERR_NOMEM;
    default: return OPS_ERR_DEVICE;
    }
}

// Creates and configures q->cublas on first use; leaves it NULL on failure.
int cuda_cublas_handle(CudaQueue *q) {
    if (q->cublas) return OPS_OK;
    if (ops_cuda_cublas_error()) return OPS_ERR_UNSUPPORTED;
    cublasHandle_t h = NULL;
    int rc = cublas_status(api.create(&h));
    if (rc != OPS_OK) return rc;
    rc = cublas_status(api.set_stream(h, q->stream));
    if (rc == OPS_OK && q->scratch && q->scratch_bytes > 0)
        rc = cublas_status(api.set_workspace(h, q->scratch, q->scratch_bytes));
    if (rc != OPS_OK) {
        api.destroy(h);
        return rc;
    }
    q->cublas = h;
    return OPS_OK;
}

int cuda_gemm_cublas(const GemmParams *p, CudaQueue *q) {
    if (!p || !q || !p->x || !p->w || !p->out) return OPS_ERR_ARG;
    if (p->w_dtype != DT_F32 && p->w_dtype != DT_F16 && p->w_dtype != DT_BF16) return OPS_ERR_ARG;
    if (p->w_dtype != DT_BF16) return OPS_ERR_UNSUPPORTED;
    if (p->m < 0 || p->n < 1 || p->k < 1) return OPS_ERR_ARG;
    if (p->m == 0) return OPS_OK;

    const int rc = cuda_cublas_handle(q);
    if (rc != OPS_OK) return rc;
    const float alpha = 1.0f, beta = 0.0f;
    // C (N x M, ldc N) = op(A) (N x K) * op(B) (K x M) with A = w seen as K x N (lda K),
    // op(A) = A^T, and B = x seen as K x M (ldb K).
    const cublasStatus_t s =
        api.gemm_ex(q->cublas, CUBLAS_OP_T, CUBLAS_OP_N, p->n, p->m, p->k, &alpha, p->w,
                     CUDA_R_16BF, p->k, p->x, CUDA_R_16BF, p->k, &beta, p->out, CUDA_R_16BF, p->n,
                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) return cublas_status(s);
    return cuda_launch_status();
}

// Destroys the queue's cuBLAS handle, if one was created (called by queue_destroy).
void cuda_cublas_destroy(CudaQueue *q) {
    if (q && q->cublas) {
        api.destroy(q->cublas);
        q->cublas = NULL;
    }
}
