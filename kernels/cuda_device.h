// CUDA device discovery, callable from plain C. Present only in builds with the CUDA
// backend (MYRMEX_HAVE_CUDA); the kernels of ops_cuda join it in the CUDA issue.
#ifndef MYRMEX_CUDA_DEVICE_H
#define MYRMEX_CUDA_DEVICE_H

#include <stddef.h>

// Number of usable CUDA devices; 0 when there is no driver or no device.
int cuda_device_count(void);

// Writes "NAME (sm_XY, N MiB)" for device `index` into buf; returns 0, or -1 on error.
int cuda_device_describe(int index, char *buf, size_t len);

#endif
