// libFuzzer target for `myrmex serve`'s request bodies: api_request_parse (UTF-8, strict
// JSON, every field's type and range, prompts tokenized through the llama3 test tokenizer
// and the llama-3 chat template), then the response builders on a fake output.
// Built with clang under ASan + UBSan (cmake -DMYRMEX_FUZZ=ON): 20,000 inputs in the test
// suite (CTest label fuzz), longer with scripts/fuzz.sh [SECONDS], which also holds the seeds.
//
// The first byte picks the route (even: completions, odd: chat); the rest is the body.
// Invariants: a refusal has a 4xx/5xx status, a fixed-text message that is valid UTF-8 and
// never contains the body's bytes (checked for bodies of 8+ bytes); an accepted request has
// ids in the vocabulary, fits the context and pool, has limits within their caps, and
// renders to valid JSON in both the whole and the streamed shape.
#define _GNU_SOURCE // memmem
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "json_util.h"
#include "server_request.h"
#include "server_response.h"
#include "utf8.h"

#ifndef FUZZ_TOKENIZER_DIR
#define FUZZ_TOKENIZER_DIR "tests/fixtures/tokenizers/llama3"
#endif

static Tokenizer *tok;
static TokenText tt;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok) {
        if (tokenizer_load(FUZZ_TOKENIZER_DIR, 0, &tok) != MX_OK) abort(); // run from the repo root
        token_text_init(&tt, tok, tokenizer_vocab_size(tok));
    }
    if (size < 1) return 0;
    ApiContext ctx = {.model_name = "model", .model_path = "/models/model", .tok = tok, .chat = CHAT_LLAMA3,
                      .vocab_size = tokenizer_vocab_size(tok), .max_context = 512, .kv_blocks = 24, .block_size = 16,
                      .prompt_logprobs = true};
    ApiKind kind = data[0] & 1 ? API_CHAT : API_COMPLETIONS;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    ApiRequest rq;
    ApiError err;
    if (api_request_parse(&ctx, kind, body, len, &rq, &err) != 0) {
        size_t n = strlen(err.message);
        if (err.status < 400 || err.status > 599 || !utf8_valid((const uint8_t *)err.message, n)) abort();
        if (len >= 8 && memmem(err.message, n, body, len)) abort(); // never echoes the body
        char *ej = api_error_json(&err);
        if (ej && (!utf8_valid((const uint8_t *)ej, strlen(ej)) || !json_strict_ok(ej, strlen(ej)))) abort();
        mx_free(ej);
        return 0;
    }
    if (rq.n_prompts < 1 || rq.n < 1 || rq.n > API_MAX_N || rq.n_prompts * rq.n > API_MAX_CHOICES ||
        rq.top_logprobs < 0 || rq.top_logprobs > API_MAX_LOGPROBS || rq.n_stop > API_MAX_STOP || rq.max_tokens < 1 ||
        !(rq.temperature >= 0) || !(rq.top_p > 0 && rq.top_p <= 1) || rq.top_k < 0)
        abort();
    for (int i = 0; i < rq.n_prompts; i++) {
        const ApiPrompt *p = &rq.prompts[i];
        if (p->n_ids < 1 || p->n_ids + rq.max_tokens > ctx.max_context) abort();
        for (int k = 0; k < p->n_ids; k++)
            if (p->ids[k] < 0 || p->ids[k] >= ctx.vocab_size) abort();
    }
    // A fake output per choice: the prompt's ids as generated tokens, logprobs everywhere.
    int n_choices = rq.n_prompts * rq.n;
    MxOutput *outs = calloc((size_t)n_choices, sizeof *outs);
    float lp[8] = {-0.5f, -1, -2, -3, -4, -5, -6, -7};
    int32_t top[API_MAX_LOGPROBS];
    for (int k = 0; k < API_MAX_LOGPROBS; k++) top[k] = k;
    float *many = calloc(4096 * (size_t)(API_MAX_LOGPROBS + 1), sizeof *many);
    int32_t *many_ids = calloc(4096 * (size_t)(API_MAX_LOGPROBS + 1), sizeof *many_ids);
    for (int c = 0; outs && many && many_ids && c < n_choices; c++) {
        const ApiPrompt *p = &rq.prompts[c / rq.n];
        int n = p->n_ids < 4096 ? p->n_ids : 4096;
        outs[c] = (MxOutput){.tokens = p->ids, .n_tokens = n, .text = "out \xc3\xa9", .text_len = 6, .top_ids = many_ids,
                             .top_logprobs = many, .n_top = rq.logprobs ? rq.top_logprobs : 0, .token_logprobs = many,
                             .prompt_logprobs = many, .prompt_top_ids = many_ids, .prompt_top_logprobs = many,
                             .n_prompt_scored = n, .finish = MX_FINISH_STOP, .n_prompt = p->n_ids};
        if (p->n_ids > 4096) outs[c].prompt_logprobs = NULL; // not scored: nulls
    }
    ApiMeta meta = {.id = "cmpl-fuzz", .created = 1, .model = "model"};
    if (outs && many && many_ids) {
        char *json = api_response_json(&meta, &rq, outs, n_choices, &tt);
        if (json && (!utf8_valid((const uint8_t *)json, strlen(json)) || !json_strict_ok(json, strlen(json)))) abort();
        mx_free(json);
        ApiToken t = {.id = rq.prompts[0].ids[0], .lp = lp[0], .top_ids = top, .top_lp = many, .n_top = rq.top_logprobs};
        char *chunk = api_stream_chunk(&meta, &rq, 0, "x", 1, &t, NULL, true, &tt);
        if (chunk) { // "data: " JSON "\n\n"
            size_t n = strlen(chunk);
            if (n < 8 || memcmp(chunk, "data: ", 6) != 0 || memcmp(chunk + n - 2, "\n\n", 2) != 0 ||
                !utf8_valid((const uint8_t *)chunk, n) || !json_strict_ok(chunk + 6, n - 8))
                abort();
        }
        mx_free(chunk);
    }
    free(outs);
    free(many);
    free(many_ids);
    api_request_free(&rq);
    return 0;
}
