// Pieces shared by `myrmex bench` and `myrmex bench-serve`: the clock, progress lines on a
// terminal, JSON for latency summaries, and the run manifest (what ran where: build,
// commit, host, GPU state at start and end).
#ifndef MYRMEX_BENCH_COMMON_H
#define MYRMEX_BENCH_COMMON_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "bench_metrics.h"
#include "nvml.h"

// CLOCK_MONOTONIC in seconds.
double bench_now(void);

// A one-line progress display on stderr, drawn only when stdout and stderr are both
// terminals (never in pipes, files or tests).
typedef struct Progress {
    bool on;
    bool drawn;
} Progress;

void progress_init(Progress *p);
// "label [#####.....] done/total"
void progress_show(Progress *p, const char *label, int done, int total);
void progress_clear(Progress *p);

// {"mean", "p50", "p90", "p99", "min", "max", "n"} in milliseconds (values in seconds).
cJSON *summary_json_ms(const MetricSummary *s);

// The GPU's state as JSON: name, driver, power limit, temperature, clocks, power, throttle
// reasons (names and the slowdown flag); figures the driver did not report are null.
cJSON *nvml_state_json(const NvmlState *s);

// The run manifest: build (commit, dirty, type, flags, compiler, sanitizers, CUDA), host
// (name, CPU threads), UTC date, and `gpu` (taken over: an object, or NULL for
// {"status": "unavailable", "reason": why}).
cJSON *bench_manifest(cJSON *gpu, const char *why);

// Prints obj (consumed) on stdout as one line; 0 on success, -1 out of memory.
int print_json_line(cJSON *obj);
// MX_OK, or MX_ERR_IO when stdout could not be written (a full disk, a closed pipe).
MxStatus check_stdout(void);

// Whether argv has option `name` (as "NAME" or "NAME=..."), before any "--".
bool flag_given(int argc, char **argv, const char *name);

#endif
