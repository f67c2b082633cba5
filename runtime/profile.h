// Profiling hooks for Nsight Systems: NVTX ranges around each engine step, layer and op
// (named with the TP rank), and a capture window of engine steps bracketed by
// cudaProfilerStart/Stop so that
//     nsys profile --capture-range=cudaProfilerApi myrmex bench ... --profile-steps A:B
// records exactly steps A..B.
//
// Cost: in a build without CUDA the macros compile to nothing. With CUDA, ranges are
// emitted only when a tool is attached (nsys sets NVTX_INJECTION64_PATH) or MYRMEX_NVTX=1;
// otherwise each macro is one predictable branch on a global flag (no formatting, no call).
// MYRMEX_NVTX=0 turns them off even under nsys.
//
//   PROFILE_PUSH(rank, "layer %d", l);        // ranges nest per thread (one per TP rank)
//   PROFILE_PUSH(rank, "L%d qkv_gemm", l);
//   ...
//   PROFILE_POP();
//   PROFILE_POP();
#ifndef MYRMEX_PROFILE_H
#define MYRMEX_PROFILE_H

#include <stdbool.h>

#include "status.h"

// Reads the environment once (thread-safe, idempotent); the engine calls it at create.
void profile_init(void);

extern bool profile_nvtx_on; // set by profile_init

// A range on the calling thread's NVTX stack, domain "myrmex", message "rank R: ...".
void profile_range_push(int rank, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void profile_range_pop(void);

#ifdef MYRMEX_HAVE_CUDA
#define PROFILE_PUSH(rank, ...)                                                               \
    do {                                                                                      \
        if (profile_nvtx_on) profile_range_push((rank), __VA_ARGS__);                         \
    } while (0)
#define PROFILE_POP()                                                                         \
    do {                                                                                      \
        if (profile_nvtx_on) profile_range_pop();                                             \
    } while (0)
#else
#define PROFILE_PUSH(rank, ...) ((void)0)
#define PROFILE_POP() ((void)0)
#endif

// Parses "A:B" (1 <= A <= B, engine step numbers as counted by MxEngineStats.steps).
// MX_ERR_ARG with the reason otherwise.
MxStatus profile_steps_parse(const char *text, long *first, long *last);

// Sets the capture window [first, last] for every engine in the process (0, 0 = none).
// MX_ERR_DEVICE in a build without CUDA (there is no CUDA profiler to start).
MxStatus profile_capture_set(long first, long last);

// Called by the engine around step `step` (1-based): cudaProfilerStart before the first
// step of the window, cudaProfilerStop after the last. No-ops outside the window.
void profile_step_begin(long step);
void profile_step_end(long step);

// Whether a capture is running now (between start and stop).
bool profile_capture_active(void);

#endif
