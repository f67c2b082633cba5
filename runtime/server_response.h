// OpenAI response bodies for `myrmex serve`: completions and chat completions (whole, or
// as Server-Sent-Event chunks), logprobs in both routes' shapes, usage, errors, the model
// list. Every string written is valid UTF-8 (engine text and decoded tokens are), so the
// JSON is always valid. Each builder returns a NUL-terminated string from mx_malloc, or NULL
// when out of memory.
#ifndef MYRMEX_SERVER_RESPONSE_H
#define MYRMEX_SERVER_RESPONSE_H

#include <stdbool.h>
#include <stdint.h>

#include "myrmex.h"
#include "server_request.h"
#include "tokenizer.h"

// The text of single tokens, for logprobs: decoded one id at a time and cached. Ids
// without a tokenizer read "token_id:N" (vLLM's spelling). Not thread-safe: the engine
// thread owns it.
typedef struct TokenText {
    const Tokenizer *tok;
    int vocab;
    char **text; // [vocab] lazily filled
} TokenText;

int token_text_init(TokenText *tt, const Tokenizer *tok, int vocab);
void token_text_free(TokenText *tt);
// The text of id (valid UTF-8); NULL when out of memory.
const char *token_text(TokenText *tt, int32_t id);

// What every response of one request shares.
typedef struct ApiMeta {
    char id[48];       // "cmpl-..." or "chatcmpl-..."
    long long created; // Unix seconds
    const char *model;
} ApiMeta;

// One token with its logprobs: lp NaN for "none" (a prompt's first token); top_*[n_top].
typedef struct ApiToken {
    int32_t id;
    float lp;
    const int32_t *top_ids;
    const float *top_lp;
    int n_top;
} ApiToken;

typedef struct ApiUsage {
    long prompt_tokens, completion_tokens;
} ApiUsage;

// A whole answer: outs[n_choices] (choice k answers prompt k / rq->n).
char *api_response_json(const ApiMeta *m, const ApiRequest *rq, const MxOutput *outs, int n_choices, TokenText *tt);

// One SSE event "data: {...}\n\n" of a stream: choice `index`'s new text (may be empty),
// its token (NULL for none; logprobs are written when rq->logprobs), and finish (NULL
// while running). Chat: role_first adds the assistant role to the delta (its first chunk).
char *api_stream_chunk(const ApiMeta *m, const ApiRequest *rq, int index, const char *text, size_t len,
                       const ApiToken *tok, const char *finish, bool role_first, TokenText *tt);
// The last events: a chunk with usage and no choices, then "data: [DONE]".
char *api_stream_end(const ApiMeta *m, const ApiRequest *rq, const ApiUsage *u);

// {"error": {"message", "type", "param", "code"}}.
char *api_error_json(const ApiError *e);
// The same as one SSE event followed by "data: [DONE]" (a stream that fails after its start).
char *api_stream_error(const ApiError *e);
// GET /v1/models.
char *api_models_json(const char *model, long long created, int max_context);

#endif
