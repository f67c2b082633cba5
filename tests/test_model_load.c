// Loading a model directory: each tensor-level check of RELIABILITY.md gets a model built
// with exactly one defect and asserts its named error; allocation failures at every point
// of model_load fail cleanly (no leak under ASan); bad generate requests are refused; the
// load-progress callback runs once per layer for a directory and for dummy weights.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "generate.h"
#include "model.h"
#include "model_presets.h"
#include "safetensors_write.h"
#include "test_util.h"

// The test model: hidden 16, 2 layers, 4 heads (2 KV), intermediate 24, vocab 40.
enum { D = 16, LAYERS = 2, HEADS = 4, KV = 2, HD = 4, INTER = 24, VOCAB = 40 };

typedef struct Defect {
    const char *drop;      // a tensor left out
    const char *reshape;   // a tensor written with one extra row
    int config_vocab;      // vocab_size written in config.json (0 = VOCAB)
    int config_layers;     // num_hidden_layers written (0 = LAYERS)
    int extra_layer;       // weights for one more layer than LAYERS
    const char *as_i32;    // a tensor moved to a second shard, stored as I32
} Defect;

static MxStatus fill_small(void *ctx, void *dst, uint64_t first, uint64_t count) {
    uint64_t *state = ctx;
    float *out = dst;
    (void)first;
    for (uint64_t i = 0; i < count; i++) {
        *state = *state * 6364136223846793005ull + 1442695040888963407ull;
        out[i] = (float)((int)(*state >> 40) % 2001 - 1000) * 1e-4f;
    }
    return MX_OK;
}

static void add(StWriter *w, const Defect *d, const char *name, int64_t rows, int64_t cols, uint64_t *rng) {
    if ((d->drop && strcmp(name, d->drop) == 0) || (d->as_i32 && strcmp(name, d->as_i32) == 0)) return;
    if (d->reshape && strcmp(name, d->reshape) == 0) rows++;
    int64_t shape[2] = {rows, cols};
    CHECK_STATUS(st_writer_add_fill(w, name, DT_F32, cols ? 2 : 1, shape, fill_small, rng), MX_OK);
}

// Writes a config.json and weights with the given defect into a fresh directory.
static const char *make_model(const Defect *d) {
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s", test_tmpdir("model-load"));
    char config[1024];
    int n = snprintf(config, sizeof config,
                     "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": %d, \"intermediate_size\": %d,"
                     " \"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d,"
                     " \"vocab_size\": %d, \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-5,"
                     " \"bos_token_id\": 1, \"eos_token_id\": 2, \"tie_word_embeddings\": false}",
                     D, INTER, d->config_layers ? d->config_layers : LAYERS, HEADS, KV,
                     d->config_vocab ? d->config_vocab : VOCAB);
    CHECK(test_write_file(dir, "config.json", config, (size_t)n) == 0);

    StWriter w;
    st_writer_init(&w);
    uint64_t rng = 99;
    char name[128];
    add(&w, d, "model.embed_tokens.weight", VOCAB, D, &rng);
    for (int l = 0; l < LAYERS + d->extra_layer; l++) {
        struct { const char *suffix; int64_t rows, cols; } t[] = {
            {"input_layernorm.weight", D, 0},         {"self_attn.q_proj.weight", HEADS * HD, D},
            {"self_attn.k_proj.weight", KV * HD, D},  {"self_attn.v_proj.weight", KV * HD, D},
            {"self_attn.o_proj.weight", D, HEADS * HD}, {"post_attention_layernorm.weight", D, 0},
            {"mlp.gate_proj.weight", INTER, D},       {"mlp.up_proj.weight", INTER, D},
            {"mlp.down_proj.weight", D, INTER},
        };
        for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", l, t[i].suffix);
            add(&w, d, name, t[i].rows, t[i].cols, &rng);
        }
    }
    add(&w, d, "model.norm.weight", D, 0, &rng);
    add(&w, d, "lm_head.weight", VOCAB, D, &rng);

    if (!d->as_i32) {
        CHECK_STATUS(st_writer_write(&w, test_path(dir, "model.safetensors")), MX_OK);
    } else {
        // Shard 1 from the writer; shard 2 holds the one tensor as I32 (written by hand,
        // since the writer only knows weight dtypes); the index maps every tensor.
        CHECK_STATUS(st_writer_write(&w, test_path(dir, "a.safetensors")), MX_OK);
        char header[256], index[16384];
        int h = snprintf(header, sizeof header, "{\"%s\":{\"dtype\":\"I32\",\"shape\":[%d],\"data_offsets\":[0,%d]}}",
                         d->as_i32, D, D * 4);
        uint8_t file[8 + 256 + D * 4] = {0};
        for (int k = 0; k < 8; k++) file[k] = (uint8_t)((uint64_t)h >> (8 * k));
        memcpy(file + 8, header, (size_t)h);
        CHECK(test_write_file(dir, "b.safetensors", file, 8 + (size_t)h + D * 4) == 0);
        int len = snprintf(index, sizeof index, "{\"weight_map\": {\"%s\": \"b.safetensors\"", d->as_i32);
        for (int i = 0; i < w.n_tensors; i++)
            len += snprintf(index + len, sizeof index - (size_t)len, ", \"%s\": \"a.safetensors\"", w.tensors[i].name);
        len += snprintf(index + len, sizeof index - (size_t)len, "}}");
        CHECK(test_write_file(dir, "model.safetensors.index.json", index, (size_t)len) == 0);
    }
    st_writer_free(&w);
    return dir;
}

