// myrmex generate: load a model, run one prompt, print the generated ids, text and timings.
//
// The prompt is token ids (--prompt-ids) or text (--prompt) encoded with the model directory's
// tokenizer, optionally as one user message through a chat template (--chat). With a
// tokenizer the output is also decoded, and generation stops at the tokenizer's eos ids
// (tokenizer_config.json, generation_config.json) as well as config.json's.
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "alloc.h"
#include "args.h"
#include "chat_template.h"
#include "commands.h"
#include "generate.h"
#include "json_util.h"
#include "model.h"
#include "tokenizer.h"

static double seconds_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

static double rate(double n, double s) { return s > 0 ? n / s : 0; }

static const char *finish_name(FinishReason f) { return f == FINISH_EOS ? "stop" : "length"; }

// What the run produced beyond the request's own outputs.
typedef struct Extra {
    const char *text;     // decoded output, NULL without a tokenizer
    const char *chat;     // the chat family's name with --chat, else NULL
} Extra;

static int print_json(const GenRequest *r, const GenStats *st, double load_s, const Extra *x) {
    json_init();
    cJSON *o = cJSON_CreateObject();
    cJSON *ids = cJSON_AddArrayToObject(o, "output_ids");
    for (int i = 0; i < r->n_output; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(r->output[i]));
    if (x->text) cJSON_AddStringToObject(o, "text", x->text);
    if (x->chat) cJSON_AddStringToObject(o, "chat_template", x->chat);
    cJSON_AddStringToObject(o, "finish_reason", finish_name(r->finish));
    cJSON_AddNumberToObject(o, "prompt_tokens", r->n_prompt);
    cJSON_AddNumberToObject(o, "completion_tokens", r->n_output);
    cJSON *t = cJSON_AddObjectToObject(o, "timings");
    cJSON_AddNumberToObject(t, "load_seconds", load_s);
    cJSON_AddNumberToObject(t, "prefill_seconds", st->prefill_seconds);
    cJSON_AddNumberToObject(t, "prefill_tokens_per_second", rate((double)st->prefill_tokens, st->prefill_seconds));
    cJSON_AddNumberToObject(t, "decode_seconds", st->decode_seconds);
    cJSON_AddNumberToObject(t, "decode_tokens_per_second", rate((double)st->decode_tokens, st->decode_seconds));
    if (r->top_logprobs > 0) {
        cJSON *all = cJSON_AddArrayToObject(o, "top_logprobs");
        for (int i = 0; i < r->n_output; i++) {
            cJSON *step = cJSON_CreateArray();
            for (int j = 0; j < r->top_logprobs; j++) {
                size_t k = (size_t)i * r->top_logprobs + j;
                cJSON *pair = cJSON_CreateArray();
                cJSON_AddItemToArray(pair, cJSON_CreateNumber(r->top_ids[k]));
                cJSON_AddItemToArray(pair, cJSON_CreateNumber(r->top_logprobs_out[k]));
                cJSON_AddItemToArray(step, pair);
            }
            cJSON_AddItemToArray(all, step);
        }
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text) return 1;
    puts(text);
    cJSON_free(text);
    return 0;
}

static void print_text(const GenRequest *r, const GenStats *st, double load_s, const Extra *x) {
    printf("output_ids: ");
    for (int i = 0; i < r->n_output; i++) printf("%s%d", i ? "," : "", r->output[i]);
    if (x->text) printf("\ntext: %s", x->text);
    printf("\nfinish: %s\n", finish_name(r->finish));
    for (int i = 0; i < r->n_output && r->top_logprobs > 0; i++) {
        printf("token %d:", i);
        for (int j = 0; j < r->top_logprobs; j++) {
            size_t k = (size_t)i * r->top_logprobs + j;
            printf(" %d(%.4f)", r->top_ids[k], r->top_logprobs_out[k]);
        }
        printf("\n");
    }
    printf("load:    %.3f s\n", load_s);
    printf("prefill: %ld tokens in %.3f s (%.1f tokens/s)\n", st->prefill_tokens, st->prefill_seconds,
           rate((double)st->prefill_tokens, st->prefill_seconds));
    printf("decode:  %ld tokens in %.3f s (%.1f tokens/s)\n", st->decode_tokens, st->decode_seconds,
           rate((double)st->decode_tokens, st->decode_seconds));
}

