// Backend selection (see backend.h).
#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef MYRMEX_HAVE_CUDA
#include "cuda_device.h"
#include "ops_cuda.h"
#endif

static MxStatus open_cpu(Backend *out) {
    out->ops = &ops_ref;
    out->device = -1;
    snprintf(out->desc, sizeof out->desc, "cpu (%d threads)", ops_ref_threads());
    return MX_OK;
}

// "cuda" -> 0, "cuda:N" -> N; -1 when the name is not a CUDA device name.
static int cuda_index(const char *name) {
    if (strcmp(name, "cuda") == 0) return 0;
    if (strncmp(name, "cuda:", 5) != 0 || !name[5]) return -1;
    char *end;
    long v = strtol(name + 5, &end, 10);
    return *end || v < 0 || v > 1024 ? -1 : (int)v;
}

MxStatus backend_open(const char *name, Backend *out) {
    memset(out, 0, sizeof *out);
    if (!name || strcmp(name, "auto") == 0) {
#ifdef MYRMEX_HAVE_CUDA
        if (cuda_device_count() > 0) {
            if (backend_open("cuda:0", out) == MX_OK) return MX_OK;
            fprintf(stderr, "myrmex: not using the GPU: %s\n", mx_last_error());
        }
#endif
        return open_cpu(out);
    }
    if (strcmp(name, "cpu") == 0) return open_cpu(out);
    int index = cuda_index(name);
    if (index < 0) return mx_fail(MX_ERR_ARG, "unknown device '%s' (expected auto, cpu, cuda or cuda:N)", name);
#ifdef MYRMEX_HAVE_CUDA
    int n = cuda_device_count();
    if (index >= n)
        return mx_fail(MX_ERR_DEVICE, "device %s asked for, but %d CUDA device%s found", name, n, n == 1 ? " is" : "s are");
    char what[128];
    if (cuda_device_describe(index, what, sizeof what) != 0) return mx_fail(MX_ERR_DEVICE, "cannot query CUDA device %d", index);
    char why[256];
    if (cuda_device_check(index, why, sizeof why) != 0) return mx_fail(MX_ERR_DEVICE, "device %s: %s", name, why);
    out->ops = &ops_cuda;
    out->device = index;
    snprintf(out->desc, sizeof out->desc, "cuda:%d %s", index, what);
    return MX_OK; // not bound: making a device current creates its context (see backend.h)
#else
    return mx_fail(MX_ERR_DEVICE, "device %s asked for, but this build has no CUDA backend (nvcc was not found)", name);
#endif
}

int backend_cuda_device_count(void) {
#ifdef MYRMEX_HAVE_CUDA
    return cuda_device_count();
#else
    return 0;
#endif
}

MxStatus backend_bind_thread(const Backend *b) {
#ifdef MYRMEX_HAVE_CUDA
    if (b->ops == &ops_cuda && b->device >= 0 && ops_cuda_use_device(b->device) != OPS_OK)
        return mx_fail(MX_ERR_DEVICE, "cannot use CUDA device %d", b->device);
#else
    (void)b;
#endif
    return MX_OK;
}

MxStatus backend_queue_create(const Backend *b, const char *gemm, void **queue) {
    *queue = NULL;
    MxStatus bound = backend_bind_thread(b); // the queue's stream lives on b's device
    if (bound) return bound;
    bool default_gemm = !gemm || strcmp(gemm, "auto") == 0;
#ifdef MYRMEX_HAVE_CUDA
    CudaGemmImpl impl = CUDA_GEMM_AUTO;
    if (!default_gemm) {
        for (int i = 0; i < CUDA_GEMM_IMPL_COUNT; i++)
            if (strcmp(gemm, cuda_gemm_impl_name((CudaGemmImpl)i)) == 0) impl = (CudaGemmImpl)i;
        if (impl == CUDA_GEMM_AUTO)
            return mx_fail(MX_ERR_ARG, "unknown --gemm '%s' (expected auto, cublas, skinny, mma or wgmma)", gemm);
        if (b->ops != &ops_cuda) return mx_fail(MX_ERR_ARG, "--gemm %s needs the CUDA backend", gemm);
        const char *why = impl == CUDA_GEMM_CUBLAS ? ops_cuda_cublas_error() : NULL;
        if (why) return mx_fail(MX_ERR_DEVICE, "--gemm cublas: cannot load cuBLAS: %s", why);
    }
#else
    if (!default_gemm) return mx_fail(MX_ERR_ARG, "--gemm %s needs the CUDA backend", gemm);
#endif
#ifdef MYRMEX_HAVE_CUDA
    // Here, on the device this rank uses, not in backend_open: the check makes a context,
    // and every process would otherwise make one on GPU 0.
    char why[256];
    if (b->ops == &ops_cuda && cuda_device_check_code(why, sizeof why) != 0)
        return mx_fail(MX_ERR_DEVICE, "%s: %s", b->desc, why);
#endif
    void *q = b->ops->queue_create();
    if (!q) return mx_fail(MX_ERR_DEVICE, "cannot create a queue on %s", b->desc);
#ifdef MYRMEX_HAVE_CUDA
    if (impl != CUDA_GEMM_AUTO && ops_cuda_set_gemm(q, impl) != OPS_OK) {
        b->ops->queue_destroy(q);
        return mx_fail(MX_ERR_ARG, "--gemm %s is not supported on %s", gemm, b->desc);
    }
#endif
    *queue = q;
    return MX_OK;
}

MxStatus backend_memory(const Backend *b, size_t *free_bytes, size_t *total_bytes) {
#ifdef MYRMEX_HAVE_CUDA
    if (b->ops == &ops_cuda) {
        if (ops_cuda_mem_info(free_bytes, total_bytes) != OPS_OK) return mx_fail(MX_ERR_DEVICE, "cannot query device memory");
        return MX_OK;
    }
#endif
    (void)b;
    long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || avail < 0 || size <= 0) return mx_fail(MX_ERR_IO, "cannot query host memory");
    *total_bytes = (size_t)pages * (size_t)size;
    *free_bytes = (size_t)avail * (size_t)size;
    return MX_OK;
}
