// CUDA device discovery, callable from plain C. Present only in builds with the CUDA
// backend (MYRMEX_HAVE_CUDA); the kernels of ops_cuda join it in the CUDA issue.
#ifndef MYRMEX_CUDA_DEVICE_H
#define MYRMEX_CUDA_DEVICE_H

#include <stddef.h>

// Number of usable CUDA devices; 0 when there is no driver or no device.
int cuda_device_count(void);

// Writes "NAME (sm_XY, N MiB)" for device `index` into buf; returns 0, or -1 on error.
int cuda_device_describe(int index, char *buf, size_t len);

// 0 when this build's kernels can run on device `index`; else -1 with the reason in why
// (a GPU older than sm_80, which has no bf16 tensor cores, or an architecture the build
// holds no code for). Makes `index` the thread's current device.
int cuda_device_check(int index, char *why, size_t len);

#endif
