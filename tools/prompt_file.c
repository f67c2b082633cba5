// Reading a JSONL file of prompts (see prompt_file.h).
#include "prompt_file.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/alloc.h"
#include "../runtime/json_util.h"
#include "../runtime/utf8.h"

#define MAX_STOP_STRINGS 16

void prompt_jobs_free(PromptJob *jobs, int n_jobs) {
    for (int i = 0; jobs && i < n_jobs; i++) {
        mx_free(jobs[i].text);
        mx_free(jobs[i].ids);
        for (int k = 0; jobs[i].stop && k < jobs[i].p.n_stop; k++) mx_free(jobs[i].stop[k]);
        mx_free(jobs[i].stop);
        mx_free(jobs[i].stop_ids);
    }
    mx_free(jobs);
}

// One line's error: "FILE:LINE: what".
#define LINE_FAIL(...) line_fail(path, line, __VA_ARGS__)
static MxStatus line_fail(const char *path, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static MxStatus line_fail(const char *path, int line, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return mx_fail(MX_ERR_ARG, "%s:%d: %s", path, line, what);
}

static MxStatus int_array(const cJSON *a, int max, int32_t **out, int *n, const char *path, int line, const char *name) {
    int count = cJSON_GetArraySize(a);
    if (!cJSON_IsArray(a) || count < 1 || count > max)
        return LINE_FAIL("\"%s\" must be a list of 1 to %d token ids", name, max);
    *out = mx_malloc((size_t)count * sizeof **out);
    if (!*out) return mx_fail(MX_ERR_NOMEM, "prompt ids");
    int i = 0;
    for (const cJSON *e = a->child; e; e = e->next, i++) {
        int v;
        if (!json_get_int(e, &v) || v < 0) return LINE_FAIL("\"%s\" item %d is not a token id", name, i);
        (*out)[i] = v;
    }
    *n = count;
    return MX_OK;
}

static MxStatus stop_strings(const cJSON *v, PromptJob *j, const char *path, int line) {
    int count = cJSON_IsString(v) ? 1 : cJSON_GetArraySize(v);
    if ((!cJSON_IsString(v) && !cJSON_IsArray(v)) || count > MAX_STOP_STRINGS)
        return LINE_FAIL("\"stop\" must be a string or a list of at most %d strings", MAX_STOP_STRINGS);
    j->stop = mx_calloc((size_t)(count ? count : 1), sizeof *j->stop);
    if (!j->stop) return mx_fail(MX_ERR_NOMEM, "stop strings");
    const cJSON *e = cJSON_IsString(v) ? v : v->child;
    for (int i = 0; i < count; i++, e = e->next) {
        if (!cJSON_IsString(e)) return LINE_FAIL("\"stop\" item %d is not a string", i);
        if (!(j->stop[i] = mx_strdup(e->valuestring))) return mx_fail(MX_ERR_NOMEM, "stop strings");
        j->p.n_stop = i + 1;
    }
    return MX_OK;
}

static bool number(const cJSON *v, double lo, double hi, double *out) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi) return false;
    *out = v->valuedouble;
    return true;
}

