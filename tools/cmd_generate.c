// myrmex generate: load a model into an engine, run prompts, print the generated ids, text
// and timings.
//
// One prompt comes from the command line as token ids (--prompt-ids) or text (--prompt),
// encoded with the model directory's tokenizer, optionally as one user message through a
// chat template (--chat). Many come from a JSONL file (--prompts FILE, see prompt_file.h)
// and run through the engine at once, continuously batched; each result is printed in input
// order, then the aggregate throughput. With a tokenizer the output is also decoded, and
// generation stops at the tokenizer's eos ids (tokenizer_config.json,
// generation_config.json) as well as config.json's.
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
#include "engine_args.h"
#include "json_util.h"
#include "model_config.h"
#include "myrmex.h"
#include "prompt_file.h"
#include "sampler.h"
#include "tokenizer.h"

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double rate(double n, double s) { return s > 0 ? n / s : 0; }

// ---------------------------------------------------------------------------------------
// Results

// Per request: prefill is from its arrival to its first token, decode the rest.
typedef struct Timing {
    double load_s, prefill_s, decode_s;
    int prefill_tokens, decode_tokens;
} Timing;

static Timing timing(const MxOutput *o, double load_s) {
    double prefill = o->first_token_seconds, decode = o->total_seconds - o->first_token_seconds;
    return (Timing){.load_s = load_s, .prefill_s = prefill, .decode_s = decode > 0 ? decode : 0,
                    .prefill_tokens = o->n_prompt, .decode_tokens = o->n_tokens > 1 ? o->n_tokens - 1 : 0};
}

static int print_json(const MxOutput *o, double load_s, const char *chat) {
    Timing t = timing(o, load_s);
    json_init();
    cJSON *obj = cJSON_CreateObject();
    cJSON *ids = cJSON_AddArrayToObject(obj, "output_ids");
    for (int i = 0; i < o->n_tokens; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(o->tokens[i]));
    if (o->text) cJSON_AddStringToObject(obj, "text", o->text);
    if (chat) cJSON_AddStringToObject(obj, "chat_template", chat);
    cJSON_AddStringToObject(obj, "finish_reason", mx_finish_name(o->finish));
    cJSON_AddNumberToObject(obj, "prompt_tokens", o->n_prompt);
    cJSON_AddNumberToObject(obj, "completion_tokens", o->n_tokens);
    cJSON *tj = cJSON_AddObjectToObject(obj, "timings");
    cJSON_AddNumberToObject(tj, "load_seconds", t.load_s);
    cJSON_AddNumberToObject(tj, "prefill_seconds", t.prefill_s);
    cJSON_AddNumberToObject(tj, "prefill_tokens_per_second", rate(t.prefill_tokens, t.prefill_s));
    cJSON_AddNumberToObject(tj, "decode_seconds", t.decode_s);
    cJSON_AddNumberToObject(tj, "decode_tokens_per_second", rate(t.decode_tokens, t.decode_s));
    if (o->n_top > 0) {
        cJSON *all = cJSON_AddArrayToObject(obj, "top_logprobs");
        for (int i = 0; i < o->n_tokens; i++) {
            cJSON *step = cJSON_CreateArray();
            for (int j = 0; j < o->n_top; j++) {
                size_t k = (size_t)i * o->n_top + j;
                cJSON *pair = cJSON_CreateArray();
                cJSON_AddItemToArray(pair, cJSON_CreateNumber(o->top_ids[k]));
                cJSON_AddItemToArray(pair, cJSON_CreateNumber(o->top_logprobs[k]));
                cJSON_AddItemToArray(step, pair);
            }
            cJSON_AddItemToArray(all, step);
        }
    }
    char *text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!text) return 1;
    puts(text);
    cJSON_free(text);
    return 0;
}

