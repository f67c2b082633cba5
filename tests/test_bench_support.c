// The pieces around the benchmark metrics: bench-serve's SSE reader (events split at every
// byte boundary, usage counts, [DONE], error events, bad JSON, CRLF), NVML reported
// unavailable when the library is missing, several GPUs as one (energy summed, states and
// monitor windows merged; through tests/fake_nvml.c where CMake built it), throttle-reason
// names, --profile-steps parsing and the build facts baked in by CMake.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_sse.h"
#include "build_info.h"
#include "nvml.h"
#include "profile.h"
#include "test_util.h"

static const char stream[] =
    ": a comment\r\n"
    "data: {\"choices\":[{\"index\":0,\"text\":\" a\",\"finish_reason\":null}]}\r\n\r\n"
    "event: x\n"
    "data:{\"choices\":[{\"index\":0,\"text\":\" b\"}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"c\"}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}\n\n"
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":5}}\n\n"
    "data: [DONE]\n\n";

// Feeds the stream in pieces of `piece` bytes, piece k at time k.
static void feed_in_pieces(SseStream *s, size_t piece) {
    size_t len = strlen(stream);
    for (size_t at = 0, k = 0; at < len; at += piece, k++) {
        size_t n = len - at < piece ? len - at : piece;
        CHECK(sse_feed(s, stream + at, n, (double)k));
    }
}

static void test_sse_split_anywhere(void) {
    for (size_t piece = 1; piece <= strlen(stream); piece++) {
        SseStream s;
        sse_init(&s);
        feed_in_pieces(&s, piece);
        // Three token events (the finish-only chunk and the usage chunk are not tokens).
        CHECK(s.n_events == 3 && s.done && !s.failed);
        CHECK(s.usage_prompt_tokens == 7 && s.usage_completion_tokens == 5);
        // Each event is stamped with the piece that completed its line.
        const char *ends[3] = {"\" a\",\"finish_reason\":null}]}\r\n", "\" b\"}]}\n", "\"c\"}}]}\n"};
        for (int e = 0; e < 3 && s.n_events == 3; e++) {
            size_t end = (size_t)(strstr(stream, ends[e]) - stream) + strlen(ends[e]) - 1; // its '\n'
            CHECK(s.times[e] == (double)(end / piece));
        }
        sse_free(&s);
    }
}

static void test_sse_failures(void) {
    SseStream s;
    sse_init(&s);
    const char *err = "data: {\"choices\":[{\"text\":\"x\"}]}\n\ndata: {\"error\":{\"message\":\"overloaded\"}}\n\n";
    CHECK(sse_feed(&s, err, strlen(err), 1.0));
    CHECK(s.failed && s.n_events == 1 && strstr(s.error, "overloaded") != NULL && !s.done);
    sse_free(&s);
    sse_init(&s);
    const char *junk = "data: {not json\n\n";
    CHECK(sse_feed(&s, junk, strlen(junk), 1.0));
    CHECK(s.failed && strstr(s.error, "not a JSON object") != NULL);
    sse_free(&s);
    // No usage object: counts stay -1 (the client counts events instead).
    sse_init(&s);
    const char *plain = "data: {\"choices\":[{\"text\":\"x\"}]}\n\ndata: [DONE]\n\n";
    CHECK(sse_feed(&s, plain, strlen(plain), 2.0));
    CHECK(s.n_events == 1 && s.done && s.usage_completion_tokens == -1 && s.usage_prompt_tokens == -1);
    sse_free(&s);
}

static void test_nvml_unavailable(void) {
    setenv("MYRMEX_NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1", 1);
    char why[256] = "";
    int gpus[2] = {0, 1};
    Nvml *n = nvml_open(gpus, 2, why, sizeof why);
    CHECK(n == NULL);
    CHECK(strstr(why, "cannot load /nonexistent/libnvidia-ml.so.1") != NULL);
    n = nvml_open(NULL, 0, why, sizeof why); // the CPU backend: the engine lists no device
    CHECK(n == NULL && strcmp(why, "no GPU in use") == 0);
    int cpu = -1;
    n = nvml_open(&cpu, 1, why, sizeof why);
    CHECK(n == NULL && strcmp(why, "no GPU in use") == 0);
    CHECK(nvml_gpu_count(NULL) == 0);
    double j = -1;
    CHECK(!nvml_energy_joules(NULL, &j) && j == -1);
    nvml_close(NULL);
    unsetenv("MYRMEX_NVML_LIBRARY");
}

