// Stop strings on streamed text (see stop.h).
#include "stop.h"

#include <string.h>

#include "alloc.h"
#include "utf8.h"

MxStatus stop_text_init(StopText *s, const char *const *stops, int n) {
    memset(s, 0, sizeof *s);
    if (n < 0 || n > STOP_MAX_STRINGS) return mx_fail(MX_ERR_ARG, "%d stop strings; at most %d", n, STOP_MAX_STRINGS);
    if (n > 0 && !stops) return mx_fail(MX_ERR_ARG, "stop string list is NULL");
    for (int i = 0; i < n; i++) {
        size_t len = stops[i] ? strlen(stops[i]) : 0;
        if (len == 0) return mx_fail(MX_ERR_ARG, "stop string %d is empty", i);
        if (len > STOP_MAX_BYTES) return mx_fail(MX_ERR_ARG, "stop string %d is %zu bytes; at most %d", i, len, STOP_MAX_BYTES);
        if (!utf8_valid((const uint8_t *)stops[i], len)) return mx_fail(MX_ERR_ARG, "stop string %d is not valid UTF-8", i);
    }
    if (n == 0) return MX_OK;
    s->stops = mx_calloc((size_t)n, sizeof *s->stops);
    s->lens = mx_calloc((size_t)n, sizeof *s->lens);
    if (!s->stops || !s->lens) {
        stop_text_free(s);
        return mx_fail(MX_ERR_NOMEM, "stop strings");
    }
    s->n = n;
    for (int i = 0; i < n; i++) {
        s->lens[i] = strlen(stops[i]);
        s->stops[i] = mx_strdup(stops[i]);
        if (!s->stops[i]) {
            stop_text_free(s);
            return mx_fail(MX_ERR_NOMEM, "stop strings");
        }
    }
    return MX_OK;
}

void stop_text_free(StopText *s) {
    for (int i = 0; s->stops && i < s->n; i++) mx_free(s->stops[i]);
    mx_free(s->stops);
    mx_free(s->lens);
    mx_free(s->buf);
    memset(s, 0, sizeof *s);
}

// The first position of needle[0..m) in hay[0..n), or n.
static size_t find(const char *hay, size_t n, const char *needle, size_t m) {
    for (size_t i = 0; i + m <= n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, m) == 0) return i;
    return n;
}

// The first byte position where any stop string starts in buf[0..n), or n.
static size_t first_match(const StopText *s, const char *buf, size_t n) {
    size_t best = n;
    for (int i = 0; i < s->n; i++) {
        size_t at = find(buf, n, s->stops[i], s->lens[i]);
        if (at < best) best = at;
    }
    return best;
}

// The longest tail of buf[0..n) that is a proper prefix of some stop string.
static size_t open_tail(const StopText *s, const char *buf, size_t n) {
    size_t hold = 0;
    for (int i = 0; i < s->n; i++) {
        size_t k = s->lens[i] - 1 < n ? s->lens[i] - 1 : n;
        for (; k > hold; k--)
            if (memcmp(buf + n - k, s->stops[i], k) == 0) break;
        if (k > hold) hold = k;
    }
    return hold;
}

MxStatus stop_text_push(StopText *s, const char *text, size_t len, const char **out, size_t *n_out, bool *matched) {
    *out = "";
    *n_out = 0;
    *matched = s->matched;
    if (s->matched) return MX_OK;
    if (s->n == 0) { // nothing to hold back
        *out = len ? text : "";
        *n_out = len;
        return MX_OK;
    }
    size_t n = s->n_held + len;
    if (n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < n + 1) cap *= 2;
        char *p = mx_realloc(s->buf, cap);
        if (!p) return mx_fail(MX_ERR_NOMEM, "stop string buffer of %zu bytes", cap);
        s->buf = p;
        s->cap = cap;
    }
    memcpy(s->buf + s->n_held, text, len);
    size_t at = first_match(s, s->buf, n);
    if (at < n) {
        s->matched = *matched = true;
        s->n_held = 0;
        s->buf[at] = '\0';
        *out = s->buf;
        *n_out = at;
        return MX_OK;
    }
    // Release all but the open tail; the tail moves to the front for the next push. The
    // released text is copied out of the way first: it is handed out from the end of buf.
    size_t hold = open_tail(s, s->buf, n), give = n - hold;
    if (n + 1 + give > s->cap) {
        char *p = mx_realloc(s->buf, n + 1 + give);
        if (!p) return mx_fail(MX_ERR_NOMEM, "stop string buffer");
        s->buf = p;
        s->cap = n + 1 + give;
    }
    char *released = s->buf + n + 1;
    memcpy(released, s->buf, give);
    memmove(s->buf, s->buf + give, hold);
    s->n_held = hold;
    *out = released;
    *n_out = give;
    return MX_OK;
}

void stop_text_flush(StopText *s, const char **out, size_t *n_out) {
    *out = s->n_held ? s->buf : "";
    *n_out = s->n_held;
    s->n_held = 0;
}
