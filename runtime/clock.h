// Monotonic wall time for the runtime's timings and timeouts.
#ifndef MYRMEX_CLOCK_H
#define MYRMEX_CLOCK_H

#include <time.h>

// Seconds on CLOCK_MONOTONIC (an arbitrary origin: use differences).
static inline double mx_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
