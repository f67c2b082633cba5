// Profiling hooks (see profile.h). NVTX3 is header-only (from the CUDA install); it loads
// the profiler's injection library only when one is attached.
#include "profile.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MYRMEX_HAVE_CUDA
#include <nvtx3/nvToolsExt.h>

#include "cuda_tools.h"
#endif

bool profile_nvtx_on = false;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
#ifdef MYRMEX_HAVE_CUDA
static nvtxDomainHandle_t domain;
#endif

static void init_env(void) {
#ifdef MYRMEX_HAVE_CUDA
    const char *force = getenv("MYRMEX_NVTX");
    if (force && *force) profile_nvtx_on = strcmp(force, "0") != 0;
    else profile_nvtx_on = getenv("NVTX_INJECTION64_PATH") != NULL; // set by nsys and ncu
    if (profile_nvtx_on) domain = nvtxDomainCreateA("myrmex");
#endif
}

void profile_init(void) { pthread_once(&init_once, init_env); }

void profile_range_push(int rank, const char *fmt, ...) {
#ifdef MYRMEX_HAVE_CUDA
    char msg[160];
    int n = snprintf(msg, sizeof msg, "rank %d: ", rank);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof msg) vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    nvtxEventAttributes_t a;
    memset(&a, 0, sizeof a);
    a.version = NVTX_VERSION;
    a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    a.category = (uint32_t)rank; // nsys can group and filter ranges by category
    a.messageType = NVTX_MESSAGE_TYPE_ASCII;
    a.message.ascii = msg;
    nvtxDomainRangePushEx(domain, &a);
#else
    (void)rank;
    (void)fmt;
#endif
}

void profile_range_pop(void) {
#ifdef MYRMEX_HAVE_CUDA
    nvtxDomainRangePop(domain);
#endif
}

// ---- the capture window ------------------------------------------------------------------

#ifdef MYRMEX_HAVE_CUDA
static long capture_first, capture_last; // 0, 0: none
#endif
static bool capturing;

MxStatus profile_steps_parse(const char *text, long *first, long *last) {
    *first = *last = 0;
    char *end;
    errno = 0;
    long a = strtol(text, &end, 10);
    if (end == text || *end != ':' || errno) return mx_fail(MX_ERR_ARG, "--profile-steps '%s' is not A:B", text);
    const char *b_text = end + 1;
    long b = strtol(b_text, &end, 10);
    if (end == b_text || *end || errno) return mx_fail(MX_ERR_ARG, "--profile-steps '%s' is not A:B", text);
    if (a < 1 || b < a) return mx_fail(MX_ERR_ARG, "--profile-steps %ld:%ld needs 1 <= A <= B", a, b);
    *first = a;
    *last = b;
    return MX_OK;
}

MxStatus profile_capture_set(long first, long last) {
#ifdef MYRMEX_HAVE_CUDA
    if (first < 0 || last < first) return mx_fail(MX_ERR_ARG, "capture steps %ld:%ld", first, last);
    capture_first = first;
    capture_last = last;
    return MX_OK;
#else
    if (first == 0 && last == 0) return MX_OK;
    return mx_fail(MX_ERR_DEVICE, "--profile-steps needs a build with the CUDA backend (cudaProfilerStart)");
#endif
}

void profile_step_begin(long step) {
#ifdef MYRMEX_HAVE_CUDA
    if (capture_first > 0 && step == capture_first && !capturing && cuda_profiler_start() == 0) capturing = true;
#else
    (void)step;
#endif
}

void profile_step_end(long step) {
#ifdef MYRMEX_HAVE_CUDA
    if (capturing && step >= capture_last) {
        cuda_profiler_stop();
        capturing = false;
    }
#else
    (void)step;
#endif
}

bool profile_capture_active(void) { return capturing; }
