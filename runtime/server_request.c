// OpenAI request bodies: raw bytes → checked JSON → token ids and engine parameters (see
// server_request.h). Field by field, every type and range is checked; unknown fields are
// ignored (clients send extras such as "user"), known sampling features myrmex lacks
// (penalties, logit_bias, best_of, suffix, tools) are refused rather than silently ignored.
#include "server_request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "json_util.h"
#include "utf8.h"

void api_error_set(ApiError *err, int status, const char *type, const char *param, const char *code, const char *fmt, ...) {
    err->status = status;
    err->type = type;
    err->param = param;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

#define BAD(param, ...) (api_error_set(err, 400, "invalid_request_error", (param), NULL, __VA_ARGS__), -1)

void api_request_free(ApiRequest *rq) {
    for (int i = 0; rq->prompts && i < rq->n_prompts; i++) {
        mx_free(rq->prompts[i].ids);
        mx_free(rq->prompts[i].text);
    }
    mx_free(rq->prompts);
    for (int i = 0; rq->stop && i < rq->n_stop; i++) mx_free(rq->stop[i]);
    mx_free(rq->stop);
    memset(rq, 0, sizeof *rq);
}

static int nomem(ApiError *err) {
    api_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    return -1;
}

// ---- typed field readers: 0 absent (or null), 1 read, -1 bad (err set) ---------------------

static const cJSON *field(const cJSON *root, const char *name) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, name);
    return f && !cJSON_IsNull(f) ? f : NULL;
}