static void print_text(const MxOutput *o, double load_s, bool timings) {
    printf("output_ids: ");
    for (int i = 0; i < o->n_tokens; i++) printf("%s%d", i ? "," : "", o->tokens[i]);
    if (o->text) printf("\ntext: %s", o->text);
    printf("\nfinish: %s\n", mx_finish_name(o->finish));
    for (int i = 0; i < o->n_tokens && o->n_top > 0; i++) {
        printf("token %d:", i);
        for (int j = 0; j < o->n_top; j++) {
            size_t k = (size_t)i * o->n_top + j;
            printf(" %d(%.4f)", o->top_ids[k], o->top_logprobs[k]);
        }
        printf("\n");
    }
    if (!timings) return;
    Timing t = timing(o, load_s);
    printf("load:    %.3f s\n", t.load_s);
    printf("prefill: %d tokens in %.3f s (%.1f tokens/s)\n", t.prefill_tokens, t.prefill_s, rate(t.prefill_tokens, t.prefill_s));
    printf("decode:  %d tokens in %.3f s (%.1f tokens/s)\n", t.decode_tokens, t.decode_s, rate(t.decode_tokens, t.decode_s));
}

// The aggregate over a --prompts run: on stdout in text mode, on stderr with --json.
static void print_summary(FILE *f, const MxEngineStats *s, int n, long prompt_tokens, double run_s) {
    fprintf(f, "requests:  %d in %ld steps, %ld preemptions\n", n, s->steps, s->preemptions);
    fprintf(f, "prompt:    %ld tokens, %ld from the prefix cache\n", prompt_tokens, s->tokens_cached);
    fprintf(f, "generated: %ld tokens in %.3f s: %.1f tokens/s (%.1f tokens/s with the prompts)\n", s->tokens_generated,
            run_s, rate((double)s->tokens_generated, run_s), rate((double)(s->tokens_generated + prompt_tokens), run_s));
}

// ---------------------------------------------------------------------------------------
// Prompts

static bool file_exists(const char *dir, const char *name) {
    char path[4096];
    struct stat sb;
    return (size_t)snprintf(path, sizeof path, "%s/%s", dir, name) < sizeof path && stat(path, &sb) == 0;
}

// The tokenizer for text prompts (required) or for decoding ids-only runs (optional: a
// directory without tokenizer.json prints ids only; one that fails to load is a warning).
static MxStatus load_tokenizer(const char *dir, bool required, Tokenizer **tok, bool *broken) {
    *tok = NULL;
    *broken = false;
    ModelConfig cfg;
    MxStatus st = model_config_load(dir, &cfg);
    if (st != MX_OK) return required ? st : MX_OK; // the engine reports it
    if (!required && !file_exists(dir, "tokenizer.json")) return MX_OK;
    st = tokenizer_load(dir, cfg.vocab_size, tok);
    if (st != MX_OK && !required) {
        fprintf(stderr, "myrmex generate: warning: no text output: %s\n", mx_last_error());
        *broken = true;
        return MX_OK;
    }
    return st;
}

typedef struct ChatSpec {
    bool on;            // --chat
    const char *system; // --system, or NULL
    int family;         // --chat-template, or -1 to detect
} ChatSpec;

