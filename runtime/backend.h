// Choosing the backend a model runs on: `--device cuda|cpu|auto` and `--gemm`.
//
// auto picks CUDA when this build has the CUDA backend and a device is present, else the
// CPU reference backend. The runtime above this file sees only an Ops table and a queue.
#ifndef MYRMEX_BACKEND_H
#define MYRMEX_BACKEND_H

#include <stddef.h>

#include "../kernels/kernels.h"
#include "status.h"

typedef struct Backend {
    const Ops *ops;
    int device;        // CUDA device index, -1 on CPU
    char desc[160];    // "cuda:0 NVIDIA H200 (sm_90, 143771 MiB)" or "cpu (16 threads)"
} Backend;

// name: "auto", "cpu" or "cuda" (also "cuda:N"). gemm: NULL/"auto", "cublas", "skinny",
// "mma" or "wgmma" (CUDA only). Errors: MX_ERR_ARG for an unknown name, MX_ERR_DEVICE when
// CUDA was asked for and this build or machine has none (or a GPU older than sm_80).
// Reads device properties only: the device is not made current, since that creates its
// context (hundreds of MiB), and processes sharing a node each use other GPUs. Whoever
// uses the backend binds it first (backend_bind_thread; model loads and queue creation do).
MxStatus backend_open(const char *name, Backend *out);

// CUDA devices present (0 in a build without the CUDA backend).
int backend_cuda_device_count(void);

// Makes the backend's device current for the calling thread (each rank's thread calls it).
MxStatus backend_bind_thread(const Backend *b);

// A queue on the backend, with the GEMM implementation chosen by `gemm` (NULL = auto); binds
// the calling thread to the backend's device first.
MxStatus backend_queue_create(const Backend *b, const char *gemm, void **queue);

// Memory the backend can still allocate (device memory, or host RAM available), in bytes.
MxStatus backend_memory(const Backend *b, size_t *free_bytes, size_t *total_bytes);

#endif