static NvmlState fake_state(const char *name, double power, unsigned temp, unsigned sm, unsigned long long throttle) {
    NvmlState s = {.has_power = true, .has_power_limit = true, .has_temp = true, .has_clocks = true,
                   .has_throttle = true, .power_w = power, .power_limit_w = 700, .temp_c = temp, .sm_mhz = sm,
                   .mem_mhz = 2619, .throttle = throttle};
    snprintf(s.name, sizeof s.name, "%s", name);
    snprintf(s.driver, sizeof s.driver, "1.2.3");
    return s;
}

// Several GPUs as one: sums, extremes, names; one GPU is left as it is.
static void test_nvml_merge(void) {
    NvmlState g[3] = {fake_state("H200", 100, 40, 1980, 0x1), fake_state("H200", 150, 45, 1500, 0x4),
                      fake_state("H200", 120, 41, 1700, 0)};
    NvmlState s;
    nvml_state_sum(g, 1, &s);
    CHECK(memcmp(&s, &g[0], sizeof s) == 0);
    nvml_state_sum(g, 3, &s);
    CHECK(strcmp(s.name, "3 x H200") == 0 && strcmp(s.driver, "1.2.3") == 0);
    CHECK(s.has_power && s.power_w == 370 && s.has_power_limit && s.power_limit_w == 2100);
    CHECK(s.has_temp && s.temp_c == 45 && s.has_clocks && s.sm_mhz == 1500 && s.mem_mhz == 2619);
    CHECK(s.has_throttle && s.throttle == 0x5 && nvml_throttle_is_slowdown(s.throttle));
    g[2].has_power = false; // a GPU without a power reading: no total rather than a short one
    snprintf(g[1].name, sizeof g[1].name, "A100");
    nvml_state_sum(g, 3, &s);
    CHECK(!s.has_power && strcmp(s.name, "H200 + A100 + H200") == 0);

    NvmlWindow w;
    nvml_window_init(&w);
    nvml_window_add(&w, g, 2);
    g[0].throttle = 0x40;
    g[0].sm_mhz = 2000;
    nvml_window_add(&w, g, 2);
    CHECK(w.samples == 2 && w.throttle_any == 0x45 && w.temp_max_c == 45);
    CHECK(w.sm_mhz_min == 1500 && w.sm_mhz_max == 2000 && w.power_max_w == 250);
    nvml_window_add(&w, g + 1, 2); // g[2] lacks power: the sample adds no total
    CHECK(w.samples == 3 && w.power_max_w == 250);
}

// nvml_open over two of the fake library's GPUs: energy summed, each GPU read, the monitor
// sees a throttle on the second GPU only; an index the driver does not have fails the open.
static void test_nvml_fake_gpus(void) {
    const char *lib = getenv("MYRMEX_FAKE_NVML");
    if (!lib || !*lib) {
        fprintf(stderr, "  MYRMEX_FAKE_NVML not set (run through ctest): skipped\n");
        return;
    }
    setenv("MYRMEX_NVML_LIBRARY", lib, 1);
    char why[256] = "";
    int gpus[2] = {0, 1};
    Nvml *n = nvml_open(gpus, 2, why, sizeof why);
    CHECK(n != NULL);
    if (n) {
        CHECK(nvml_gpu_count(n) == 2);
        double j = 0;
        CHECK(nvml_energy_joules(n, &j) && j == 3000); // 1000 J + 2000 J
        NvmlState g[2], s;
        nvml_read(n, 0, &g[0]);
        nvml_read(n, 1, &g[1]);
        CHECK(strcmp(g[0].name, "Fake GPU") == 0 && strcmp(g[1].driver, "1.2.3") == 0);
        CHECK(g[0].power_w == 100 && g[1].power_w == 150 && g[1].sm_mhz == 1880 && g[1].throttle == 0x4);
        nvml_state_sum(g, 2, &s);
        CHECK(strcmp(s.name, "2 x Fake GPU") == 0 && s.power_w == 250 && s.power_limit_w == 1400);
        CHECK(nvml_monitor_start(n, 1));
        struct timespec d = {.tv_nsec = 20 * 1000000L};
        nanosleep(&d, NULL);
        NvmlWindow w;
        nvml_monitor_take(n, &w);
        CHECK(w.samples >= 1 && w.throttle_any == 0x5 && nvml_throttle_is_slowdown(w.throttle_any));
        CHECK(w.power_max_w == 250 && w.sm_mhz_min == 1880 && w.sm_mhz_max == 1980 && w.temp_max_c == 41);
        nvml_close(n);
    }
    int missing[2] = {1, 7};
    CHECK(nvml_open(missing, 2, why, sizeof why) == NULL);
    CHECK(strstr(why, "NVML has no device for CUDA device 7: Invalid Argument") != NULL);
    unsetenv("MYRMEX_NVML_LIBRARY");
}