static int get_bool(const cJSON *root, const char *name, bool *out, ApiError *err) {
    const cJSON *f = field(root, name);
    if (!f) return 0;
    if (!cJSON_IsBool(f)) return BAD(name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(f);
    return 1;
}

// An exact integer in [lo, hi].
static int get_int(const cJSON *root, const char *name, int lo, int hi, int *out, ApiError *err) {
    const cJSON *f = field(root, name);
    if (!f) return 0;
    int v;
    if (!cJSON_IsNumber(f) || !json_get_int(f, &v)) return BAD(name, "'%s' must be an integer", name);
    if (v < lo || v > hi) return BAD(name, "'%s' must be in [%d, %d], got %d", name, lo, hi, v);
    *out = v;
    return 1;
}

// A finite number in [lo, hi] (lo_open: lo itself excluded).
static int get_float(const cJSON *root, const char *name, double lo, bool lo_open, double hi, float *out, ApiError *err) {
    const cJSON *f = field(root, name);
    if (!f) return 0;
    if (!cJSON_IsNumber(f) || !isfinite(f->valuedouble)) return BAD(name, "'%s' must be a finite number", name);
    double v = f->valuedouble;
    if (v < lo || (lo_open && v == lo) || v > hi)
        return BAD(name, "'%s' must be in %s%g, %g], got %g", name, lo_open ? "(" : "[", lo, hi, v);
    *out = (float)v;
    return 1;
}

// Fields myrmex does not implement are accepted only at their neutral value.
static int refuse_unsupported(const cJSON *root, ApiError *err) {
    static const char *zero[] = {"presence_penalty", "frequency_penalty"};
    for (int i = 0; i < 2; i++) {
        const cJSON *f = field(root, zero[i]);
        if (f && (!cJSON_IsNumber(f) || f->valuedouble != 0))
            return BAD(zero[i], "'%s' is not supported (only 0)", zero[i]);
    }
    const cJSON *f = field(root, "repetition_penalty");
    if (f && (!cJSON_IsNumber(f) || f->valuedouble != 1)) return BAD("repetition_penalty", "'repetition_penalty' is not supported (only 1)");
    f = field(root, "logit_bias");
    if (f && (!cJSON_IsObject(f) || f->child)) return BAD("logit_bias", "'logit_bias' is not supported");
    f = field(root, "suffix");
    if (f) return BAD("suffix", "'suffix' is not supported");
    static const char *lists[] = {"tools", "functions"};
    for (int i = 0; i < 2; i++) {
        f = field(root, lists[i]);
        if (f && (!cJSON_IsArray(f) || f->child)) return BAD(lists[i], "'%s' is not supported", lists[i]);
    }
    f = field(root, "response_format");
    if (f) {
        const cJSON *t = cJSON_IsObject(f) ? field(f, "type") : NULL;
        if (!t || !cJSON_IsString(t) || strcmp(t->valuestring, "text") != 0)
            return BAD("response_format", "'response_format' supports only {\"type\": \"text\"}");
    }
    return 0;
}

// ---- fields ------------------------------------------------------------------------------

static int parse_model(const ApiContext *ctx, const cJSON *root, ApiError *err) {
    const cJSON *f = field(root, "model");
    if (!f) return 0; // the one model served here
    if (!cJSON_IsString(f)) return BAD("model", "'model' must be a string");
    if (strcmp(f->valuestring, ctx->model_name) == 0 || (ctx->model_path && strcmp(f->valuestring, ctx->model_path) == 0))
        return 0;
    api_error_set(err, 404, "invalid_request_error", "model", "model_not_found",
                  "the model does not exist; this server serves '%s' (see /v1/models)", ctx->model_name);
    return -1;
}

static int parse_stop(const cJSON *root, ApiRequest *rq, ApiError *err) {
    const cJSON *f = field(root, "stop");
    if (!f) return 0;
    int n = cJSON_IsString(f) ? 1 : cJSON_IsArray(f) ? cJSON_GetArraySize(f) : -1;
    if (n < 0) return BAD("stop", "'stop' must be a string or a list of strings");
    if (n > API_MAX_STOP) return BAD("stop", "'stop' has %d strings; at most %d", n, API_MAX_STOP);
    if (n == 0) return 0;
    rq->stop = mx_calloc((size_t)n, sizeof *rq->stop);
    if (!rq->stop) return nomem(err);
    const cJSON *item = cJSON_IsString(f) ? f : f->child;
    for (int i = 0; i < n; i++, item = item->next) {
        if (!cJSON_IsString(item)) return BAD("stop", "'stop' must be a string or a list of strings");
        size_t len = strlen(item->valuestring);
        if (len < 1 || len > API_MAX_STOP_BYTES)
            return BAD("stop", "each stop string must be 1 to %d bytes, got %zu", API_MAX_STOP_BYTES, len);
        if (!(rq->stop[i] = mx_strdup(item->valuestring))) return nomem(err);
        rq->n_stop = i + 1;
    }
    return 0;
}

// Sampling, counts and flags shared by both routes.
static int parse_common(const ApiContext *ctx, const cJSON *root, ApiRequest *rq, ApiError *err) {
    rq->n = 1;
    rq->temperature = 1.0f; // OpenAI's default
    rq->top_p = 1.0f;
    if (get_int(root, "n", 1, API_MAX_N, &rq->n, err) < 0) return -1;
    int best_of = rq->n;
    if (get_int(root, "best_of", 1, API_MAX_N, &best_of, err) < 0) return -1;
    if (best_of != rq->n) return BAD("best_of", "'best_of' other than n is not supported");
    if (get_float(root, "temperature", 0, false, 1e6, &rq->temperature, err) < 0) return -1;
    if (get_float(root, "top_p", 0, true, 1, &rq->top_p, err) < 0) return -1;
    int top_k = 0;
    if (get_int(root, "top_k", -1, ctx->vocab_size, &top_k, err) < 0) return -1;
    rq->top_k = top_k < 0 ? 0 : top_k; // vLLM's -1 = all
    const cJSON *seed = field(root, "seed");
    if (seed) {
        double v = cJSON_IsNumber(seed) ? seed->valuedouble : NAN;
        if (!(fabs(v) <= JSON_MAX_SAFE_INT) || v != floor(v)) return BAD("seed", "'seed' must be an integer within +-2^53");
        rq->has_seed = true;
        rq->seed = v < 0 ? (uint64_t)(int64_t)v : (uint64_t)v;
    }
    if (get_bool(root, "stream", &rq->stream, err) < 0 || get_bool(root, "ignore_eos", &rq->ignore_eos, err) < 0)
        return -1;
    const cJSON *so = field(root, "stream_options");
    if (so && !cJSON_IsObject(so)) return BAD("stream_options", "'stream_options' must be an object");
    if (parse_stop(root, rq, err) < 0) return -1;
    if (rq->n_stop > 0 && !ctx->tok) return BAD("stop", "this model has no tokenizer.json: stop strings need one");
    return refuse_unsupported(root, err);
}

// One prompt of token ids: a non-empty array of integers in [0, vocab).
static int parse_ids(const ApiContext *ctx, const cJSON *arr, ApiPrompt *p, ApiError *err) {
    int n = cJSON_GetArraySize(arr);
    if (n < 1) return BAD("prompt", "a prompt of token ids must not be empty");
    if (!(p->ids = mx_malloc((size_t)n * sizeof *p->ids))) return nomem(err);
    int i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        int v;
        if (!cJSON_IsNumber(it) || !json_get_int(it, &v)) return BAD("prompt", "prompt token %d is not an integer", i);
        if (v < 0 || v >= ctx->vocab_size)
            return BAD("prompt", "prompt token %d is %d, not in [0, %d)", i, v, ctx->vocab_size);
        p->ids[i] = v;
    }
    p->n_ids = n;
    return 0;
}

