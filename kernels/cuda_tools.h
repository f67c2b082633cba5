// CUDA runtime calls for the measuring tools, callable from plain C: the profiler capture
// range (`--profile-steps`, for `nsys profile --capture-range=cudaProfilerApi`) and the
// PCI bus id that NVML matches a CUDA device by. Present only in builds with the CUDA
// backend (MYRMEX_HAVE_CUDA).
#ifndef MYRMEX_CUDA_TOOLS_H
#define MYRMEX_CUDA_TOOLS_H

#include <stddef.h>

// cudaProfilerStart / cudaProfilerStop on the calling thread's device; 0 or -1.
int cuda_profiler_start(void);
int cuda_profiler_stop(void);

// "0000:3B:00.0" for CUDA device `index` into buf; 0, or -1 on error.
int cuda_device_pci_bus_id(int index, char *buf, size_t len);

#endif
