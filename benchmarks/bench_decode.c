// Decode step of a dummy-weight model on the CUDA backend against the memory-bandwidth
// floor: the time one token takes at batch B with a context of C tokens, vs the time to
// read every weight once plus the batch's KV cache at the device-to-device copy bandwidth
// measured in the same run.
//
//   bench_decode [--preset llama-2-13b] [--batch 1,8,64] [--context 512] [--steps 64]
//                [--gemm auto|cublas|...] [--no-graphs] [--json FILE]
//
// Exits 77 when there is no CUDA device.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu_bench.h"
#include "backend.h"
#include "cuda_device.h"
#include "model.h"
#include "model_presets.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}


static int parse_list(const char *s, int *out, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 1024) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

typedef struct Result {
    int batch, context, steps;
    double ms_per_step, floor_ms, tokens_per_s;
} Result;

// Prefills `batch` sequences of `context` tokens, then times `steps` decode steps.
static int run(Model *m, int batch, int context, int steps, Result *r, double bandwidth) {
    Batch b;
    if (model_batch_init(m, &b) != MX_OK) return -1;
    BlockTable *tables = calloc((size_t)batch, sizeof *tables);
    int32_t *tokens = malloc((size_t)(context + steps) * sizeof *tokens);
    float *logits = malloc((size_t)batch * (size_t)m->cfg.vocab_size * sizeof(float));
    int rc = tables && tokens && logits ? 0 : -1;
    for (int i = 0; i < context + steps; i++) tokens[i] = (int32_t)((i * 7919) % m->cfg.vocab_size);
    for (int s = 0; s < batch && !rc; s++) {
        rc = block_table_reserve(&tables[s], &m->pool, m->opt.block_size, context + steps) != MX_OK;
        for (int pos = 0; pos < context && !rc; pos += m->opt.max_step_tokens) { // chunked prefill
            int n = context - pos < m->opt.max_step_tokens ? context - pos : m->opt.max_step_tokens;
            batch_clear(&b);
            rc = batch_add(&b, tokens + pos, n, pos, &tables[s], m->opt.block_size, BATCH_LOGITS_LAST) != MX_OK ||
                 model_forward(m, &b, logits) != MX_OK;
        }
    }
    double t0 = 0;
    for (int step = -3; step < steps && !rc; step++) { // 3 warm-up steps (graph capture)
        if (step == 0) t0 = now();
        int pos = context + (step < 0 ? 0 : step);
        batch_clear(&b);
        for (int s = 0; s < batch && !rc; s++)
            rc = batch_add(&b, tokens + pos, 1, pos, &tables[s], m->opt.block_size, BATCH_LOGITS_LAST) != MX_OK;
        if (!rc) rc = model_forward(m, &b, logits) != MX_OK; // ends with a sync: the step is complete
    }
    if (!rc) {
        double seconds = now() - t0;
        uint64_t kv_per_token = 0;
        model_config_kv_bytes_per_token(&m->cfg, 2, &kv_per_token);
        // Every weight is read once per step except the embedding table (B rows of it).
        double bytes = (double)m->plan.weight_bytes + (double)batch * (double)(context + steps / 2) * (double)kv_per_token;
        if (!m->cfg.tie_word_embeddings) bytes -= (double)m->cfg.vocab_size * m->cfg.hidden_size * 2;
        *r = (Result){batch, context, steps, 1e3 * seconds / steps, 1e3 * bytes / bandwidth, batch * steps / seconds};
    }
    if (rc) fprintf(stderr, "bench_decode: batch %d context %d failed: %s\n", batch, context, mx_last_error());
    for (int s = 0; s < batch; s++) block_table_release(&tables[s], &m->pool);
    batch_destroy(&b);
    free(tables);
    free(tokens);
    free(logits);
    return rc;
}

int main(int argc, char **argv) {
    const char *preset = "llama-2-13b", *gemm = NULL, *json = NULL;
    int batches[16] = {1}, n_batches = 1, context = 512, steps = 64, graphs = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-graphs")) graphs = 0;
        else if (!v) return fprintf(stderr, "bench_decode: %s needs a value\n", a), 2;
        else if (!strcmp(a, "--preset")) preset = v, i++;
        else if (!strcmp(a, "--gemm")) gemm = v, i++;
        else if (!strcmp(a, "--json")) json = v, i++;
        else if (!strcmp(a, "--batch") && (n_batches = parse_list(v, batches, 16)) > 0) i++;
        else if (!strcmp(a, "--context") && (context = atoi(v)) > 0) i++;
        else if (!strcmp(a, "--steps") && (steps = atoi(v)) > 0) i++;
        else return fprintf(stderr, "bench_decode: bad argument %s\n", a), 2;
    }
    if (cuda_device_count() == 0) {
        fprintf(stderr, "bench_decode: skipped: no CUDA device\n");
        return 77;
    }
    ModelConfig cfg;
    Backend backend;
    if (model_preset_config(preset, &cfg) != MX_OK || backend_open("cuda", &backend) != MX_OK) {
        fprintf(stderr, "bench_decode: %s\n", mx_last_error());
        return 1;
    }
    double bandwidth = 1e9 * gpu_copy_bandwidth_gbs(0); // bytes/s
    int max_batch = 1;
    for (int i = 0; i < n_batches; i++) max_batch = batches[i] > max_batch ? batches[i] : max_batch;
    ModelOptions opt = model_options_default();
    opt.gemm = gemm;
    opt.no_graphs = !graphs;
    opt.max_step_seqs = max_batch;
    opt.max_logit_rows = max_batch;
    opt.kv_blocks = max_batch * blocks_for_tokens(context + steps, opt.block_size) + 1;
    Model m;
    if (model_load_dummy(&cfg, &backend, &opt, &m) != MX_OK) {
        fprintf(stderr, "bench_decode: %s\n", mx_last_error());
        return 1;
    }
    char plan[256];
    model_plan_describe(&m.plan, plan, sizeof plan);
    printf("%s dummy on %s\n%s\ncopy bandwidth %.0f GB/s, gemm %s, graphs %s\n", preset, backend.desc, plan, bandwidth / 1e9,
           gemm ? gemm : "auto", graphs ? "on" : "off");
    printf("%6s %8s %12s %12s %10s %10s\n", "batch", "context", "ms/step", "floor ms", "x floor", "tok/s");
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (jf) fprintf(jf, "{\"preset\": \"%s\", \"device\": \"%s\", \"copy_bandwidth_gbs\": %.1f, \"results\": [", preset,
                    backend.desc, bandwidth / 1e9);
    int failed = 0;
    for (int i = 0; i < n_batches; i++) {
        Result r = {0};
        if (run(&m, batches[i], context, steps, &r, bandwidth)) {
            failed = 1;
            continue;
        }
        printf("%6d %8d %12.3f %12.3f %10.2f %10.1f\n", r.batch, r.context, r.ms_per_step, r.floor_ms,
               r.ms_per_step / r.floor_ms, r.tokens_per_s);
        if (jf) fprintf(jf, "%s{\"batch\": %d, \"context\": %d, \"ms_per_step\": %.4f, \"floor_ms\": %.4f, \"tokens_per_s\": %.1f}",
                        i ? ", " : "", r.batch, r.context, r.ms_per_step, r.floor_ms, r.tokens_per_s);
    }
    if (jf) {
        fprintf(jf, "]}\n");
        fclose(jf);
    }
    model_free(&m);
    return failed;
}
