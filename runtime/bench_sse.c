// Server-Sent Events of a streamed completion (see bench_sse.h).
#include "bench_sse.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

void sse_init(SseStream *s) { *s = (SseStream){.usage_prompt_tokens = -1, .usage_completion_tokens = -1}; }

void sse_free(SseStream *s) {
    mx_free(s->times);
    mx_free(s->line);
    sse_init(s);
}

static void fail(SseStream *s, const char *why) {
    if (!s->failed) snprintf(s->error, sizeof s->error, "%s", why);
    s->failed = true;
}

static bool add_event(SseStream *s, double now) {
    if (s->n_events == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        double *t = mx_realloc(s->times, (size_t)cap * sizeof *t);
        if (!t) return false;
        s->times = t;
        s->cap = cap;
    }
    s->times[s->n_events++] = now;
    return true;
}

// The text a choice carries: completions' "text" or chat's "delta": {"content"}.
static const char *choice_text(const cJSON *choice) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(choice, "text");
    if (cJSON_IsString(t)) return t->valuestring;
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(choice, "delta");
    const cJSON *c = delta ? cJSON_GetObjectItemCaseSensitive(delta, "content") : NULL;
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static bool data_line(SseStream *s, const char *payload, size_t len, double now) {
    if (len == 6 && memcmp(payload, "[DONE]", 6) == 0) {
        s->done = true;
        return true;
    }
    cJSON *root = cJSON_ParseWithLength(payload, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        fail(s, "a streamed event is not a JSON object");
        return true;
    }
    bool ok = true;
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (err) {
        const cJSON *msg = cJSON_IsObject(err) ? cJSON_GetObjectItemCaseSensitive(err, "message") : err;
        char why[200];
        snprintf(why, sizeof why, "server error in stream: %s", cJSON_IsString(msg) ? msg->valuestring : "(no message)");
        fail(s, why);
    }
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    if (cJSON_IsArray(choices) && cJSON_GetArraySize(choices) > 0) {
        const char *text = choice_text(cJSON_GetArrayItem(choices, 0));
        if (text && *text) ok = add_event(s, now);
    }
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
    if (cJSON_IsObject(usage)) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
        if (cJSON_IsNumber(p) && p->valuedouble >= 0 && p->valuedouble < 1e9) s->usage_prompt_tokens = (int)p->valuedouble;
        if (cJSON_IsNumber(c) && c->valuedouble >= 0 && c->valuedouble < 1e9) s->usage_completion_tokens = (int)c->valuedouble;
    }
    cJSON_Delete(root);
    return ok;
}

// One complete line (no line ending). Comments (":..."), event names and ids are ignored.
static bool line_done(SseStream *s, const char *line, size_t len, double now) {
    if (len >= 5 && memcmp(line, "data:", 5) == 0) {
        size_t skip = len > 5 && line[5] == ' ' ? 6 : 5;
        return data_line(s, line + skip, len - skip, now);
    }
    return true;
}

bool sse_feed(SseStream *s, const char *data, size_t len, double now) {
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c == '\n') {
            size_t n = s->line_len;
            if (n > 0 && s->line[n - 1] == '\r') n--;
            if (!line_done(s, s->line ? s->line : "", n, now)) {
                fail(s, "out of memory");
                return false;
            }
            s->line_len = 0;
            continue;
        }
        if (s->line_len + 1 >= s->line_cap) {
            size_t cap = s->line_cap ? 2 * s->line_cap : 256;
            if (cap > (64u << 20)) {
                fail(s, "a streamed line is longer than 64 MiB");
                return false;
            }
            char *l = mx_realloc(s->line, cap);
            if (!l) {
                fail(s, "out of memory");
                return false;
            }
            s->line = l;
            s->line_cap = cap;
        }
        s->line[s->line_len++] = c;
    }
    return true;
}
