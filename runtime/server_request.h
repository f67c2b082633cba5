// OpenAI request bodies for `myrmex serve`: parsing and validation of /v1/completions and
// /v1/chat/completions, from raw bytes to token ids and engine parameters. No HTTP and no
// engine here (the fuzz target drives it alone).
//
// Every failure is an ApiError with the HTTP status of RELIABILITY.md's table and an
// OpenAI-style body; its message is built from fixed text and numbers only, never from the
// request's bytes (which may be invalid UTF-8, huge, or hostile).
#ifndef MYRMEX_SERVER_REQUEST_H
#define MYRMEX_SERVER_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat_template.h"
#include "tokenizer.h"

#define API_MAX_N 16          // choices per prompt ("n")
#define API_MAX_PROMPTS 64    // prompts in one completions request
#define API_MAX_CHOICES 64    // prompts x n
#define API_MAX_LOGPROBS 20   // top logprobs per token (completions "logprobs", chat "top_logprobs")
#define API_MAX_STOP 16       // stop strings, each 1..API_MAX_STOP_BYTES bytes
#define API_MAX_STOP_BYTES 256
#define API_MAX_MESSAGES 4096 // chat messages

typedef enum ApiKind { API_COMPLETIONS, API_CHAT } ApiKind;

typedef struct ApiError {
    int status;          // 400, 404, 413, 415, 429, 500, 503 ...
    const char *type;    // "invalid_request_error", "server_error", ...
    const char *param;   // the offending field, or NULL
    const char *code;    // a short machine-readable code, or NULL
    char message[256];
} ApiError;

// What a request is checked against: the served model and its engine.
typedef struct ApiContext {
    const char *model_name;   // the id in /v1/models
    const char *model_path;   // --model DIR (also accepted as "model")
    const Tokenizer *tok;     // NULL: text prompts and chat are refused
    ChatFamily chat;          // CHAT_UNKNOWN: chat is refused
    int vocab_size;
    int max_context;          // prompt + max_tokens at most
    int kv_blocks, block_size; // the whole pool: a longer request could never run
    bool prompt_logprobs;     // the engine can score prompts (echo with logprobs)
} ApiContext;

typedef struct ApiPrompt {
    int32_t *ids;   // [n_ids], each in [0, vocab)
    int n_ids;
    char *text;     // the prompt as given (string prompts), for echo; NULL for ids
} ApiPrompt;

typedef struct ApiRequest {
    ApiKind kind;
    ApiPrompt *prompts;      // [n_prompts]; chat: one, the rendered conversation
    int n_prompts;
    int n;                   // choices per prompt, 1..API_MAX_N
    int max_tokens;          // tokens to generate per choice, >= 1 (see echo_only)
    bool echo_only;          // completions with max_tokens 0 and echo: the prompt is scored,
                             // the engine runs 1 token that is not returned
    float temperature, top_p;
    int top_k;               // 0 = all
    bool has_seed;
    uint64_t seed;           // choice k of each prompt draws with seed + k
    char **stop;             // [n_stop] NUL-terminated, valid UTF-8
    int n_stop;
    bool logprobs;           // per-token logprobs in the answer
    int top_logprobs;        // 0..API_MAX_LOGPROBS
    bool echo;               // completions: the prompt (and its logprobs) before the text
    bool stream;
    bool ignore_eos;         // vLLM's extension
} ApiRequest;

// Checks body[0..len) (the raw bytes) and fills *rq: UTF-8, no NUL, strict JSON nested at
// most 64 deep, an object without duplicate keys, every field of the right type and range,
// the model served here, prompts tokenized (text with bos as the tokenizer says; chat
// through the chat template), ids in the vocabulary, prompt + max_tokens within the context
// and the KV pool. Returns 0, or -1 with *err set (rq then holds nothing to free).
int api_request_parse(const ApiContext *ctx, ApiKind kind, const char *body, size_t len, ApiRequest *rq, ApiError *err);
void api_request_free(ApiRequest *rq);

// Fills *err (message printf-style, fixed text and numbers only).
void api_error_set(ApiError *err, int status, const char *type, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#endif
