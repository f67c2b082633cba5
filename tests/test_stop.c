// Stop strings on streamed text: matches across push boundaries, nothing of a stop string
// is ever released, the earliest match wins, held text comes out at the end, bad input.
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "stop.h"
#include "test_util.h"

// Pushes text in pieces of the given sizes (0-terminated list; the rest in one piece) and
// returns what was released, with *matched; every release must be a prefix of the text.
static char *run(const char *const *stops, int n, const char *text, const int *sizes, bool *matched) {
    StopText s;
    CHECK_STATUS(stop_text_init(&s, stops, n), MX_OK);
    size_t len = strlen(text), at = 0, n_out = 0;
    char *out = calloc(len + 1, 1);
    *matched = false;
    for (int k = 0; at < len && !*matched; k++) {
        size_t piece = sizes && sizes[k] ? (size_t)sizes[k] : len - at;
        if (piece > len - at) piece = len - at;
        const char *got;
        size_t n_got;
        CHECK_STATUS(stop_text_push(&s, text + at, piece, &got, &n_got, matched), MX_OK);
        memcpy(out + n_out, got, n_got);
        n_out += n_got;
        at += piece;
        CHECK(n_out <= at && memcmp(out, text, n_out) == 0);
    }
    if (!*matched) {
        const char *got;
        size_t n_got;
        stop_text_flush(&s, &got, &n_got);
        memcpy(out + n_out, got, n_got);
        n_out += n_got;
    }
    out[n_out] = '\0';
    stop_text_free(&s);
    return out;
}

static void expect(const char *const *stops, int n, const char *text, const int *sizes, const char *want, bool want_match) {
    bool matched;
    char *got = run(stops, n, text, sizes, &matched);
    CHECK(strcmp(got, want) == 0 && matched == want_match);
    if (strcmp(got, want) != 0 || matched != want_match)
        fprintf(stderr, "  text '%s': got '%s' (%d), want '%s' (%d)\n", text, got, matched, want, want_match);
    free(got);
}

static void test_matches(void) {
    const char *const one[] = {"STOP"};
    const char *const two[] = {"lo w", "ell"};
    int bytes[64];
    for (int i = 0; i < 64; i++) bytes[i] = 1;
    int odd[] = {3, 2, 5, 1, 0};
    expect(one, 1, "hello STOP world", NULL, "hello ", true);
    expect(one, 1, "hello STOP world", bytes, "hello ", true); // split over one-byte pushes
    expect(one, 1, "hello STOP world", odd, "hello ", true);
    expect(one, 1, "STOP", bytes, "", true);
    expect(one, 1, "no stop here, STO", bytes, "no stop here, STO", false); // held tail flushed at the end
    expect(one, 1, "STSTOP", bytes, "ST", true);                           // a false start, then the match
    // The earliest match wins, whichever string it is.
    expect(two, 2, "hello world", NULL, "h", true);
    expect(two, 2, "hello world", bytes, "h", true);
    const char *const nested[] = {"abcd", "bc"};
    expect(nested, 2, "xabcd", bytes, "xa", true);
    // No stop strings: everything passes through at once.
    expect(NULL, 0, "anything", bytes, "anything", false);
    // UTF-8 stop strings split mid-character by the pushes.
    const char *const utf[] = {"\xE4\xB8\x96\xE7\x95\x8C"}; // 世界
    expect(utf, 1, "hi \xE4\xB8\x96\xE7\x95\x8C!", bytes, "hi ", true);
}

// What is released never contains any prefix of a stop string that later completes.
static void test_never_leaks(void) {
    const char *const stops[] = {"<|end|>", "\n\n"};
    const char *text = "answer: 42 <|en <|end|> trailing";
    StopText s;
    CHECK_STATUS(stop_text_init(&s, stops, 2), MX_OK);
    char released[128] = {0};
    size_t n = 0;
    bool matched = false;
    for (size_t i = 0; text[i] && !matched; i++) {
        const char *got;
        size_t n_got;
        CHECK_STATUS(stop_text_push(&s, text + i, 1, &got, &n_got, &matched), MX_OK);
        memcpy(released + n, got, n_got);
        n += n_got;
        CHECK(strstr(released, "<|end") == NULL && strstr(released, "\n\n") == NULL);
    }
    CHECK(matched && strcmp(released, "answer: 42 <|en ") == 0);
    // After the match the stream is over.
    const char *got;
    size_t n_got;
    CHECK_STATUS(stop_text_push(&s, "more", 4, &got, &n_got, &matched), MX_OK);
    CHECK(n_got == 0 && matched);
    stop_text_free(&s);
}

static void test_bad_input(void) {
    StopText s;
    const char *const empty[] = {""};
    const char *const null[] = {NULL};
    const char *const bad_utf8[] = {"a\xFF"};
    char long_stop[STOP_MAX_BYTES + 2];
    memset(long_stop, 'x', sizeof long_stop - 1);
    long_stop[sizeof long_stop - 1] = '\0';
    const char *const too_long[] = {long_stop};
    const char *many[STOP_MAX_STRINGS + 1];
    for (int i = 0; i <= STOP_MAX_STRINGS; i++) many[i] = "x";
    CHECK_STATUS(stop_text_init(&s, empty, 1), MX_ERR_ARG);
    CHECK_STATUS(stop_text_init(&s, null, 1), MX_ERR_ARG);
    CHECK_STATUS(stop_text_init(&s, bad_utf8, 1), MX_ERR_ARG);
    CHECK_STATUS(stop_text_init(&s, too_long, 1), MX_ERR_ARG);
    CHECK_STATUS(stop_text_init(&s, many, STOP_MAX_STRINGS + 1), MX_ERR_ARG);
    CHECK_STATUS(stop_text_init(&s, NULL, 2), MX_ERR_ARG);
    CHECK_STATUS(stop_text_init(&s, many, STOP_MAX_STRINGS), MX_OK);
    stop_text_free(&s);
    // Allocation failures: clean errors, nothing leaked.
    const char *const stops[] = {"ab", "cd"};
    for (long k = 0; k < 3; k++) {
        mx_alloc_fail_after(k);
        CHECK_STATUS(stop_text_init(&s, stops, 2), MX_ERR_NOMEM);
        mx_alloc_fail_after(-1);
        stop_text_free(&s);
    }
    CHECK_STATUS(stop_text_init(&s, stops, 2), MX_OK);
    const char *got;
    size_t n_got;
    bool matched;
    mx_alloc_fail_after(0);
    CHECK_STATUS(stop_text_push(&s, "xyz a", 5, &got, &n_got, &matched), MX_ERR_NOMEM);
    mx_alloc_fail_after(-1);
    CHECK(n_got == 0);
    CHECK_STATUS(stop_text_push(&s, "xyz a", 5, &got, &n_got, &matched), MX_OK);
    CHECK(n_got == 4 && memcmp(got, "xyz ", 4) == 0);
    stop_text_free(&s);
}

int main(void) {
    RUN(test_matches);
    RUN(test_never_leaks);
    RUN(test_bad_input);
    return test_exit();
}
