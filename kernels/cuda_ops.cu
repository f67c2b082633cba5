// ops_cuda: the Ops table of the CUDA backend, its memory and queue ops, GEMM dispatch and
// graph capture. The kernels live one op family per file (cuda_internal.cuh lists them).
#include <stdio.h>
#include <string.h>

#include "cuda_internal.cuh"

// ---- memory -------------------------------------------------------------------------------

static void *cu_alloc(size_t bytes) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 256) != cudaSuccess) {
        cudaGetLastError(); // an allocation failure is not sticky; clear it
        return NULL;
    }
    return p;
}

static void cu_free(void *p) {
    if (p) cudaFree(p);
}

// Pinned host memory: copies from it run at full PCIe/NVLink-C2C speed and asynchronously.
static void *cu_host_alloc(size_t bytes) {
    void *p = NULL;
    if (cudaMallocHost(&p, bytes ? bytes : 256) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void cu_host_free(void *p) {
    if (p) cudaFreeHost(p);
}

static int cu_copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, void *queue) {
    if (bytes == 0) return OPS_OK;
    if (!dst || !src || !queue) return OPS_ERR_ARG;
    if (cudaMemcpyAsync(dst, src, bytes, kind, ((CudaQueue *)queue)->stream) != cudaSuccess) {
        cudaGetLastError(); // a rejected copy (bad pointer) is not sticky: do not blame the next op
        return OPS_ERR_DEVICE;
    }
    return OPS_OK;
}

static int cu_upload(void *dst, const void *src, size_t bytes, void *queue) {
    return cu_copy(dst, src, bytes, cudaMemcpyHostToDevice, queue);
}

static int cu_download(void *dst, const void *src, size_t bytes, void *queue) {
    return cu_copy(dst, src, bytes, cudaMemcpyDeviceToHost, queue);
}

static int cu_sync(void *queue) {
    if (!queue) return OPS_ERR_ARG;
    return cudaStreamSynchronize(((CudaQueue *)queue)->stream) == cudaSuccess ? OPS_OK : OPS_ERR_DEVICE;
}

// ---- queues -------------------------------------------------------------------------------

static void cu_queue_destroy(void *queue) {
    CudaQueue *q = (CudaQueue *)queue;
    if (!q) return;
    if (q->stream) cudaStreamSynchronize(q->stream);
    cuda_cublas_destroy(q);
    if (q->scratch) cudaFree(q->scratch);
    if (q->stream) cudaStreamDestroy(q->stream);
    free(q);
}

static void *cu_queue_create(void) {
    CudaQueue *q = (CudaQueue *)calloc(1, sizeof *q);
    if (!q) return NULL;
    int dev = 0;
    cudaDeviceProp prop;
    bool ok = cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&prop, dev) == cudaSuccess &&
              cudaStreamCreateWithFlags(&q->stream, cudaStreamNonBlocking) == cudaSuccess &&
              cudaMalloc(&q->scratch, CUDA_SCRATCH_BYTES) == cudaSuccess;
    if (!ok) {
        cudaGetLastError();
        cu_queue_destroy(q);
        return NULL;
    }
    q->scratch_bytes = CUDA_SCRATCH_BYTES;
    q->gemm = CUDA_GEMM_AUTO;
    q->sm_major = prop.major;
    q->sm_minor = prop.minor;
    q->num_sms = prop.multiProcessorCount;
    q->smem_optin = prop.sharedMemPerBlockOptin;
    return q;
}

// ---- GEMM dispatch ------------------------------------------------------------------------

static int cu_gemm(const GemmParams *p, void *queue) {
    CudaQueue *q = (CudaQueue *)queue;
    if (!p || !q) return OPS_ERR_ARG;
    if (p->w_dtype != DT_BF16) return OPS_ERR_UNSUPPORTED; // the runtime converts weights on load
    switch (q->gemm) {
    case CUDA_GEMM_CUBLAS: return cuda_gemm_cublas(p, q);
    case CUDA_GEMM_SKINNY: return cuda_gemm_skinny(p, q);
    case CUDA_GEMM_MMA: return cuda_gemm_mma(p, q);
    case CUDA_GEMM_WGMMA: return cuda_gemm_wgmma(p, q);
    default: break;
    }
    // Decode-sized M streams the weights; larger M is compute-bound and uses tensor cores.
    if (p->m <= 64) return cuda_gemm_skinny(p, q);
    if (q->sm_major == 9) {
        int rc = cuda_gemm_wgmma(p, q);
        if (rc != OPS_ERR_UNSUPPORTED) return rc;
    }
    return cuda_gemm_mma(p, q); // tiles what it can, a generic kernel for the rest
}

// ---- ops with a CudaQueue -----------------------------------------------------------------

#define CU_OP(name, Params)                                                  \
    static int cu_##name(const Params *p, void *queue) {                   \
        if (!queue) return OPS_ERR_ARG;                                      \
        return cuda_##name(p, (CudaQueue *)queue);                          \
    }