static MxStatus load(const char *dir) {
    ModelOptions opt = model_options_default();
    opt.kv_blocks = 8;
    Model m;
    MxStatus st = model_load(dir, test_cpu_backend(), &opt, &m);
    if (st == MX_OK) model_free(&m);
    return st;
}

static void test_valid(void) {
    Defect none = {0};
    CHECK_STATUS(load(make_model(&none)), MX_OK);
}

static void test_tensor_checks(void) {
    CHECK_STATUS(load(make_model(&(Defect){.drop = "model.layers.1.mlp.up_proj.weight"})), MX_ERR_TENSOR_MISSING);
    CHECK_STATUS(load(make_model(&(Defect){.drop = "lm_head.weight"})), MX_ERR_TENSOR_MISSING);
    CHECK_STATUS(load(make_model(&(Defect){.drop = "model.norm.weight"})), MX_ERR_TENSOR_MISSING);
    CHECK_STATUS(load(make_model(&(Defect){.reshape = "model.layers.0.self_attn.k_proj.weight"})), MX_ERR_TENSOR_SHAPE);
    CHECK_STATUS(load(make_model(&(Defect){.reshape = "model.layers.1.post_attention_layernorm.weight"})),
                 MX_ERR_TENSOR_SHAPE);
    CHECK_STATUS(load(make_model(&(Defect){.reshape = "lm_head.weight"})), MX_ERR_TENSOR_SHAPE);
    CHECK_STATUS(load(make_model(&(Defect){.as_i32 = "model.layers.0.input_layernorm.weight"})), MX_ERR_TENSOR_DTYPE);
    CHECK_STATUS(load(make_model(&(Defect){.config_vocab = VOCAB + 1})), MX_ERR_VOCAB_MISMATCH);
    CHECK_STATUS(load(make_model(&(Defect){.reshape = "model.embed_tokens.weight"})), MX_ERR_VOCAB_MISMATCH);
    CHECK_STATUS(load(make_model(&(Defect){.config_layers = LAYERS + 1})), MX_ERR_LAYER_MISMATCH);
    CHECK_STATUS(load(make_model(&(Defect){.extra_layer = 1})), MX_ERR_LAYER_MISMATCH);
}

static void test_missing_files(void) {
    const char *dir = make_model(&(Defect){0});
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(remove(path) == 0);
    CHECK_STATUS(load(dir), MX_ERR_NO_WEIGHTS);
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(remove(path) == 0);
    CHECK_STATUS(load(dir), MX_ERR_CONFIG_JSON);
}