// ---------------------------------------------------------------------------------------
// Prompt and text

static bool file_exists(const char *dir, const char *name) {
    char path[4096];
    struct stat sb;
    return (size_t)snprintf(path, sizeof path, "%s/%s", dir, name) < sizeof path && stat(path, &sb) == 0;
}

// The tokenizer for --prompt (required) or for decoding --prompt-ids output (optional: a
// directory without tokenizer.json prints ids only; one that fails to load is a warning).
static MxStatus load_tokenizer(const char *dir, bool required, Tokenizer **tok) {
    *tok = NULL;
    ModelConfig cfg;
    MxStatus st = model_config_load(dir, &cfg);
    if (st != MX_OK) return required ? st : MX_OK; // model_load reports it
    if (!required && !file_exists(dir, "tokenizer.json")) return MX_OK;
    st = tokenizer_load(dir, cfg.vocab_size, tok);
    if (st != MX_OK && !required) {
        fprintf(stderr, "myrmex generate: warning: no text output: %s\n", mx_last_error());
        return MX_OK;
    }
    return st;
}

typedef struct PromptSpec {
    const char *text;          // --prompt, or NULL
    bool chat;                 // --chat
    const char *system;        // --system, or NULL
    int family;                // --chat-template, or -1 to detect
} PromptSpec;

// --chat: the prompt as one user message (after an optional system message) through the
// model's chat template, with the generation prompt. BOS is in the rendered text, so it is
// encoded without adding special tokens.
static MxStatus chat_prompt(const char *dir, const PromptSpec *p, const Tokenizer *tok, ChatFamily *family,
                            int32_t **ids, int *n) {
    ChatFamily f = (ChatFamily)p->family;
    if (p->family < 0) {
        char *jinja = NULL;
        MxStatus st = chat_template_load(dir, &jinja);
        if (st != MX_OK) return st;
        f = chat_family_detect(jinja, tok);
        bool had = jinja != NULL;
        mx_free(jinja);
        if (f == CHAT_UNKNOWN)
            return mx_fail(MX_ERR_ARG, "%s: %s; name one with --chat-template (%s)", dir,
                           had ? "its chat template is none of the built-in families"
                               : "it has no chat template and its tokens do not tell the family",
                           chat_family_list());
    }
    MxStatus st = chat_check_tokenizer(f, tok);
    if (st != MX_OK) return st;
    ChatMessage msgs[2];
    int n_msgs = 0;
    if (p->system) msgs[n_msgs++] = (ChatMessage){"system", p->system};
    msgs[n_msgs++] = (ChatMessage){"user", p->text};
    char *rendered = NULL;
    st = chat_render(f, msgs, n_msgs, true, &rendered);
    if (st == MX_OK) st = tokenizer_encode(tok, rendered, strlen(rendered), false, ids, n);
    mx_free(rendered);
    *family = f;
    return st;
}

// The generated text as it continues the prompt: decode(prompt + output) minus
// decode(prompt), so a SentencePiece word-start space on the first new token is kept; when
// the prompt's text is not a prefix of the whole (a character split across the boundary),
// decode(output) alone. Special tokens (the final eos) are left out.
static MxStatus output_text(const Tokenizer *tok, const GenRequest *r, char **text) {
    *text = NULL;
    int n_all = r->n_prompt + r->n_output;
    int32_t *all = mx_malloc((size_t)n_all * sizeof *all);
    if (!all) return mx_fail(MX_ERR_NOMEM, "output text");
    memcpy(all, r->prompt, (size_t)r->n_prompt * sizeof *all);
    memcpy(all + r->n_prompt, r->output, (size_t)r->n_output * sizeof *all);
    char *full = NULL, *pre = NULL;
    size_t n_full = 0, n_pre = 0;
    MxStatus st = tokenizer_decode(tok, all, n_all, true, &full, &n_full);
    if (st == MX_OK) st = tokenizer_decode(tok, r->prompt, r->n_prompt, true, &pre, &n_pre);
    if (st == MX_OK) {
        if (n_pre <= n_full && memcmp(full, pre, n_pre) == 0) {
            memmove(full, full + n_pre, n_full - n_pre + 1);
            *text = full;
            full = NULL;
        } else {
            st = tokenizer_decode(tok, r->output, r->n_output, true, text, &n_full);
        }
    }
    mx_free(pre);
    mx_free(full);
    mx_free(all);
    return st;
}

