// Shared pieces of the benchmark commands (see bench_common.h).
#include "bench_common.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "build_info.h"
#include "json_util.h"

double bench_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void progress_init(Progress *p) { *p = (Progress){.on = isatty(STDOUT_FILENO) && isatty(STDERR_FILENO)}; }

void progress_show(Progress *p, const char *label, int done, int total) {
    if (!p->on || total <= 0) return;
    enum { WIDTH = 30 };
    char bar[WIDTH + 1];
    int fill = (int)((long)WIDTH * done / total);
    for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    fprintf(stderr, "\r\033[K%s [%s] %d/%d", label, bar, done, total);
    fflush(stderr);
    p->drawn = true;
}

void progress_clear(Progress *p) {
    if (!p->on || !p->drawn) return;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
    p->drawn = false;
}

cJSON *summary_json_ms(const MetricSummary *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "mean", s->mean * 1e3);
    cJSON_AddNumberToObject(o, "p50", s->p50 * 1e3);
    cJSON_AddNumberToObject(o, "p90", s->p90 * 1e3);
    cJSON_AddNumberToObject(o, "p99", s->p99 * 1e3);
    cJSON_AddNumberToObject(o, "min", s->min * 1e3);
    cJSON_AddNumberToObject(o, "max", s->max * 1e3);
    cJSON_AddNumberToObject(o, "n", s->n);
    return o;
}

static void add_number_or_null(cJSON *o, const char *key, bool has, double v) {
    if (has) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

cJSON *nvml_state_json(const NvmlState *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", s->name);
    cJSON_AddStringToObject(o, "driver", s->driver);
    add_number_or_null(o, "power_limit_w", s->has_power_limit, s->power_limit_w);
    add_number_or_null(o, "power_w", s->has_power, s->power_w);
    add_number_or_null(o, "temperature_c", s->has_temp, s->temp_c);
    add_number_or_null(o, "sm_clock_mhz", s->has_clocks, s->sm_mhz);
    add_number_or_null(o, "mem_clock_mhz", s->has_clocks, s->mem_mhz);
    if (s->has_throttle) {
        char names[256];
        nvml_throttle_names(s->throttle, names, sizeof names);
        cJSON_AddStringToObject(o, "throttle_reasons", names);
        cJSON_AddBoolToObject(o, "throttled", nvml_throttle_is_slowdown(s->throttle));
    } else {
        cJSON_AddNullToObject(o, "throttle_reasons");
        cJSON_AddNullToObject(o, "throttled");
    }
    return o;
}

cJSON *bench_manifest(cJSON *gpu, const char *why) {
    BuildInfo b;
    build_info(&b);
    cJSON *m = cJSON_CreateObject();
    cJSON *build = cJSON_AddObjectToObject(m, "build");
    cJSON_AddStringToObject(build, "commit", b.commit);
    cJSON_AddBoolToObject(build, "dirty", b.dirty);
    cJSON_AddStringToObject(build, "build_type", b.build_type);
    cJSON_AddStringToObject(build, "c_flags", b.c_flags);
    cJSON_AddStringToObject(build, "compiler", b.compiler);
    cJSON_AddBoolToObject(build, "sanitize", b.sanitize);
    cJSON_AddBoolToObject(build, "cuda", b.cuda);
    cJSON_AddStringToObject(build, "cuda_version", b.cuda_version);
    cJSON *host = cJSON_AddObjectToObject(m, "host");
    char name[256] = "unknown";
    if (gethostname(name, sizeof name) != 0) snprintf(name, sizeof name, "unknown");
    name[sizeof name - 1] = '\0';
    cJSON_AddStringToObject(host, "name", name);
    cJSON_AddNumberToObject(host, "cpu_threads", (double)sysconf(_SC_NPROCESSORS_ONLN));
    char date[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(m, "date_utc", date);
    if (!gpu) {
        gpu = cJSON_CreateObject();
        cJSON_AddStringToObject(gpu, "status", "unavailable");
        cJSON_AddStringToObject(gpu, "reason", why ? why : "");
    }
    cJSON_AddItemToObject(m, "gpu", gpu);
    return m;
}

int print_json_line(cJSON *obj) {
    char *text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!text) return -1;
    puts(text);
    cJSON_free(text);
    return 0;
}

MxStatus check_stdout(void) {
    if (fflush(stdout) != 0 || ferror(stdout)) return mx_fail(MX_ERR_IO, "cannot write standard output");
    return MX_OK;
}

bool flag_given(int argc, char **argv, const char *name) {
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strncmp(argv[i], name, n) == 0 && (argv[i][n] == '\0' || argv[i][n] == '=')) return true;
    }
    return false;
}