// Text through the tokenizer, bos added as it says (as `myrmex generate --prompt`).
static int encode_text(const ApiContext *ctx, const char *text, bool add_special, ApiPrompt *p, ApiError *err) {
    if (!ctx->tok) return BAD("prompt", "this model has no tokenizer.json: send token ids");
    size_t len = strlen(text);
    if (len == 0) return BAD("prompt", "the prompt is empty");
    MxStatus st = tokenizer_encode(ctx->tok, text, len, add_special, &p->ids, &p->n_ids);
    if (st == MX_ERR_NOMEM) return nomem(err);
    if (st) return BAD("prompt", "the prompt could not be tokenized");
    if (p->n_ids == 0) return BAD("prompt", "the prompt encodes to no tokens");
    return 0;
}

static int parse_prompts(const ApiContext *ctx, const cJSON *root, ApiRequest *rq, ApiError *err) {
    const cJSON *f = field(root, "prompt");
    if (!f) return BAD("prompt", "'prompt' is required");
    // A string, a list of ids, or a list of strings and id lists.
    bool single = cJSON_IsString(f) || (cJSON_IsArray(f) && f->child && cJSON_IsNumber(f->child));
    if (!single && !cJSON_IsArray(f)) return BAD("prompt", "'prompt' must be a string, a list of token ids, or a list of either");
    int n = single ? 1 : cJSON_GetArraySize(f);
    if (n < 1) return BAD("prompt", "'prompt' must not be empty");
    if (n > API_MAX_PROMPTS) return BAD("prompt", "'prompt' has %d prompts; at most %d", n, API_MAX_PROMPTS);
    if (!(rq->prompts = mx_calloc((size_t)n, sizeof *rq->prompts))) return nomem(err);
    const cJSON *item = single ? f : f->child;
    for (int i = 0; i < n; i++, item = item->next) {
        ApiPrompt *p = &rq->prompts[i];
        rq->n_prompts = i + 1;
        if (cJSON_IsString(item)) {
            if (encode_text(ctx, item->valuestring, true, p, err) < 0) return -1;
            if (!(p->text = mx_strdup(item->valuestring))) return nomem(err);
        } else if (cJSON_IsArray(item)) {
            if (parse_ids(ctx, item, p, err) < 0) return -1;
        } else {
            return BAD("prompt", "prompt %d must be a string or a list of token ids", i);
        }
    }
    return 0;
}

// A message's content: a string, or a list of {"type": "text", "text": ...} parts joined.
static int message_content(const cJSON *content, int index, char **out, ApiError *err) {
    if (cJSON_IsString(content)) return (*out = mx_strdup(content->valuestring)) ? 0 : nomem(err);
    if (!cJSON_IsArray(content)) return BAD("messages", "message %d: 'content' must be a string or a list of text parts", index);
    size_t total = 1;
    for (const cJSON *part = content->child; part; part = part->next) {
        const cJSON *type = cJSON_IsObject(part) ? field(part, "type") : NULL, *text = type ? field(part, "text") : NULL;
        if (!type || !cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 || !text || !cJSON_IsString(text))
            return BAD("messages", "message %d: only text content parts are supported", index);
        total += strlen(text->valuestring);
    }
    char *s = mx_malloc(total);
    if (!s) return nomem(err);
    size_t at = 0;
    for (const cJSON *part = content->child; part; part = part->next) {
        const char *t = field(part, "text")->valuestring;
        size_t n = strlen(t);
        memcpy(s + at, t, n);
        at += n;
    }
    s[at] = '\0';
    *out = s;
    return 0;
}