// ---------------------------------------------------------------------------------------

int cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *chat_template = NULL, *device = "auto";
    IntList prompt_ids = {0};
    PromptSpec ps = {.family = -1};
    int max_tokens = 32, top_k = 0, top_logprobs = 0, json = 0, ignore_eos = 0, chat = 0;
    float temperature = 0.0f, top_p = 1.0f;
    int64_t seed = 0;
    ModelOptions opt = model_options_default();
    ArgSpec specs[] = {
        {"--model", ARG_STRING, &model_dir, "DIR", "Hugging Face model directory (required)"},
        {"--prompt", ARG_STRING, &ps.text, "TEXT", "prompt text, encoded with DIR's tokenizer (bos added as it says)"},
        {"--prompt-ids", ARG_INT_LIST, &prompt_ids, "IDS", "prompt token ids, comma-separated (instead of --prompt)"},
        {"--chat", ARG_FLAG, &chat, NULL, "send --prompt as a user message through the model's chat template"},
        {"--system", ARG_STRING, &ps.system, "TEXT", "--chat: a system message before it"},
        {"--chat-template", ARG_STRING, &chat_template, "NAME",
         "--chat: llama-2, llama-3, mistral or chatml (default: detected from the model)"},
        {"--max-tokens", ARG_INT, &max_tokens, "N", "tokens to generate (default 32)"},
        {"--temperature", ARG_FLOAT, &temperature, "T", "0 = greedy (default 0)"},
        {"--top-k", ARG_INT, &top_k, "K", "sample among the K most likely (default 0 = all)"},
        {"--top-p", ARG_FLOAT, &top_p, "P", "nucleus sampling mass in (0, 1] (default 1)"},
        {"--seed", ARG_INT64, &seed, "S", "sampling seed (default 0)"},
        {"--top-logprobs", ARG_INT, &top_logprobs, "K", "report the K most likely tokens per step"},
        {"--ignore-eos", ARG_FLAG, &ignore_eos, NULL, "do not stop at eos ids (config.json's and the tokenizer's)"},
        {"--device", ARG_STRING, &device, "DEV", "auto, cpu, cuda or cuda:N (default auto: cuda when a GPU is present)"},
        {"--gemm", ARG_STRING, &opt.gemm, "IMPL", "CUDA GEMM kernels: auto, cublas, skinny, mma or wgmma (default auto)"},
        {"--block-size", ARG_INT, &opt.block_size, "N", "tokens per KV block (default 16)"},
        {"--max-step-tokens", ARG_INT, &opt.max_step_tokens, "N", "tokens per forward; longer prompts are chunked (default 512)"},
        {"--json", ARG_FLAG, &json, NULL, "print one JSON object"},
    };
    int rc = args_parse("generate", "myrmex generate --model DIR (--prompt TEXT [--chat] | --prompt-ids 1,2,3) [options]",
                        specs, (int)(sizeof specs / sizeof *specs), argc, argv, NULL, 0, 0);
    if (rc != ARGS_OK) {
        int_list_free(&prompt_ids);
        return rc == ARGS_HELP ? 0 : 2;
    }
    ps.chat = chat;
    if (chat_template) ps.family = chat_family_from_name(chat_template);
    const char *usage = !model_dir                            ? "--model is required (see --help)"
                        : ps.text && prompt_ids.n             ? "give --prompt or --prompt-ids, not both"
                        : !ps.text && !prompt_ids.n           ? "--prompt or --prompt-ids is required (see --help)"
                        : chat && !ps.text                    ? "--chat needs --prompt"
                        : ps.system && !chat                  ? "--system needs --chat"
                        : chat_template && !chat              ? "--chat-template needs --chat"
                        : max_tokens < 1                      ? "--max-tokens must be >= 1"
                        : top_logprobs < 0                    ? "--top-logprobs must be >= 0"
                                                              : NULL;
    GenRequest req = {.max_tokens = max_tokens,
                      .sampling = {.temperature = temperature, .top_k = top_k, .top_p = top_p, .seed = (uint64_t)seed},
                      .top_logprobs = top_logprobs, .ignore_eos = ignore_eos};
    if (!usage && sampling_check(&req.sampling) != MX_OK) usage = mx_last_error();
    if (usage || (chat_template && ps.family < 0)) {
        int_list_free(&prompt_ids);
        if (usage) return args_usage_error("generate", "%s", usage);
        return args_usage_error("generate", "unknown --chat-template '%s' (one of %s)", chat_template, chat_family_list());
    }

    // The tokenizer and the prompt's ids.
    Tokenizer *tok = NULL;
    int32_t *prompt = NULL;
    int n_prompt = 0;
    ChatFamily family = CHAT_UNKNOWN;
    MxStatus st = load_tokenizer(model_dir, ps.text != NULL, &tok);
    if (st == MX_OK && ps.chat) {
        st = chat_prompt(model_dir, &ps, tok, &family, &prompt, &n_prompt);
    } else if (st == MX_OK && ps.text) {
        st = tokenizer_encode(tok, ps.text, strlen(ps.text), true, &prompt, &n_prompt);
    } else if (st == MX_OK) {
        prompt = mx_malloc((size_t)prompt_ids.n * sizeof *prompt);
        if (!prompt) st = mx_fail(MX_ERR_NOMEM, "prompt");
        for (int i = 0; prompt && i < prompt_ids.n; i++) prompt[i] = (int32_t)prompt_ids.items[i];
        n_prompt = prompt_ids.n;
    }
    int_list_free(&prompt_ids);
    req.prompt = prompt;
    req.n_prompt = n_prompt;
    if (st == MX_OK && n_prompt == 0) st = mx_fail(MX_ERR_ARG, "the prompt encodes to no tokens");
    if (st == MX_OK && opt.block_size > 0) opt.kv_blocks = generate_blocks_needed(&req, 1, opt.block_size);

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    Model model;
    GenStats stats;
    double load_s = 0;
    Backend backend;
    if (st == MX_OK) st = backend_open(device, &backend);
    if (st == MX_OK) {
        st = model_load(model_dir, &backend, &opt, &model);
        load_s = seconds_since(&t0);
        if (st == MX_OK) {
            char plan[256];
            model_plan_describe(&model.plan, plan, sizeof plan);
            if (!json) fprintf(stderr, "myrmex: %s; %s\n", backend.desc, plan);
            // The tokenizer's eos ids (generation_config.json, tokenizer_config.json) stop it too.
            if (tok) req.n_stop_ids = tokenizer_eos(tok, &req.stop_ids);
            st = generate_run(&model, &req, 1, &stats);
            model_free(&model);
        }
    }
    char *text = NULL;
    if (st == MX_OK && tok && output_text(tok, &req, &text) != MX_OK)
        fprintf(stderr, "myrmex generate: warning: cannot decode the output: %s\n", mx_last_error());
    if (st == MX_OK) {
        Extra x = {.text = text, .chat = ps.chat ? chat_family_name(family) : NULL};
        rc = 0;
        if (json) rc = print_json(&req, &stats, load_s, &x);
        else print_text(&req, &stats, load_s, &x);
    } else {
        fprintf(stderr, "myrmex generate: error: %s\n", mx_last_error());
        rc = 1;
    }
    mx_free(text);
    gen_request_clear(&req);
    mx_free(prompt);
    if (tok) tokenizer_free(tok);
    return rc;
}
