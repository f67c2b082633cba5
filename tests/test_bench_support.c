// The pieces around the benchmark metrics: bench-serve's SSE reader (events split at every
// byte boundary, usage counts, [DONE], error events, bad JSON, CRLF), NVML reported
// unavailable when the library is missing, throttle-reason names, --profile-steps parsing
// and the build facts baked in by CMake.
#include <stdlib.h>
#include <string.h>

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
    Nvml *n = nvml_open(0, why, sizeof why);
    CHECK(n == NULL);
    CHECK(strstr(why, "cannot load /nonexistent/libnvidia-ml.so.1") != NULL);
    n = nvml_open(-1, why, sizeof why);
    CHECK(n == NULL && strcmp(why, "no GPU in use") == 0);
    nvml_close(NULL);
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
    RUN(test_throttle_names);
    RUN(test_profile_steps);
    RUN(test_build_info);
    return test_exit();
}
