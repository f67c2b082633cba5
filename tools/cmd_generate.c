// myrmex generate: load a model, run one prompt, print the generated ids and timings.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "args.h"
#include "commands.h"
#include "generate.h"
#include "json_util.h"
#include "model.h"

static double seconds_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

static double rate(double n, double s) { return s > 0 ? n / s : 0; }

static const char *finish_name(FinishReason f) { return f == FINISH_EOS ? "stop" : "length"; }

static int print_json(const GenRequest *r, const GenStats *st, double load_s) {
    json_init();
    cJSON *o = cJSON_CreateObject();
    cJSON *ids = cJSON_AddArrayToObject(o, "output_ids");
    for (int i = 0; i < r->n_output; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(r->output[i]));
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

static void print_text(const GenRequest *r, const GenStats *st, double load_s) {
    printf("output_ids: ");
    for (int i = 0; i < r->n_output; i++) printf("%s%d", i ? "," : "", r->output[i]);
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

int cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL;
    IntList prompt = {0};
    int max_tokens = 32, top_k = 0, top_logprobs = 0, json = 0, ignore_eos = 0;
    float temperature = 0.0f, top_p = 1.0f;
    int64_t seed = 0;
    ModelOptions opt = model_options_default();
    ArgSpec specs[] = {
        {"--model", ARG_STRING, &model_dir, "DIR", "Hugging Face model directory (required)"},
        {"--prompt-ids", ARG_INT_LIST, &prompt, "IDS", "prompt token ids, comma-separated (required)"},
        {"--max-tokens", ARG_INT, &max_tokens, "N", "tokens to generate (default 32)"},
        {"--temperature", ARG_FLOAT, &temperature, "T", "0 = greedy (default 0)"},
        {"--top-k", ARG_INT, &top_k, "K", "sample among the K most likely (default 0 = all)"},
        {"--top-p", ARG_FLOAT, &top_p, "P", "nucleus sampling mass in (0, 1] (default 1)"},
        {"--seed", ARG_INT64, &seed, "S", "sampling seed (default 0)"},
        {"--top-logprobs", ARG_INT, &top_logprobs, "K", "report the K most likely tokens per step"},
        {"--ignore-eos", ARG_FLAG, &ignore_eos, NULL, "do not stop at the model's eos ids"},
        {"--block-size", ARG_INT, &opt.block_size, "N", "tokens per KV block (default 16)"},
        {"--max-step-tokens", ARG_INT, &opt.max_step_tokens, "N", "tokens per forward; longer prompts are chunked (default 512)"},
        {"--json", ARG_FLAG, &json, NULL, "print one JSON object"},
    };
    int rc = args_parse("generate", "myrmex generate --model DIR --prompt-ids 1,2,3 [options]", specs,
                        (int)(sizeof specs / sizeof *specs), argc, argv, NULL, 0, 0);
    if (rc != ARGS_OK) {
        int_list_free(&prompt);
        return rc == ARGS_HELP ? 0 : 2;
    }
    const char *missing = !model_dir ? "--model" : prompt.n == 0 ? "--prompt-ids" : NULL;
    if (missing) {
        fprintf(stderr, "myrmex generate: %s is required (see --help)\n", missing);
        int_list_free(&prompt);
        return 2;
    }

    GenRequest req = {.prompt = prompt.items, .n_prompt = prompt.n, .max_tokens = max_tokens,
                      .sampling = {.temperature = temperature, .top_k = top_k, .top_p = top_p, .seed = (uint64_t)seed},
                      .top_logprobs = top_logprobs, .ignore_eos = ignore_eos};
    if (max_tokens < 1 || top_logprobs < 0 || sampling_check(&req.sampling) != MX_OK) {
        fprintf(stderr, "myrmex generate: %s\n",
                max_tokens < 1 ? "--max-tokens must be >= 1" : top_logprobs < 0 ? "--top-logprobs must be >= 0" : mx_last_error());
        int_list_free(&prompt);
        return 2;
    }
    if (opt.block_size > 0) opt.kv_blocks = generate_blocks_needed(&req, 1, opt.block_size);

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    Model model;
    GenStats stats;
    MxStatus st = model_load(model_dir, &ops_ref, &opt, &model);
    double load_s = seconds_since(&t0);
    if (st == MX_OK) {
        st = generate_run(&model, &req, 1, &stats);
        model_free(&model);
    }
    if (st == MX_OK) {
        rc = 0;
        if (json) rc = print_json(&req, &stats, load_s);
        else print_text(&req, &stats, load_s);
    } else {
        fprintf(stderr, "myrmex generate: error: %s\n", mx_last_error());
        rc = 1;
    }
    gen_request_clear(&req);
    int_list_free(&prompt);
    return rc;
}
