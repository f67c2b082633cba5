// OpenAI response bodies (see server_response.h), built with cJSON.
//
// Completions logprobs: {"tokens": [s], "token_logprobs": [lp|null], "top_logprobs":
// [{s: lp}|null], "text_offset": [chars]}; with echo the prompt's tokens come first (the
// first with null: nothing predicts it), which is what lm-evaluation-harness sums.
// Chat logprobs: {"content": [{"token", "logprob", "bytes", "top_logprobs": [{...}]}]}.
#include "server_response.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "json_util.h"

// ---- token text --------------------------------------------------------------------------

int token_text_init(TokenText *tt, const Tokenizer *tok, int vocab) {
    tt->tok = tok;
    tt->vocab = vocab;
    tt->text = mx_calloc((size_t)vocab, sizeof *tt->text);
    return tt->text ? 0 : -1;
}

void token_text_free(TokenText *tt) {
    for (int i = 0; tt->text && i < tt->vocab; i++) mx_free(tt->text[i]);
    mx_free(tt->text);
    memset(tt, 0, sizeof *tt);
}

const char *token_text(TokenText *tt, int32_t id) {
    if (id < 0 || id >= tt->vocab) return "";
    if (tt->text[id]) return tt->text[id];
    char *s = NULL;
    size_t len;
    if (!tt->tok || tokenizer_decode(tt->tok, &id, 1, false, &s, &len) != MX_OK) {
        mx_free(s);
        char buf[32];
        snprintf(buf, sizeof buf, "token_id:%d", id);
        s = mx_strdup(buf);
    }
    return tt->text[id] = s;
}

// Unicode characters in s (valid UTF-8): text_offset counts characters, as Python does.
static long utf8_chars(const char *s) {
    long n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

// ---- pieces ------------------------------------------------------------------------------

static cJSON *number_or_null(float v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

static char *print_and_free(cJSON *root) {
    char *s = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return s; // json_init routes cJSON through mx_malloc: release with mx_free
}

static cJSON *meta_object(const ApiMeta *m, const char *object) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)m->created);
    cJSON_AddStringToObject(o, "model", m->model);
    return o;
}

static void add_usage(cJSON *o, const ApiUsage *u) {
    cJSON *j = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(j, "prompt_tokens", (double)u->prompt_tokens);
    cJSON_AddNumberToObject(j, "completion_tokens", (double)u->completion_tokens);
    cJSON_AddNumberToObject(j, "total_tokens", (double)(u->prompt_tokens + u->completion_tokens));
}

// Completions logprobs: the four parallel arrays, appended one token at a time.
typedef struct CompletionLogprobs {
    cJSON *obj, *tokens, *lps, *tops, *offsets;
    long offset; // characters of text before the next token
} CompletionLogprobs;

static void clp_init(CompletionLogprobs *c, long offset) {
    c->obj = cJSON_CreateObject();
    c->tokens = cJSON_AddArrayToObject(c->obj, "tokens");
    c->lps = cJSON_AddArrayToObject(c->obj, "token_logprobs");
    c->tops = cJSON_AddArrayToObject(c->obj, "top_logprobs");
    c->offsets = cJSON_AddArrayToObject(c->obj, "text_offset");
    c->offset = offset;
}

static void clp_add(CompletionLogprobs *c, const ApiToken *t, TokenText *tt) {
    const char *s = token_text(tt, t->id);
    cJSON_AddItemToArray(c->tokens, cJSON_CreateString(s ? s : ""));
    cJSON_AddItemToArray(c->lps, number_or_null(t->lp));
    if (!isfinite(t->lp)) {
        cJSON_AddItemToArray(c->tops, cJSON_CreateNull());
    } else {
        cJSON *top = cJSON_CreateObject();
        for (int k = 0; k < t->n_top; k++) {
            const char *ks = token_text(tt, t->top_ids[k]);
            if (!cJSON_GetObjectItemCaseSensitive(top, ks ? ks : "")) // two ids with one text: the likelier
                cJSON_AddItemToObject(top, ks ? ks : "", cJSON_CreateNumber(t->top_lp[k]));
        }
        cJSON_AddItemToArray(c->tops, top);
    }
    cJSON_AddItemToArray(c->offsets, cJSON_CreateNumber((double)c->offset));
    c->offset += s ? utf8_chars(s) : 0;
}