// Shifts a safetensors file's data by one byte (one more space in its header), so every
// tensor is misaligned in memory; loading must still work and give the same logits.
static void misalign(const char *path) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    uint8_t *buf = malloc((size_t)size + 1);
    CHECK(fread(buf, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    uint64_t n = 0;
    for (int k = 0; k < 8; k++) n |= (uint64_t)buf[k] << (8 * k);
    memmove(buf + 8 + n + 1, buf + 8 + n, (size_t)size - 8 - n);
    buf[8 + n] = ' ';
    n++;
    for (int k = 0; k < 8; k++) buf[k] = (uint8_t)(n >> (8 * k));
    f = fopen(path, "wb");
    CHECK(fwrite(buf, 1, (size_t)size + 1, f) == (size_t)size + 1);
    fclose(f);
    free(buf);
}

static void last_logits(const char *dir, float *logits) {
    ModelOptions opt = model_options_default();
    opt.kv_blocks = 4;
    Model m;
    CHECK_STATUS(model_load(dir, test_cpu_backend(), &opt, &m), MX_OK);
    Batch b;
    BlockTable t = {0};
    int32_t prompt[5] = {5, 9, 1, 30, 7};
    CHECK_STATUS(model_batch_init(&m, &b), MX_OK);
    CHECK_STATUS(block_table_reserve(&t, &m.pool, m.opt.block_size, 5), MX_OK);
    CHECK_STATUS(batch_add(&b, prompt, 5, 0, &t, m.opt.block_size, BATCH_LOGITS_LAST), MX_OK);
    CHECK_STATUS(model_forward(&m, &b, logits), MX_OK);
    block_table_release(&t, &m.pool);
    batch_destroy(&b);
    model_free(&m);
}

static void test_unaligned_tensors(void) {
    float a[VOCAB], b[VOCAB];
    const char *dir = make_model(&(Defect){0});
    last_logits(dir, a);
    misalign(test_path(dir, "model.safetensors"));
    last_logits(dir, b);
    CHECK(memcmp(a, b, sizeof a) == 0);
}

// Presets parse like real configs; a dummy model runs and is the same every time.
static void test_dummy_model(void) {
    ModelConfig cfg;
    static const char *names[] = {"llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "llama-3-70b", "small-100m"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) CHECK_STATUS(model_preset_config(names[i], &cfg), MX_OK);
    CHECK(cfg.hidden_size == 768 && cfg.n_layers == 12 && cfg.tie_word_embeddings);
    CHECK_STATUS(model_preset_config("llama-2-13b", &cfg), MX_OK);
    CHECK(cfg.hidden_size == 5120 && cfg.n_layers == 40 && cfg.n_kv_heads == 40 && cfg.head_dim == 128);
    CHECK_STATUS(model_preset_config("llama-3-70b", &cfg), MX_OK);
    CHECK(cfg.n_heads == 64 && cfg.n_kv_heads == 8 && cfg.vocab_size == 128256);
    CHECK_STATUS(model_preset_config("gpt-5", &cfg), MX_ERR_ARG);

    CHECK_STATUS(model_preset_config("small-100m", &cfg), MX_OK);
    ModelOptions opt = model_options_default();
    opt.kv_blocks = 2;
    float *logits[2];
    for (int run = 0; run < 2; run++) {
        logits[run] = malloc((size_t)cfg.vocab_size * sizeof(float));
        Model m;
        CHECK_STATUS(model_load_dummy(&cfg, test_cpu_backend(), &opt, &m), MX_OK);
        CHECK(m.plan.weight_bytes == 2ull * (32000ull * 768 + 12ull * (768 * (768 + 2 * 256) + 768 * 768 + 2 * 768 + 3 * 2048 * 768) + 768));
        Batch b;
        BlockTable t = {0};
        int32_t prompt[3] = {1, 500, 31999};
        CHECK_STATUS(model_batch_init(&m, &b), MX_OK);
        CHECK_STATUS(block_table_reserve(&t, &m.pool, m.opt.block_size, 3), MX_OK);
        CHECK_STATUS(batch_add(&b, prompt, 3, 0, &t, m.opt.block_size, BATCH_LOGITS_LAST), MX_OK);
        CHECK_STATUS(model_forward(&m, &b, logits[run]), MX_OK);
        block_table_release(&t, &m.pool);
        batch_destroy(&b);
        model_free(&m);
    }
    bool finite = true, varied = false;
    for (int i = 0; i < cfg.vocab_size; i++) {
        finite &= isfinite(logits[0][i]) != 0;
        varied |= logits[0][i] != logits[0][0];
    }
    CHECK(finite && varied);
    CHECK(memcmp(logits[0], logits[1], (size_t)cfg.vocab_size * sizeof(float)) == 0);
    free(logits[0]);
    free(logits[1]);
}

// A batch broken in one field at a time is refused before any op runs (the CUDA kernels
// trust the structure; a follower process receives it over the network), and the model
// still runs the intact batch afterwards.
static void test_bad_batches(void) {
    ModelConfig cfg;
    CHECK_STATUS(model_preset_config("small-100m", &cfg), MX_OK);
    cfg.n_layers = 1;
    ModelOptions opt = model_options_default();
    opt.kv_blocks = 4;
    Model m;
    CHECK_STATUS(model_load_dummy(&cfg, test_cpu_backend(), &opt, &m), MX_OK);
    Batch b;
    BlockTable t = {0};
    int32_t prompt[5] = {1, 2, 3, 4, 5};
    CHECK_STATUS(model_batch_init(&m, &b), MX_OK);
    CHECK_STATUS(block_table_reserve(&t, &m.pool, m.opt.block_size, 5), MX_OK);
    CHECK_STATUS(batch_add(&b, prompt, 5, 0, &t, m.opt.block_size, BATCH_LOGITS_LAST), MX_OK);
    CHECK_STATUS(model_check_batch(&m, &b), MX_OK);
    // Two sequences whose first one claims tokens far past the batch: refused before any
    // position is read (a follower's stale buffers would match them).
    int32_t tokens2[2] = {1, 2}, positions2[2] = {0, 0}, q2[3] = {0, 4000, 2}, ctx2[2] = {1, 1}, ind2[3] = {0, 1, 2};
    int32_t blocks2[2] = {1, 2}, rows2[1] = {1};
    int64_t slots2[2] = {16, 32};
    Batch two = {.n_tokens = 2, .n_seqs = 2, .n_kv_indices = 2, .n_rows = 1, .tokens = tokens2,
                 .positions = positions2, .slot_mapping = slots2, .q_start = q2, .ctx_len = ctx2,
                 .kv_indptr = ind2, .kv_indices = blocks2, .logits_rows = rows2};
    CHECK_STATUS(model_check_batch(&m, &two), MX_ERR_ARG);
    q2[1] = 1;
    CHECK_STATUS(model_check_batch(&m, &two), MX_OK); // the same batch, well formed
    enum { Q_START, Q_END, INDPTR, CTX, POSITION, SLOT, ROW, CASES };
    for (int c = 0; c < CASES; c++) {
        Batch bad = b;
        int32_t q_start[2] = {b.q_start[0], b.q_start[1]}, indptr[2] = {b.kv_indptr[0], b.kv_indptr[1]};
        int32_t ctx = b.ctx_len[0], positions[5], row = b.logits_rows[0];
        int64_t slots[5];
        memcpy(positions, b.positions, sizeof positions);
        memcpy(slots, b.slot_mapping, sizeof slots);
        bad.q_start = q_start, bad.kv_indptr = indptr, bad.ctx_len = &ctx, bad.positions = positions;
        bad.slot_mapping = slots, bad.logits_rows = &row;
        if (c == Q_START) q_start[0] = 1;
        if (c == Q_END) q_start[1] = 4;
        if (c == INDPTR) indptr[1] = b.n_kv_indices + 1;
        if (c == CTX) ctx = 4; // fewer than its 5 new tokens
        if (c == POSITION) positions[2] = 7;
        if (c == SLOT) slots[4] = (int64_t)opt.kv_blocks * m.opt.block_size;
        if (c == ROW) row = 5;
        CHECK_STATUS(model_check_batch(&m, &bad), MX_ERR_ARG);
    }
    float *logits = malloc((size_t)cfg.vocab_size * sizeof(float));
    CHECK_STATUS(model_forward(&m, &b, logits), MX_OK);
    free(logits);
    block_table_release(&t, &m.pool);
    batch_destroy(&b);
    model_free(&m);
}

// The load-progress callback: once per layer, in order, for a directory and for dummy
// weights alike (bench draws its bar from it).
static int progress_calls, progress_last, progress_total;
static bool progress_in_order;

static void count_progress(int done, int total) {
    progress_in_order &= done == progress_last + 1 && (progress_total == 0 || total == progress_total);
    progress_calls++;
    progress_last = done;
    progress_total = total;
}

static void test_load_progress(void) {
    const char *dir = make_model(&(Defect){0});
    ModelConfig cfg;
    CHECK_STATUS(model_config_load(dir, &cfg), MX_OK);
    for (int dummy = 0; dummy < 2; dummy++) {
        ModelOptions opt = model_options_default();
        opt.kv_blocks = 4;
        opt.progress = count_progress;
        progress_calls = progress_last = progress_total = 0;
        progress_in_order = true;
        Model m;
        CHECK_STATUS(dummy ? model_load_dummy(&cfg, test_cpu_backend(), &opt, &m)
                           : model_load(dir, test_cpu_backend(), &opt, &m),
                     MX_OK);
        model_free(&m);
        CHECK(progress_calls == LAYERS && progress_last == LAYERS && progress_total == LAYERS && progress_in_order);
    }
}

static void test_bad_options(void) {
    const char *dir = make_model(&(Defect){0});
    ModelOptions opt = model_options_default();
    Model m;
    opt.kv_fraction = 0; // and kv_blocks 0: no way to size the pool
    CHECK_STATUS(model_load(dir, test_cpu_backend(), &opt, &m), MX_ERR_ARG);
    opt.kv_blocks = -1;
    CHECK_STATUS(model_load(dir, test_cpu_backend(), &opt, &m), MX_ERR_ARG);
    opt.kv_fraction = 1.5;
    opt.kv_blocks = 0;
    CHECK_STATUS(model_load(dir, test_cpu_backend(), &opt, &m), MX_ERR_ARG);
    opt.kv_fraction = 0.9;
    opt.gemm = "cublas"; // a CUDA-only option on the CPU backend
    CHECK_STATUS(model_load(dir, test_cpu_backend(), &opt, &m), MX_ERR_ARG);
    opt.gemm = NULL;
    opt.kv_blocks = 4;
    opt.block_size = 0;
    CHECK_STATUS(model_load(dir, test_cpu_backend(), &opt, &m), MX_ERR_ARG);
}

// Every allocation model_load makes is failed in turn; each failure must be clean.
static void test_alloc_failures(void) {
    const char *dir = make_model(&(Defect){0});
    int ok_at = -1;
    for (long k = 0; k < 10000 && ok_at < 0; k++) {
        mx_alloc_fail_after(k);
        MxStatus st = load(dir);
        mx_alloc_fail_after(-1);
        if (st == MX_OK) ok_at = (int)k;
        else CHECK(st == MX_ERR_NOMEM || st == MX_ERR_CONFIG_JSON || st == MX_ERR_INDEX_JSON || st == MX_ERR_IO);
    }
    CHECK(ok_at > 5);
    fprintf(stderr, "  model_load succeeds from allocation %d on; every earlier failure was clean\n", ok_at);
}

static void test_generate_errors(void) {
    const char *dir = make_model(&(Defect){0});
    ModelOptions opt = model_options_default();
    opt.kv_blocks = 3; // the null block + 2
    opt.block_size = 4;
    Model m;
    CHECK_STATUS(model_load(dir, test_cpu_backend(), &opt, &m), MX_OK);
    int32_t prompt[3] = {3, 4, 5}, bad[2] = {3, VOCAB};
    GenRequest r = {.prompt = prompt, .n_prompt = 3, .max_tokens = 2, .sampling = sampling_default()};
    GenStats s;
    CHECK_STATUS(generate_run(&m, &r, 1, &s), MX_OK);
    CHECK(r.n_output == 2 || r.finish == FINISH_EOS);
    gen_request_clear(&r);
    r.max_tokens = 6; // 9 tokens need 3 blocks of 4; the pool has 2
    CHECK_STATUS(generate_run(&m, &r, 1, &s), MX_ERR_KV_FULL);
    r.max_tokens = 62; // 3 + 62 > 64 positions
    CHECK_STATUS(generate_run(&m, &r, 1, &s), MX_ERR_CONTEXT);
    r.max_tokens = 0;
    CHECK_STATUS(generate_run(&m, &r, 1, &s), MX_ERR_ARG);
    r.max_tokens = 1;
    r.sampling.top_p = 0;
    CHECK_STATUS(generate_run(&m, &r, 1, &s), MX_ERR_ARG);
    r = (GenRequest){.prompt = bad, .n_prompt = 2, .max_tokens = 1, .sampling = sampling_default()};
    CHECK_STATUS(generate_run(&m, &r, 1, &s), MX_ERR_TOKEN);
    r.n_prompt = 0;
    CHECK_STATUS(generate_run(&m, &r, 1, &s), MX_ERR_ARG);
    CHECK(block_pool_free_count(&m.pool) == 2);
    block_pool_check(&m.pool);
    model_free(&m);
}

int main(void) {
    RUN(test_valid);
    RUN(test_tensor_checks);
    RUN(test_missing_files);
    RUN(test_unaligned_tensors);
    RUN(test_bad_options);
    RUN(test_dummy_model);
    RUN(test_bad_batches);
    RUN(test_load_progress);
    RUN(test_alloc_failures);
    RUN(test_generate_errors);
    return test_exit();
}