// Fills j from one object. Range checks beyond the type are the engine's (mx_engine_add).
static MxStatus parse_object(const cJSON *o, PromptJob *j, const char *path, int line) {
    MxStatus st = MX_OK;
    for (const cJSON *v = o->child; v && !st; v = v->next) {
        const char *k = v->string;
        double d;
        int i;
        uint64_t u;
        if (strcmp(k, "prompt") == 0) {
            if (!cJSON_IsString(v) || !*v->valuestring) return LINE_FAIL("\"prompt\" must be a non-empty string");
            if (!(j->text = mx_strdup(v->valuestring))) return mx_fail(MX_ERR_NOMEM, "prompt");
        } else if (strcmp(k, "prompt_ids") == 0) {
            st = int_array(v, 1 << 24, &j->ids, &j->n_ids, path, line, k);
        } else if (strcmp(k, "stop_token_ids") == 0) {
            st = int_array(v, MX_MAX_STOP_IDS, &j->stop_ids, &j->p.n_stop_ids, path, line, k);
        } else if (strcmp(k, "stop") == 0) {
            st = stop_strings(v, j, path, line);
        } else if (strcmp(k, "max_tokens") == 0) {
            if (!json_get_int(v, &i) || i < 1) return LINE_FAIL("\"max_tokens\" must be an integer >= 1");
            j->p.max_tokens = i;
        } else if (strcmp(k, "temperature") == 0) {
            if (!number(v, 0, 1e6, &d)) return LINE_FAIL("\"temperature\" must be a number >= 0");
            j->p.temperature = (float)d;
        } else if (strcmp(k, "top_p") == 0) {
            if (!number(v, 0, 1, &d) || d == 0) return LINE_FAIL("\"top_p\" must be a number in (0, 1]");
            j->p.top_p = (float)d;
        } else if (strcmp(k, "top_k") == 0) {
            if (!json_get_int(v, &i) || i < 0) return LINE_FAIL("\"top_k\" must be an integer >= 0");
            j->p.top_k = i;
        } else if (strcmp(k, "seed") == 0) {
            if (!json_get_u53(v, &u)) return LINE_FAIL("\"seed\" must be an integer in [0, 2^53]");
            j->p.seed = u;
        } else if (strcmp(k, "top_logprobs") == 0) {
            if (!json_get_int(v, &i) || i < 0) return LINE_FAIL("\"top_logprobs\" must be an integer >= 0");
            j->p.top_logprobs = i;
        } else if (strcmp(k, "ignore_eos") == 0) {
            if (!cJSON_IsBool(v)) return LINE_FAIL("\"ignore_eos\" must be true or false");
            j->p.ignore_eos = cJSON_IsTrue(v);
        } else {
            return LINE_FAIL("unknown field \"%s\" (expected prompt or prompt_ids, max_tokens, temperature, top_k, "
                             "top_p, seed, top_logprobs, ignore_eos, stop, stop_token_ids)",
                             k);
        }
    }
    if (st) return st;
    if (!j->text == !j->ids) return LINE_FAIL("give \"prompt\" or \"prompt_ids\" (exactly one)");
    j->p.stop = (const char *const *)j->stop;
    j->p.stop_ids = j->stop_ids;
    return MX_OK;
}

static MxStatus parse_line(const char *text, size_t len, PromptJob *j, const char *path, int line) {
    if (!utf8_valid((const uint8_t *)text, len)) return LINE_FAIL("not valid UTF-8");
    if (!json_strict_ok(text, len)) return LINE_FAIL("not a valid JSON value");
    cJSON *root = NULL;
    MxStatus st = json_parse_checked(text, len, path, &root);
    if (st) return st;
    int dup = cJSON_IsObject(root) ? json_has_duplicate_keys(root) : 0;
    if (!cJSON_IsObject(root)) st = LINE_FAIL("not a JSON object");
    else if (dup) st = dup < 0 ? mx_fail(MX_ERR_NOMEM, "%s", path) : LINE_FAIL("a field appears twice");
    else st = parse_object(root, j, path, line);
    cJSON_Delete(root);
    return st;
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return false;
    return true;
}

MxStatus prompt_file_read(const char *path, const MxRequestParams *defaults, PromptJob **jobs, int *n_jobs) {
    *jobs = NULL;
    *n_jobs = 0;
    json_init();
    FILE *f = fopen(path, "rb");
    if (!f) return mx_fail(MX_ERR_IO, "cannot open %s", path);
    PromptJob *all = NULL;
    int n = 0, cap = 0, line = 0;
    char *buf = NULL;
    size_t buf_cap = 0;
    ssize_t len;
    MxStatus st = MX_OK;
    while (!st && (len = getline(&buf, &buf_cap, f)) >= 0) {
        line++;
        if (blank(buf, (size_t)len)) continue;
        if (memchr(buf, '\0', (size_t)len)) {
            st = LINE_FAIL("contains a NUL byte");
            break;
        }
        if (n == cap) {
            int new_cap = cap ? 2 * cap : 16;
            PromptJob *p = mx_realloc(all, (size_t)new_cap * sizeof *p);
            if (!p) {
                st = mx_fail(MX_ERR_NOMEM, "prompt list");
                break;
            }
            all = p;
            cap = new_cap;
        }
        PromptJob *j = &all[n++];
        memset(j, 0, sizeof *j);
        j->line = line;
        j->p = *defaults;
        st = parse_line(buf, (size_t)len, j, path, line);
    }
    if (!st && ferror(f)) st = mx_fail(MX_ERR_IO, "reading %s", path);
    if (!st && n == 0) st = mx_fail(MX_ERR_ARG, "%s has no prompts", path);
    free(buf); // getline's buffer comes from malloc
    fclose(f);
    if (st) {
        prompt_jobs_free(all, n);
        return st;
    }
    *jobs = all;
    *n_jobs = n;
    return MX_OK;
}
