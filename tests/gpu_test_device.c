// GPU smoke test: the CUDA backend sees a device and can describe it.
// Exits 77 (skipped) in CPU-only builds or on machines without a GPU.
#include <stdio.h>
#include <string.h>

#include "test_util.h"

#ifdef MYRMEX_HAVE_CUDA
#include "cuda_device.h"
#endif

int main(void) {
#ifndef MYRMEX_HAVE_CUDA
    fprintf(stderr, "skipped: built without the CUDA backend\n");
    return 77;
#else
    int n = cuda_device_count();
    if (n == 0) {
        fprintf(stderr, "skipped: no CUDA device\n");
        return 77;
    }
    for (int i = 0; i < n; i++) {
        char desc[256] = "";
        CHECK(cuda_device_describe(i, desc, sizeof desc) == 0);
        CHECK(strstr(desc, "sm_") != NULL);
        fprintf(stderr, "device %d: %s\n", i, desc);
    }
    CHECK(cuda_device_describe(n, (char[64]){0}, 64) == -1);
    return test_exit();
#endif
}
