// CUDA device discovery, callable from plain C. Present only in builds with the CUDA
// backend (MYRMEX_HAVE_CUDA); the kernels of ops_cuda join it in the CUDA issue.
#ifndef MYRMEX_CUDA_DEVICE_H
#define MYRMEX_CUDA_DEVICE_H

#include <stddef.h>

// Number of usable CUDA devices; 0 when there is no driver or no device.
int cuda_device_count(void);

// Writes "NAME (sm_XY, N MiB)" for device `index` into buf; returns 0, or -1 on error.
int cuda_device_describe(int index, char *buf, size_t len);

// 0 when device `index` is recent enough for the kernels; else -1 with the reason in why
// (older than sm_80: no bf16 tensor cores). Reads properties only: no context is created.
int cuda_device_check(int index, char *why, size_t len);

// 0 when this build holds code the current device can run; else -1 with the reason in why
// (its architecture missing from MYRMEX_CUDA_ARCHS). Creates the device's context.
int cuda_device_check_code(char *why, size_t len);

#endif