// Chat logprobs entry: {"token", "logprob", "bytes": [...]}.
static cJSON *chat_entry(int32_t id, float lp, TokenText *tt) {
    const char *s = token_text(tt, id);
    if (!s) s = "";
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "token", s);
    cJSON_AddItemToObject(e, "logprob", number_or_null(lp));
    cJSON *bytes = cJSON_AddArrayToObject(e, "bytes");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) cJSON_AddItemToArray(bytes, cJSON_CreateNumber(*p));
    return e;
}

static void chat_add(cJSON *content, const ApiToken *t, TokenText *tt) {
    cJSON *e = chat_entry(t->id, t->lp, tt);
    cJSON *top = cJSON_AddArrayToObject(e, "top_logprobs");
    for (int k = 0; k < t->n_top; k++) cJSON_AddItemToArray(top, chat_entry(t->top_ids[k], t->top_lp[k], tt));
    cJSON_AddItemToArray(content, e);
}

// Token i of o's output as an ApiToken.
static ApiToken out_token(const MxOutput *o, int i) {
    return (ApiToken){.id = o->tokens[i], .lp = o->token_logprobs ? o->token_logprobs[i] : NAN,
                      .top_ids = o->n_top ? o->top_ids + (size_t)i * o->n_top : NULL,
                      .top_lp = o->n_top ? o->top_logprobs + (size_t)i * o->n_top : NULL, .n_top = o->n_top};
}

// The text a prompt echoes: as given, or its ids decoded. NULL when out of memory.
static char *echo_text(const ApiPrompt *p, TokenText *tt) {
    if (p->text) return mx_strdup(p->text);
    char *s = NULL;
    size_t len;
    if (tt->tok && tokenizer_decode(tt->tok, p->ids, p->n_ids, false, &s, &len) == MX_OK) return s;
    mx_free(s);
    return mx_strdup("");
}

static const char *finish_reason(MxFinish f) { return f == MX_FINISH_STOP ? "stop" : "length"; }

static cJSON *completion_choice(const ApiRequest *rq, int index, const MxOutput *o, TokenText *tt) {
    const ApiPrompt *p = &rq->prompts[index / rq->n];
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", index);
    char *echo = rq->echo ? echo_text(p, tt) : NULL;
    const char *out = rq->echo_only || !o->text ? "" : o->text;
    size_t n_echo = echo ? strlen(echo) : 0, n_out = strlen(out);
    char *text = mx_malloc(n_echo + n_out + 1);
    if (text) {
        memcpy(text, echo ? echo : "", n_echo);
        memcpy(text + n_echo, out, n_out + 1);
        cJSON_AddStringToObject(c, "text", text);
    }
    mx_free(text);
    if (rq->logprobs) {
        CompletionLogprobs lp;
        clp_init(&lp, 0);
        for (int i = 0; rq->echo && i < p->n_ids; i++) {
            bool scored = o->prompt_logprobs && i > 0 && i < o->n_prompt_scored;
            size_t k = (size_t)i * (size_t)o->n_top;
            ApiToken t = {.id = p->ids[i], .lp = scored ? o->prompt_logprobs[i] : NAN,
                          .top_ids = scored ? o->prompt_top_ids + k : NULL, .top_lp = scored ? o->prompt_top_logprobs + k : NULL,
                          .n_top = scored ? rq->top_logprobs : 0};
            clp_add(&lp, &t, tt);
        }
        if (echo) lp.offset = utf8_chars(echo); // generated tokens start after the echoed text
        for (int i = 0; !rq->echo_only && i < o->n_tokens; i++) {
            ApiToken t = out_token(o, i);
            clp_add(&lp, &t, tt);
        }
        cJSON_AddItemToObject(c, "logprobs", lp.obj);
    } else {
        cJSON_AddNullToObject(c, "logprobs");
    }
    mx_free(echo);
    cJSON_AddStringToObject(c, "finish_reason", rq->echo_only ? "length" : finish_reason(o->finish));
    return c;
}

static cJSON *chat_choice(const ApiRequest *rq, int index, const MxOutput *o, TokenText *tt) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", index);
    cJSON *msg = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON_AddStringToObject(msg, "content", o->text ? o->text : "");
    if (rq->logprobs) {
        cJSON *lp = cJSON_AddObjectToObject(c, "logprobs");
        cJSON *content = cJSON_AddArrayToObject(lp, "content");
        for (int i = 0; i < o->n_tokens; i++) {
            ApiToken t = out_token(o, i);
            chat_add(content, &t, tt);
        }
    } else {
        cJSON_AddNullToObject(c, "logprobs");
    }
    cJSON_AddStringToObject(c, "finish_reason", finish_reason(o->finish));
    return c;
}

