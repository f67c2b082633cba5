// The host side of the CUDA backend, checked on machines without a GPU (CI): cuBLAS is
// opened on first use and found, and asking for a GPU that is not there fails clearly
// while auto falls back to the CPU. Exits 77 (skipped) in builds without CUDA.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "test_util.h"

#ifdef MYRMEX_HAVE_CUDA
#include "cuda_device.h"
#include "ops_cuda.h"
#endif

int main(void) {
#ifndef MYRMEX_HAVE_CUDA
    fprintf(stderr, "skipped: built without the CUDA backend\n");
    return 77;
#else
    // libcublas is not linked; the first call opens it, later calls give the same answer.
    const char *why = ops_cuda_cublas_error();
    if (why) fprintf(stderr, "cuBLAS did not load: %s\n", why);
    CHECK(why == NULL);
    CHECK(ops_cuda_cublas_error() == why);

    Backend b;
    CHECK(backend_open("cuda:2000", &b) == MX_ERR_ARG); // not a device name
    if (backend_cuda_device_count() == 0) {
        CHECK(backend_open("cuda", &b) == MX_ERR_DEVICE);
        CHECK(strstr(mx_last_error(), "0 CUDA devices") != NULL);
        CHECK(backend_open("auto", &b) == MX_OK);
        CHECK(b.ops == &ops_ref && b.device == -1);
    } else {
        // A GPU of sm_80 or newer must be used (this build is meant to hold its code: the GPU
        // session builds for its own architecture); an older one is refused and auto falls
        // back to the CPU.
        char desc[256] = "";
        int sm = 0;
        CHECK(cuda_device_describe(0, desc, sizeof desc) == 0);
        const char *at = strstr(desc, "(sm_");
        if (at) sm = atoi(at + 4);
        MxStatus st = backend_open("cuda:0", &b);
        if (st != MX_OK) fprintf(stderr, "cuda:0 (%s) refused: %s\n", desc, mx_last_error());
        CHECK(sm >= 80 ? st == MX_OK : st == MX_ERR_DEVICE);
        if (st == MX_OK) {
            void *queue = NULL;
            st = backend_queue_create(&b, "cublas", &queue); // the code check and the cuBLAS handle
            if (st != MX_OK) fprintf(stderr, "queue on cuda:0: %s\n", mx_last_error());
            CHECK(st == MX_OK && queue);
            if (queue) b.ops->queue_destroy(queue);
        }
        CHECK(backend_open("auto", &b) == MX_OK);
        CHECK(sm >= 80 ? b.ops == &ops_cuda : b.ops == &ops_ref);
    }
    return test_exit();
#endif
}