CU_OP(embedding, EmbeddingParams)
CU_OP(rmsnorm, RmsNormParams)
CU_OP(rope_kv_write, RopeKvWriteParams)
CU_OP(attention, AttentionParams)
CU_OP(silu_mul, SiluMulParams)
CU_OP(lm_head, LmHeadParams)
CU_OP(sample, SampleParams)
CU_OP(sum, SumParams)

static int cu_fill(void *dst, size_t n, DType dtype, uint64_t seed, float lo, float hi, void *queue) {
    if (!queue) return OPS_ERR_ARG;
    return cuda_fill(dst, n, dtype, seed, lo, hi, (CudaQueue *)queue);
}

static int cu_copy_2d(void *dst, size_t dst_pitch, const void *src, size_t src_pitch, size_t width, size_t rows,
                      void *queue) {
    if (!queue) return OPS_ERR_ARG;
    return cuda_copy_2d(dst, dst_pitch, src, src_pitch, width, rows, (CudaQueue *)queue);
}

// ---- graphs -------------------------------------------------------------------------------

static int cu_capture_begin(void *queue) {
    if (!queue) return OPS_ERR_ARG;
    if (cudaStreamBeginCapture(((CudaQueue *)queue)->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        cudaGetLastError(); // not sticky (e.g. already capturing): do not blame the next op's launch
        return OPS_ERR_DEVICE;
    }
    return OPS_OK;
}

// The captured graph is instantiated once; what the caller keeps is the executable graph.
static int cu_capture_end(void *queue, void **graph) {
    if (!queue || !graph) return OPS_ERR_ARG;
    *graph = NULL;
    cudaGraph_t g = NULL;
    if (cudaStreamEndCapture(((CudaQueue *)queue)->stream, &g) != cudaSuccess || !g) {
        cudaGetLastError();
        return OPS_ERR_DEVICE;
    }
    cudaGraphExec_t exec = NULL;
    cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return OPS_ERR_DEVICE;
    }
    *graph = exec;
    return OPS_OK;
}

static int cu_graph_launch(void *graph, void *queue) {
    if (!graph || !queue) return OPS_ERR_ARG;
    if (cudaGraphLaunch((cudaGraphExec_t)graph, ((CudaQueue *)queue)->stream) != cudaSuccess) {
        cudaGetLastError(); // as in cu_capture_begin
        return OPS_ERR_DEVICE;
    }
    return OPS_OK;
}

static void cu_graph_destroy(void *graph) {
    if (graph) cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

// ---- the table and the C entry points -----------------------------------------------------

extern "C" const Ops ops_cuda = {
    /*name*/ "cuda",
    /*act_dtype*/ DT_BF16,
    /*host_memory*/ false,
    cu_alloc,
    cu_free,
    cu_host_alloc,
    cu_host_free,
    cu_queue_create,
    cu_queue_destroy,
    cu_upload,
    cu_download,
    cu_sync,
    cu_embedding,
    cu_rmsnorm,
    cu_gemm,
    cu_rope_kv_write,
    cu_attention,
    cu_silu_mul,
    cu_lm_head,
    cu_sample,
    cu_fill,
    cu_sum,
    cu_copy_2d,
    cu_capture_begin,
    cu_capture_end,
    cu_graph_launch,
    cu_graph_destroy,
};

extern "C" const char *cuda_gemm_impl_name(CudaGemmImpl impl) {
    static const char *names[CUDA_GEMM_IMPL_COUNT] = {"auto", "cublas", "skinny", "mma", "wgmma"};
    return impl >= 0 && impl < CUDA_GEMM_IMPL_COUNT ? names[impl] : "?";
}

extern "C" int ops_cuda_set_gemm(void *queue, CudaGemmImpl impl) {
    CudaQueue *q = (CudaQueue *)queue;
    if (!q || impl < 0 || impl >= CUDA_GEMM_IMPL_COUNT) return OPS_ERR_ARG;
#ifdef MYRMEX_HAVE_SM90A
    if (impl == CUDA_GEMM_WGMMA && q->sm_major != 9) return OPS_ERR_UNSUPPORTED;
#else
    if (impl == CUDA_GEMM_WGMMA) return OPS_ERR_UNSUPPORTED; // no sm_90a in MYRMEX_CUDA_ARCHS
#endif
    // The handle now, not in the first GEMM, which may be inside a graph capture.
    if (impl == CUDA_GEMM_CUBLAS && cuda_cublas_handle(q) != OPS_OK) return OPS_ERR_UNSUPPORTED;
    q->gemm = impl;
    return OPS_OK;
}

extern "C" void *ops_cuda_stream(void *queue) { return queue ? (void *)((CudaQueue *)queue)->stream : NULL; }

extern "C" int ops_cuda_use_device(int index) {
    if (cudaSetDevice(index) != cudaSuccess) {
        cudaGetLastError();
        return OPS_ERR_DEVICE;
    }
    return OPS_OK;
}

extern "C" int ops_cuda_mem_info(size_t *free_bytes, size_t *total_bytes) {
    if (cudaMemGetInfo(free_bytes, total_bytes) != cudaSuccess) {
        cudaGetLastError();
        return OPS_ERR_DEVICE;
    }
    return OPS_OK;
}