// --chat: the model's chat family, named or detected from its template and tokens.
static MxStatus chat_family(const char *dir, const ChatSpec *c, const Tokenizer *tok, ChatFamily *family) {
    ChatFamily f = (ChatFamily)c->family;
    if (c->family < 0) {
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
    *family = f;
    return chat_check_tokenizer(f, tok);
}

// Text to ids: plain (bos added as the tokenizer says), or as one user message (after an
// optional system message) through the chat template with the generation prompt; BOS is
// then in the rendered text, so it is encoded without adding special tokens.
static MxStatus encode(const Tokenizer *tok, const ChatSpec *c, ChatFamily family, const char *text, int32_t **ids,
                       int *n) {
    if (!c->on) return tokenizer_encode(tok, text, strlen(text), true, ids, n);
    ChatMessage msgs[2];
    int n_msgs = 0;
    if (c->system) msgs[n_msgs++] = (ChatMessage){"system", c->system};
    msgs[n_msgs++] = (ChatMessage){"user", text};
    char *rendered = NULL;
    MxStatus st = chat_render(family, msgs, n_msgs, true, &rendered);
    if (st == MX_OK) st = tokenizer_encode(tok, rendered, strlen(rendered), false, ids, n);
    mx_free(rendered);
    return st;
}

// The last failure again, its detail prefixed with "FILE:LINE: " when the prompt came from
// a file.
static MxStatus at_line(MxStatus st, const char *file, int line) {
    if (!file) return st;
    const char *detail = mx_last_error(), *text = mx_status_text(st);
    size_t n = strlen(text);
    if (strncmp(detail, text, n) == 0 && strncmp(detail + n, ": ", 2) == 0) detail += n + 2;
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", detail);
    return mx_fail(st, "%s:%d: %s", file, line, copy);
}

// Encodes every text prompt.
static MxStatus encode_jobs(const char *dir, const char *file, PromptJob *jobs, int n, const Tokenizer *tok,
                            const ChatSpec *c, ChatFamily *family) {
    MxStatus st = c->on ? chat_family(dir, c, tok, family) : MX_OK;
    for (int i = 0; i < n && !st; i++) {
        if (!jobs[i].text) continue;
        st = encode(tok, c, *family, jobs[i].text, &jobs[i].ids, &jobs[i].n_ids);
        if (!st && jobs[i].n_ids == 0) st = mx_fail(MX_ERR_ARG, "the prompt encodes to no tokens");
        if (st) st = at_line(st, file, jobs[i].line);
    }
    return st;
}

// Without --kv-blocks or --kv-fraction: a pool just large enough for the prompts, as many at
// once as --max-seqs lets run (generate is a quick check, not a server). A request longer
// than the model's context counts as the context: the engine refuses it anyway.
static int pool_for(const char *dir, const PromptJob *jobs, int n, int block_size, int max_seqs) {
    ModelConfig cfg;
    long context = model_config_load(dir, &cfg) == MX_OK ? cfg.max_positions : 1 << 20;
    long total = 0, largest = 0;
    for (int i = 0; i < n; i++) {
        long tokens = (long)jobs[i].n_ids + jobs[i].p.max_tokens - 1;
        long b = ((tokens < context ? tokens : context) + block_size - 1) / block_size;
        total += b;
        if (b > largest) largest = b;
    }
    if (total > largest * max_seqs) total = largest * max_seqs;
    return total > 1 << 24 ? 1 << 24 : (int)total;
}

// ---------------------------------------------------------------------------------------

typedef struct Flags {
    const char *model_dir, *chat_template, *prompts, *device, *gemm;
    const char *prompt_text;
    IntList prompt_ids;
    int max_tokens, top_k, top_logprobs, json, ignore_eos, chat;
    float temperature, top_p;
    int64_t seed;
    ChatSpec chat_spec;
    EngineArgs engine;
} Flags;

// Parses and checks the command line: ARGS_OK, ARGS_HELP or ARGS_ERROR (printed).
static int parse_flags(int argc, char **argv, Flags *f, MxRequestParams *defaults, MxEngineOptions *eo) {
    *f = (Flags){.device = "auto", .max_tokens = 32, .top_p = 1.0f, .chat_spec = {.family = -1}};
    engine_args_init(&f->engine);
    ArgSpec specs[32] = {
        {"--model", ARG_STRING, &f->model_dir, "DIR", "Hugging Face model directory (required)"},
        {"--prompt", ARG_STRING, &f->prompt_text, "TEXT", "prompt text, encoded with DIR's tokenizer (bos added as it says)"},
        {"--prompt-ids", ARG_INT_LIST, &f->prompt_ids, "IDS", "prompt token ids, comma-separated (instead of --prompt)"},
        {"--prompts", ARG_STRING, &f->prompts, "FILE",
         "JSONL, one {\"prompt\": TEXT} or {\"prompt_ids\": [...]} per line, optionally with max_tokens and sampling "
         "fields: all run at once"},
        {"--chat", ARG_FLAG, &f->chat, NULL, "send each text prompt as a user message through the model's chat template"},
        {"--system", ARG_STRING, &f->chat_spec.system, "TEXT", "--chat: a system message before it"},
        {"--chat-template", ARG_STRING, &f->chat_template, "NAME",
         "--chat: llama-2, llama-3, mistral or chatml (default: detected from the model)"},
        {"--max-tokens", ARG_INT, &f->max_tokens, "N", "tokens to generate (default 32)"},
        {"--temperature", ARG_FLOAT, &f->temperature, "T", "0 = greedy (default 0)"},
        {"--top-k", ARG_INT, &f->top_k, "K", "sample among the K most likely (default 0 = all)"},
        {"--top-p", ARG_FLOAT, &f->top_p, "P", "nucleus sampling mass in (0, 1] (default 1)"},
        {"--seed", ARG_INT64, &f->seed, "S", "sampling seed (default 0)"},
        {"--top-logprobs", ARG_INT, &f->top_logprobs, "K", "report the K most likely tokens per step"},
        {"--ignore-eos", ARG_FLAG, &f->ignore_eos, NULL, "do not stop at eos ids (config.json's and the tokenizer's)"},
        {"--device", ARG_STRING, &f->device, "DEV", "auto, cpu, cuda or cuda:N (default auto: cuda when a GPU is present)"},
        {"--gemm", ARG_STRING, &f->gemm, "IMPL", "CUDA GEMM kernels: auto, cublas, skinny, mma or wgmma (default auto)"},
        {"--json", ARG_FLAG, &f->json, NULL, "print one JSON object per prompt"},
    };
    int n_specs = 17;
    n_specs += engine_args_specs(&f->engine, specs + n_specs); // the engine's flags, last
    int rc = args_parse("generate",
                        "myrmex generate --model DIR (--prompt TEXT [--chat] | --prompt-ids 1,2,3 | --prompts FILE) [options]",
                        specs, n_specs, argc, argv, NULL, 0, 0);
    if (rc != ARGS_OK) return rc;
    ChatSpec *c = &f->chat_spec;
    c->on = f->chat;
    if (f->chat_template) c->family = chat_family_from_name(f->chat_template);
    bool one = f->prompt_text || f->prompt_ids.n;
    const char *usage = !f->model_dir                        ? "--model is required (see --help)"
                        : f->prompt_text && f->prompt_ids.n  ? "give --prompt or --prompt-ids, not both"
                        : one && f->prompts                  ? "give --prompts or a single prompt, not both"
                        : !one && !f->prompts                ? "--prompt or --prompt-ids is required (or --prompts FILE; see --help)"
                        : f->chat && f->prompt_ids.n         ? "--chat needs --prompt or --prompts"
                        : c->system && !f->chat              ? "--system needs --chat"
                        : f->chat_template && !f->chat       ? "--chat-template needs --chat"
                        : f->max_tokens < 1                  ? "--max-tokens must be >= 1"
                        : f->top_logprobs < 0                ? "--top-logprobs must be >= 0"
                        : f->top_logprobs > MX_MAX_TOP_LOGPROBS ? "--top-logprobs must be <= 64"
                                                             : engine_args_apply(&f->engine, eo);
    *defaults = mx_request_params_default();
    defaults->max_tokens = f->max_tokens;
    defaults->temperature = f->temperature;
    defaults->top_k = f->top_k;
    defaults->top_p = f->top_p;
    defaults->seed = (uint64_t)f->seed;
    defaults->top_logprobs = f->top_logprobs;
    defaults->ignore_eos = f->ignore_eos;
    SamplingParams sp = {.temperature = f->temperature, .top_k = f->top_k, .top_p = f->top_p};
    if (!usage && sampling_check(&sp) != MX_OK) usage = mx_last_error();
    if (usage) return args_usage_error("generate", "%s", usage);
    if (f->chat_template && c->family < 0)
        return args_usage_error("generate", "unknown --chat-template '%s' (one of %s)", f->chat_template, chat_family_list());
    eo->device = f->device;
    eo->gemm = f->gemm;
    return ARGS_OK;
}

// The prompts to run: the file's, or the command line's one.
static MxStatus make_jobs(const Flags *f, const MxRequestParams *defaults, PromptJob **jobs, int *n) {
    if (f->prompts) return prompt_file_read(f->prompts, defaults, jobs, n);
    PromptJob *j = mx_calloc(1, sizeof *j);
    if (!j) return mx_fail(MX_ERR_NOMEM, "prompt");
    j->p = *defaults;
    if (f->prompt_text && !(j->text = mx_strdup(f->prompt_text))) {
        prompt_jobs_free(j, 1);
        return mx_fail(MX_ERR_NOMEM, "prompt");
    }
    if (f->prompt_ids.n) {
        j->ids = mx_malloc((size_t)f->prompt_ids.n * sizeof *j->ids);
        if (!j->ids) {
            prompt_jobs_free(j, 1);
            return mx_fail(MX_ERR_NOMEM, "prompt");
        }
        for (int i = 0; i < f->prompt_ids.n; i++) j->ids[i] = (int32_t)f->prompt_ids.items[i];
        j->n_ids = f->prompt_ids.n;
    }
    *jobs = j;
    *n = 1;
    return MX_OK;
}

// Adds every job, steps until all are done, prints the results in input order.
static MxStatus run(MxEngine *e, const Flags *f, PromptJob *jobs, int n, double load_s, const char *chat) {
    for (int i = 0; i < n; i++) {
        MxStatus st = mx_engine_add(e, jobs[i].ids, jobs[i].n_ids, &jobs[i].p, &jobs[i].id);
        if (st) return at_line(st, f->prompts, jobs[i].line);
    }
    double t0 = now_seconds();
    while (mx_engine_has_work(e)) {
        MxStatus st = mx_engine_step(e);
        if (st) return st;
    }
    double run_s = now_seconds() - t0;
    long prompt_tokens = 0;
    for (int i = 0; i < n; i++) {
        MxOutput o;
        MxStatus st = mx_engine_output(e, jobs[i].id, &o);
        if (st) return st;
        prompt_tokens += o.n_prompt;
        if (f->json) {
            if (print_json(&o, load_s, chat)) return mx_fail(MX_ERR_NOMEM, "JSON output");
        } else {
            if (f->prompts) printf("%s[%d] line %d, %d prompt tokens\n", i ? "\n" : "", i, jobs[i].line, o.n_prompt);
            print_text(&o, load_s, !f->prompts);
        }
    }
    if (f->prompts) {
        MxEngineStats s;
        mx_engine_stats(e, &s);
        if (!f->json) printf("\n");
        print_summary(f->json ? stderr : stdout, &s, n, prompt_tokens, run_s);
    }
    return MX_OK;
}

int cmd_generate(int argc, char **argv) {
    Flags f;
    MxRequestParams defaults;
    MxEngineOptions eo = mx_engine_options_default();
    int rc = parse_flags(argc, argv, &f, &defaults, &eo);
    if (rc != ARGS_OK) {
        int_list_free(&f.prompt_ids);
        return rc == ARGS_HELP ? 0 : 2;
    }

    // The prompts, the tokenizer, and every prompt's ids.
    PromptJob *jobs = NULL;
    int n_jobs = 0;
    MxStatus st = make_jobs(&f, &defaults, &jobs, &n_jobs);
    int_list_free(&f.prompt_ids);
    bool any_text = false, broken = false;
    for (int i = 0; i < n_jobs; i++) any_text |= jobs[i].text != NULL;
    Tokenizer *tok = NULL;
    ChatFamily family = CHAT_UNKNOWN;
    if (st == MX_OK) st = load_tokenizer(f.model_dir, any_text, &tok, &broken);
    if (st == MX_OK && any_text) st = encode_jobs(f.model_dir, f.prompts, jobs, n_jobs, tok, &f.chat_spec, &family);
    if (broken) eo.tokenizer = false;
    if (st == MX_OK && !engine_args_pool_given(&f.engine)) eo.kv_blocks = pool_for(f.model_dir, jobs, n_jobs, eo.block_size, eo.max_seqs);

    double t0 = now_seconds(), load_s = 0;
    MxEngine *e = NULL;
    if (st == MX_OK) st = mx_engine_create(f.model_dir, &eo, &e);
    load_s = now_seconds() - t0;
    if (st == MX_OK && !f.json) {
        MxEngineInfo info;
        mx_engine_info(e, &info);
        fprintf(stderr, "myrmex: %s; %s\n", info.device, info.memory_plan);
    }
    if (st == MX_OK) st = run(e, &f, jobs, n_jobs, load_s, f.chat ? chat_family_name(family) : NULL);
    rc = 0;
    if (st == MX_FOLLOWER_DONE) st = MX_OK; // mpirun: this process served process 0's steps
    if (st != MX_OK) {
        fprintf(stderr, "myrmex generate: error: %s\n", mx_last_error());
        rc = 1;
    } else if (fflush(stdout) != 0 || ferror(stdout)) { // a full disk, a closed pipe: not a success
        fprintf(stderr, "myrmex generate: error: cannot write standard output\n");
        rc = 1;
    }
    mx_engine_destroy(e);
    prompt_jobs_free(jobs, n_jobs);
    if (tok) tokenizer_free(tok);
    return rc;
}