char *api_response_json(const ApiMeta *m, const ApiRequest *rq, const MxOutput *outs, int n_choices, TokenText *tt) {
    json_init();
    bool chat = rq->kind == API_CHAT;
    cJSON *root = meta_object(m, chat ? "chat.completion" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    ApiUsage u = {0, 0};
    for (int i = 0; i < rq->n_prompts; i++) u.prompt_tokens += rq->prompts[i].n_ids;
    for (int k = 0; k < n_choices; k++) {
        cJSON_AddItemToArray(choices, chat ? chat_choice(rq, k, &outs[k], tt) : completion_choice(rq, k, &outs[k], tt));
        if (!rq->echo_only) u.completion_tokens += outs[k].n_tokens;
    }
    add_usage(root, &u);
    return print_and_free(root);
}

// "data: " + JSON + "\n\n" (+ "data: [DONE]\n\n").
static char *sse(cJSON *root, bool done) {
    char *json = print_and_free(root);
    if (!json) return NULL;
    size_t n = strlen(json);
    const char *tail = done ? "\n\ndata: [DONE]\n\n" : "\n\n";
    char *s = mx_malloc(n + 6 + strlen(tail) + 1);
    if (s) sprintf(s, "data: %s%s", json, tail);
    mx_free(json);
    return s;
}

char *api_stream_chunk(const ApiMeta *m, const ApiRequest *rq, int index, const char *text, size_t len,
                       const ApiToken *tok, const char *finish, bool role_first, TokenText *tt) {
    json_init();
    bool chat = rq->kind == API_CHAT;
    cJSON *root = meta_object(m, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", index);
    char *piece = mx_malloc(len + 1);
    if (piece) {
        memcpy(piece, text ? text : "", len);
        piece[len] = '\0';
    }
    if (chat) {
        cJSON *delta = cJSON_AddObjectToObject(c, "delta");
        if (role_first) cJSON_AddStringToObject(delta, "role", "assistant");
        if (piece && (len > 0 || role_first)) cJSON_AddStringToObject(delta, "content", piece);
    } else if (piece) {
        cJSON_AddStringToObject(c, "text", piece);
    }
    mx_free(piece);
    if (rq->logprobs && tok) {
        if (chat) {
            cJSON *lp = cJSON_AddObjectToObject(c, "logprobs");
            chat_add(cJSON_AddArrayToObject(lp, "content"), tok, tt);
        } else {
            CompletionLogprobs lp;
            clp_init(&lp, 0);
            clp_add(&lp, tok, tt);
            cJSON_AddItemToObject(c, "logprobs", lp.obj);
        }
    } else {
        cJSON_AddNullToObject(c, "logprobs");
    }
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    return sse(root, false);
}

char *api_stream_end(const ApiMeta *m, const ApiRequest *rq, const ApiUsage *u) {
    json_init();
    cJSON *root = meta_object(m, rq->kind == API_CHAT ? "chat.completion.chunk" : "text_completion");
    cJSON_AddArrayToObject(root, "choices");
    add_usage(root, u);
    return sse(root, true);
}

static cJSON *error_object(const ApiError *e) {
    cJSON *root = cJSON_CreateObject();
    cJSON *o = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(o, "message", e->message);
    cJSON_AddStringToObject(o, "type", e->type ? e->type : "invalid_request_error");
    if (e->param) cJSON_AddStringToObject(o, "param", e->param);
    else cJSON_AddNullToObject(o, "param");
    if (e->code) cJSON_AddStringToObject(o, "code", e->code);
    else cJSON_AddNullToObject(o, "code");
    return root;
}

char *api_error_json(const ApiError *e) {
    json_init();
    return print_and_free(error_object(e));
}

char *api_stream_error(const ApiError *e) {
    json_init();
    return sse(error_object(e), true);
}

char *api_models_json(const char *model, long long created, int max_context) {
    json_init();
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(root, "data");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", model);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)created);
    cJSON_AddStringToObject(m, "owned_by", "myrmex");
    cJSON_AddNumberToObject(m, "max_model_len", max_context);
    cJSON_AddItemToArray(data, m);
    return print_and_free(root);
}