static void test_throttle_names(void) {
    char buf[256];
    nvml_throttle_names(0, buf, sizeof buf);
    CHECK(strcmp(buf, "none") == 0);
    nvml_throttle_names(0x1 | 0x4 | 0x40, buf, sizeof buf);
    CHECK(strcmp(buf, "gpu_idle,sw_power_cap,hw_thermal_slowdown") == 0);
    nvml_throttle_names(0x1000, buf, sizeof buf);
    CHECK(strcmp(buf, "other_0x1000") == 0);
    CHECK(!nvml_throttle_is_slowdown(0));
    CHECK(!nvml_throttle_is_slowdown(0x1 | 0x2 | 0x10 | 0x100)); // idle, app clocks, sync boost, display
    CHECK(nvml_throttle_is_slowdown(0x4) && nvml_throttle_is_slowdown(0x8) && nvml_throttle_is_slowdown(0x20));
    CHECK(nvml_throttle_is_slowdown(0x40) && nvml_throttle_is_slowdown(0x80));
    nvml_throttle_names(0x4 | 0x8, buf, 8); // truncated, still terminated
    CHECK(strlen(buf) < 8);
}

static void test_profile_steps(void) {
    long a, b;
    CHECK_STATUS(profile_steps_parse("3:7", &a, &b), MX_OK);
    CHECK(a == 3 && b == 7);
    CHECK_STATUS(profile_steps_parse("5:5", &a, &b), MX_OK);
    CHECK_STATUS(profile_steps_parse("7:3", &a, &b), MX_ERR_ARG);
    CHECK_STATUS(profile_steps_parse("0:3", &a, &b), MX_ERR_ARG);
    CHECK_STATUS(profile_steps_parse("3", &a, &b), MX_ERR_ARG);
    CHECK_STATUS(profile_steps_parse("3:", &a, &b), MX_ERR_ARG);
    CHECK_STATUS(profile_steps_parse("a:b", &a, &b), MX_ERR_ARG);
    CHECK_STATUS(profile_steps_parse("1:2x", &a, &b), MX_ERR_ARG);
    CHECK_STATUS(profile_capture_set(0, 0), MX_OK); // no window: fine everywhere
#ifndef MYRMEX_HAVE_CUDA
    CHECK_STATUS(profile_capture_set(1, 2), MX_ERR_DEVICE);
#endif
    profile_init();
    profile_step_begin(1); // outside any window: nothing happens
    profile_step_end(1);
    CHECK(!profile_capture_active());
}

static void test_build_info(void) {
    BuildInfo b;
    build_info(&b);
    CHECK(b.commit && strlen(b.commit) > 0 && b.build_type && strlen(b.build_type) > 0);
    CHECK(b.compiler && (strncmp(b.compiler, "gcc", 3) == 0 || strncmp(b.compiler, "clang", 5) == 0));
#ifdef MYRMEX_HAVE_CUDA
    CHECK(b.cuda);
#else
    CHECK(!b.cuda && strcmp(b.cuda_version, "") == 0);
#endif
}

int main(void) {
    RUN(test_sse_split_anywhere);
    RUN(test_sse_failures);
    RUN(test_nvml_unavailable);
    RUN(test_nvml_merge);
    RUN(test_nvml_fake_gpus);
    RUN(test_throttle_names);
    RUN(test_profile_steps);
    RUN(test_build_info);
    return test_exit();
}