static int parse_messages(const ApiContext *ctx, const cJSON *root, ApiRequest *rq, ApiError *err) {
    const cJSON *f = field(root, "messages");
    if (!f) return BAD("messages", "'messages' is required");
    if (!cJSON_IsArray(f)) return BAD("messages", "'messages' must be a list");
    int n = cJSON_GetArraySize(f);
    if (n < 1) return BAD("messages", "'messages' must not be empty");
    if (n > API_MAX_MESSAGES) return BAD("messages", "'messages' has %d messages; at most %d", n, API_MAX_MESSAGES);
    if (!ctx->tok) return BAD("messages", "this model has no tokenizer.json: chat needs one");
    if (ctx->chat == CHAT_UNKNOWN)
        return BAD("messages", "this model's chat template is not known; start the server with --chat-template NAME");
    ChatMessage *msgs = mx_calloc((size_t)n, sizeof *msgs);
    char **contents = mx_calloc((size_t)n, sizeof *contents);
    int rc = msgs && contents ? 0 : nomem(err), i = 0;
    for (const cJSON *m = f->child; m && rc == 0; m = m->next, i++) {
        const cJSON *role = cJSON_IsObject(m) ? field(m, "role") : NULL, *content = role ? field(m, "content") : NULL;
        if (!role || !cJSON_IsString(role)) {
            rc = BAD("messages", "message %d needs a string 'role'", i);
            break;
        }
        const char *r = role->valuestring;
        if (strcmp(r, "developer") == 0) r = "system"; // OpenAI's newer name for it
        if (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0) {
            rc = BAD("messages", "message %d: role must be system, user or assistant", i);
            break;
        }
        if (!content) {
            rc = BAD("messages", "message %d needs 'content'", i);
            break;
        }
        if ((rc = message_content(content, i, &contents[i], err)) == 0) msgs[i] = (ChatMessage){r, contents[i]};
    }
    char *rendered = NULL;
    if (rc == 0) {
        MxStatus st = chat_render(ctx->chat, msgs, n, true, &rendered);
        // chat_render's messages name the message index and the rule, never its content.
        if (st == MX_ERR_NOMEM) rc = nomem(err);
        else if (st) rc = BAD("messages", "%s", mx_last_error());
    }
    if (rc == 0) {
        if (!(rq->prompts = mx_calloc(1, sizeof *rq->prompts))) rc = nomem(err);
        else rq->n_prompts = 1, rc = encode_text(ctx, rendered, false, rq->prompts, err);
    }
    mx_free(rendered);
    for (int k = 0; contents && k < n; k++) mx_free(contents[k]);
    mx_free(contents);
    mx_free(msgs);
    return rc;
}

static int parse_logprobs(const cJSON *root, ApiKind kind, ApiRequest *rq, ApiError *err) {
    if (kind == API_COMPLETIONS) {
        int k = -1;
        if (get_int(root, "logprobs", 0, API_MAX_LOGPROBS, &k, err) < 0) return -1;
        rq->logprobs = k >= 0;
        rq->top_logprobs = k < 0 ? 0 : k;
        return get_bool(root, "echo", &rq->echo, err) < 0 ? -1 : 0;
    }
    if (get_bool(root, "logprobs", &rq->logprobs, err) < 0) return -1;
    int k = 0;
    int got = get_int(root, "top_logprobs", 0, API_MAX_LOGPROBS, &k, err);
    if (got < 0) return -1;
    if (got > 0 && !rq->logprobs && k > 0) return BAD("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    rq->top_logprobs = k;
    return 0;
}

// max_tokens, then the context and KV pool checks of every prompt.
static int parse_lengths(const ApiContext *ctx, const cJSON *root, ApiRequest *rq, ApiError *err) {
    int longest = 0;
    for (int i = 0; i < rq->n_prompts; i++)
        if (rq->prompts[i].n_ids > longest) longest = rq->prompts[i].n_ids;
    int64_t pool_tokens = (int64_t)ctx->kv_blocks * ctx->block_size + 1; // K/V holds all but the last token
    int64_t room = pool_tokens < ctx->max_context ? pool_tokens : ctx->max_context;
    const char *name = field(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    int max_tokens = -1;
    int got = get_int(root, name, INT32_MIN, INT32_MAX, &max_tokens, err);
    if (got < 0) return -1;
    if (got == 0) // OpenAI's default for completions; chat: whatever fits
        max_tokens = rq->kind == API_COMPLETIONS ? 16 : (int)(room - longest > 0 ? room - longest : 1);
    if (max_tokens == 0 && rq->echo) {
        rq->echo_only = true; // lm-evaluation-harness's old scoring call: the prompt alone
        max_tokens = 1;
    }
    if (max_tokens < 1) return BAD(name, "'%s' must be >= 1 (0 only with echo), got %d", name, max_tokens);
    rq->max_tokens = max_tokens;
    for (int i = 0; i < rq->n_prompts; i++) {
        int64_t need = (int64_t)rq->prompts[i].n_ids + max_tokens;
        if (need > ctx->max_context)
            return BAD(name, "this model's maximum context length is %d tokens; prompt %d has %d tokens and %d more were asked",
                       ctx->max_context, i, rq->prompts[i].n_ids, max_tokens);
        if (need > pool_tokens)
            return BAD(name, "prompt %d with %d tokens and %d more needs more KV cache than the server has (%lld tokens)", i,
                       rq->prompts[i].n_ids, max_tokens, (long long)pool_tokens);
    }
    return 0;
}

static int parse_root(const ApiContext *ctx, ApiKind kind, const cJSON *root, ApiRequest *rq, ApiError *err) {
    if (!cJSON_IsObject(root)) return BAD(NULL, "the body must be a JSON object");
    int dup = json_has_duplicate_keys(root);
    if (dup < 0) return nomem(err);
    if (dup) return BAD(NULL, "the body has a duplicate key");
    rq->kind = kind;
    if (parse_model(ctx, root, err) < 0 || parse_common(ctx, root, rq, err) < 0 || parse_logprobs(root, kind, rq, err) < 0)
        return -1;
    if (kind == API_COMPLETIONS ? parse_prompts(ctx, root, rq, err) < 0 : parse_messages(ctx, root, rq, err) < 0) return -1;
    if (rq->n_prompts * rq->n > API_MAX_CHOICES)
        return BAD("n", "%d prompts x n %d is over %d choices", rq->n_prompts, rq->n, API_MAX_CHOICES);
    if (rq->echo && rq->logprobs && !ctx->prompt_logprobs)
        return BAD("echo", "prompt logprobs are off on this server (--prompt-logprob-rows 0)");
    if (rq->echo && rq->stream) return BAD("echo", "'echo' with 'stream' is not supported");
    return parse_lengths(ctx, root, rq, err);
}

int api_request_parse(const ApiContext *ctx, ApiKind kind, const char *body, size_t len, ApiRequest *rq, ApiError *err) {
    memset(rq, 0, sizeof *rq);
    memset(err, 0, sizeof *err);
    if (!utf8_valid((const uint8_t *)body, len)) return BAD(NULL, "the body is not valid UTF-8");
    if (memchr(body, 0, len)) return BAD(NULL, "the body contains a NUL byte");
    if (!json_strict_ok(body, len)) return BAD(NULL, "the body is not valid JSON (or nests deeper than 64)");
    json_init();
    cJSON *root = NULL;
    if (json_parse(body, len, &root)) {
        // Strict JSON always parses; what is left is cJSON's refusal of lone surrogates
        // (\ud800) or running out of memory.
        return BAD(NULL, "the body is not valid JSON (a \\u escape is not a valid character?)");
    }
    int rc = parse_root(ctx, kind, root, rq, err);
    cJSON_Delete(root);
    if (rc) api_request_free(rq);
    return rc;
}
