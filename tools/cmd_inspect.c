// myrmex inspect: what a model directory holds and what it needs: the validated config.json,
// every tensor (name, dtype, shape, bytes), totals, and the memory plan (weights, and KV cache
// per token and for a full context).
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../runtime/alloc.h"
#include "../runtime/json_util.h"
#include "../runtime/model_config.h"
#include "../runtime/safetensors.h"
#include "args.h"
#include "commands.h"

#define CMD "inspect"

typedef struct Entry {
    const StTensor *t;
    const char *file; // base name of the file holding it
} Entry;

typedef struct Plan {
    uint64_t weight_bytes, params;
    int n_tensors, n_files;
    uint64_t kv_token_bf16, kv_token_f32; // bytes of K and V per token, all layers
    uint64_t kv_ctx_bf16, kv_ctx_f32;     // the same for max_positions tokens
} Plan;

// ---------------------------------------------------------------------------------------
// Gathering

// Natural order, so layers.2 sorts before layers.10.
static int natural_cmp(const char *a, const char *b) {
    while (*a && *b) {
        if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
            while (*a == '0') a++;
            while (*b == '0') b++;
            size_t na = strspn(a, "0123456789"), nb = strspn(b, "0123456789");
            if (na != nb) return na < nb ? -1 : 1;
            int c = strncmp(a, b, na);
            if (c) return c;
            a += na;
            b += nb;
        } else {
            if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
            a++;
            b++;
        }
    }
    return *a ? 1 : *b ? -1 : 0;
}

static int entry_cmp(const void *x, const void *y) {
    const Entry *a = x, *b = y;
    int c = natural_cmp(a->t->name, b->t->name);
    return c ? c : strcmp(a->t->name, b->t->name);
}

static const char *base_name(const char *path) {
    const char *slash = path ? strrchr(path, '/') : NULL;
    return slash ? slash + 1 : path ? path : "?";
}

// All tensors of the set, sorted by name. Returns NULL (MX_ERR_NOMEM recorded) on failure.
static Entry *gather(const TensorSet *ts, int *n_out) {
    int n = tensor_set_count(ts);
    Entry *e = mx_calloc(n > 0 ? (size_t)n : 1, sizeof *e);
    if (!e) {
        mx_fail(MX_ERR_NOMEM, "tensor table");
        return NULL;
    }
    int k = 0;
    for (int f = 0; f < ts->n_files; f++) {
        for (int i = 0; i < ts->files[f].n_tensors && k < n; i++) {
            e[k].t = &ts->files[f].tensors[i];
            e[k].file = base_name(ts->files[f].path);
            k++;
        }
    }
    qsort(e, (size_t)k, sizeof *e, entry_cmp);
    *n_out = k;
    return e;
}

static MxStatus make_plan(const ModelConfig *c, const TensorSet *ts, const Entry *e, int n, Plan *p) {
    memset(p, 0, sizeof *p);
    p->weight_bytes = tensor_set_bytes(ts);
    p->n_tensors = n;
    p->n_files = ts->n_files;
    for (int i = 0; i < n; i++) {
        size_t es = st_dtype_size(e[i].t->dtype);
        if (es) p->params += e[i].t->nbytes / es;
    }
    MxStatus s = model_config_kv_bytes_per_token(c, 2, &p->kv_token_bf16);
    if (s == MX_OK) s = model_config_kv_bytes_per_token(c, 4, &p->kv_token_f32);
    if (s != MX_OK) return s;
    if (__builtin_mul_overflow(p->kv_token_bf16, (uint64_t)c->max_positions, &p->kv_ctx_bf16) ||
        __builtin_mul_overflow(p->kv_token_f32, (uint64_t)c->max_positions, &p->kv_ctx_f32))
        return mx_fail(MX_ERR_CONFIG_KV_OVERFLOW, "KV cache for %d tokens", c->max_positions);
    return MX_OK;
}

// ---------------------------------------------------------------------------------------
// Text output

static const char *rope_text(const ModelConfig *c, char *buf, size_t size) {
    switch (c->rope_scaling) {
    case ROPE_SCALING_LINEAR: snprintf(buf, size, "linear, factor %g", c->rope_factor); break;
    case ROPE_SCALING_LLAMA3:
        snprintf(buf, size, "llama3, factor %g, low %g, high %g, original %d positions", c->rope_factor,
                 c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_max_positions);
        break;
    default: snprintf(buf, size, "none"); break;
    }
    return buf;
}

static const char *shape_text(const StTensor *t, char *buf, size_t size) {
    size_t o = 0;
    buf[0] = '\0';
    o += (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < t->rank && o < size; d++)
        o += (size_t)snprintf(buf + o, size - o, d ? ", %" PRId64 : "%" PRId64, t->shape[d]);
    if (o < size) snprintf(buf + o, size - o, "]");
    return buf;
}

static const char *human_bytes(uint64_t b, char *buf, size_t size) {
    if (b >= (1ull << 30)) snprintf(buf, size, "%.2f GiB", (double)b / (double)(1ull << 30));
    else if (b >= (1ull << 20)) snprintf(buf, size, "%.2f MiB", (double)b / (double)(1ull << 20));
    else if (b >= (1ull << 10)) snprintf(buf, size, "%.2f KiB", (double)b / (double)(1ull << 10));
    else snprintf(buf, size, "%" PRIu64 " B", b);
    return buf;
}

static void print_text(const char *dir, const ModelConfig *c, const Entry *e, int n, const Plan *p) {
    char buf[160], h1[32], h2[32];
    printf("model       %s\n", dir);
    printf("config      %s, torch_dtype %s\n", c->architecture, dtype_name(c->dtype));
    printf("  hidden_size %d, intermediate_size %d, layers %d\n", c->hidden_size, c->intermediate_size,
           c->n_layers);
    printf("  heads %d, kv heads %d, head_dim %d\n", c->n_heads, c->n_kv_heads, c->head_dim);
    printf("  vocab %d, max positions %d, sliding window %s", c->vocab_size, c->max_positions,
           c->sliding_window ? "" : "none");
    if (c->sliding_window) printf("%d", c->sliding_window);
    printf("\n  rms_norm_eps %g, rope_theta %g, rope scaling %s\n", (double)c->rms_norm_eps, c->rope_theta,
           rope_text(c, buf, sizeof buf));
    printf("  tie_word_embeddings %s, bos %d, eos", c->tie_word_embeddings ? "true" : "false", c->bos_id);
    for (int i = 0; i < c->n_eos; i++) printf("%s%d", i ? "," : " ", c->eos_ids[i]);
    printf("%s\n", c->n_eos ? "" : " none");

    int wname = 4, wshape = 5;
    for (int i = 0; i < n; i++) {
        int l = (int)strlen(e[i].t->name);
        if (l > wname) wname = l;
        l = (int)strlen(shape_text(e[i].t, buf, sizeof buf));
        if (l > wshape) wshape = l;
    }
    printf("\ntensors (%d in %d file%s)\n", p->n_tensors, p->n_files, p->n_files == 1 ? "" : "s");
    printf("  %-*s  %-5s  %-*s  %12s%s\n", wname, "name", "dtype", wshape, "shape", "bytes",
           p->n_files > 1 ? "  file" : "");
    for (int i = 0; i < n; i++) {
        printf("  %-*s  %-5s  %-*s  %12" PRIu64, wname, e[i].t->name, st_dtype_name(e[i].t->dtype), wshape,
               shape_text(e[i].t, buf, sizeof buf), e[i].t->nbytes);
        if (p->n_files > 1) printf("  %s", e[i].file);
        printf("\n");
    }
    printf("\ntotals      %d tensors, %" PRIu64 " parameters (%.2f M), %" PRIu64 " bytes (%s)\n", p->n_tensors,
           p->params, (double)p->params / 1e6, p->weight_bytes, human_bytes(p->weight_bytes, h1, sizeof h1));
    printf("\nmemory\n");
    printf("  %-26s %s\n", "weights", human_bytes(p->weight_bytes, h1, sizeof h1));
    printf("  %-26s %" PRIu64 " B bf16 (GPU), %" PRIu64 " B f32 (CPU)\n", "KV cache per token",
           p->kv_token_bf16, p->kv_token_f32);
    char label[64];
    snprintf(label, sizeof label, "KV cache for %d tokens", c->max_positions);
    printf("  %-26s %s bf16 (GPU), %s f32 (CPU)\n", label, human_bytes(p->kv_ctx_bf16, h1, sizeof h1),
           human_bytes(p->kv_ctx_f32, h2, sizeof h2));
}

// ---------------------------------------------------------------------------------------
// JSON output

static cJSON *config_to_json(const ModelConfig *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "architecture", c->architecture);
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_positions);
    if (c->sliding_window) cJSON_AddNumberToObject(o, "sliding_window", c->sliding_window);
    else cJSON_AddNullToObject(o, "sliding_window");
    char eps[32]; // the float's shortest decimal form: 1e-05, not 9.99999974737875e-06
    snprintf(eps, sizeof eps, "%.7g", (double)c->rms_norm_eps);
    cJSON_AddNumberToObject(o, "rms_norm_eps", strtod(eps, NULL));
    cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
    if (c->rope_scaling == ROPE_SCALING_NONE) {
        cJSON_AddNullToObject(o, "rope_scaling");
    } else {
        cJSON *r = cJSON_AddObjectToObject(o, "rope_scaling");
        cJSON_AddStringToObject(r, "rope_type", c->rope_scaling == ROPE_SCALING_LINEAR ? "linear" : "llama3");
        cJSON_AddNumberToObject(r, "factor", c->rope_factor);
        if (c->rope_scaling == ROPE_SCALING_LLAMA3) {
            cJSON_AddNumberToObject(r, "low_freq_factor", c->rope_low_freq_factor);
            cJSON_AddNumberToObject(r, "high_freq_factor", c->rope_high_freq_factor);
            cJSON_AddNumberToObject(r, "original_max_position_embeddings", c->rope_original_max_positions);
        }
    }
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_word_embeddings);
    cJSON_AddNumberToObject(o, "bos_token_id", c->bos_id);
    cJSON *eos = cJSON_AddArrayToObject(o, "eos_token_ids");
    for (int i = 0; i < c->n_eos && eos; i++) cJSON_AddItemToArray(eos, cJSON_CreateNumber(c->eos_ids[i]));
    cJSON_AddStringToObject(o, "dtype", dtype_name(c->dtype));
    return o;
}

static int print_json(const char *dir, const ModelConfig *c, const Entry *e, int n, const Plan *p) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return -1;
    cJSON_AddStringToObject(root, "dir", dir);
    cJSON_AddItemToObject(root, "config", config_to_json(c));
    cJSON *arr = cJSON_AddArrayToObject(root, "tensors");
    for (int i = 0; i < n && arr; i++) {
        cJSON *t = cJSON_CreateObject();
        if (!t) break;
        cJSON_AddItemToArray(arr, t);
        cJSON_AddStringToObject(t, "name", e[i].t->name);
        cJSON_AddStringToObject(t, "dtype", st_dtype_name(e[i].t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < e[i].t->rank && shape; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e[i].t->shape[d]));
        cJSON_AddNumberToObject(t, "bytes", (double)e[i].t->nbytes);
        cJSON_AddStringToObject(t, "file", e[i].file);
    }
    cJSON *tot = cJSON_AddObjectToObject(root, "totals");
    cJSON_AddNumberToObject(tot, "tensors", p->n_tensors);
    cJSON_AddNumberToObject(tot, "files", p->n_files);
    cJSON_AddNumberToObject(tot, "parameters", (double)p->params);
    cJSON_AddNumberToObject(tot, "bytes", (double)p->weight_bytes);
    cJSON *mem = cJSON_AddObjectToObject(root, "memory");
    cJSON_AddNumberToObject(mem, "weights_bytes", (double)p->weight_bytes);
    cJSON_AddNumberToObject(mem, "kv_bytes_per_token_bf16", (double)p->kv_token_bf16);
    cJSON_AddNumberToObject(mem, "kv_bytes_per_token_f32", (double)p->kv_token_f32);
    cJSON_AddNumberToObject(mem, "kv_tokens", c->max_positions);
    cJSON_AddNumberToObject(mem, "kv_bytes_max_positions_bf16", (double)p->kv_ctx_bf16);
    cJSON_AddNumberToObject(mem, "kv_bytes_max_positions_f32", (double)p->kv_ctx_f32);
    // A failed add leaves a shorter tree: check the last member of each part landed.
    int ok = arr && cJSON_GetArraySize(arr) == n && cJSON_GetObjectItem(root, "config") &&
             cJSON_GetObjectItem(mem, "kv_bytes_max_positions_f32");
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return -1;
    puts(text);
    cJSON_free(text);
    return 0;
}

// ---------------------------------------------------------------------------------------
// The command

int cmd_inspect(int argc, char **argv) {
    int json = 0;
    const ArgSpec specs[] = {
        {"--json", ARG_FLAG, &json, NULL, "print one JSON object instead of tables"},
    };
    const char *pos[1];
    int rc = args_parse(CMD, "myrmex inspect DIR [--json]", specs, (int)(sizeof specs / sizeof *specs), argc,
                        argv, pos, 1, 1);
    if (rc != ARGS_OK) return rc == ARGS_HELP ? 0 : 2;
    const char *dir = pos[0];

    json_init();
    ModelConfig config;
    TensorSet ts = {0};
    Entry *e = NULL;
    int n = 0;
    Plan plan;
    MxStatus s = model_config_load(dir, &config);
    if (s == MX_OK) s = tensor_set_open(dir, &ts);
    if (s == MX_OK) {
        e = gather(&ts, &n);
        s = e ? make_plan(&config, &ts, e, n, &plan) : mx_last_status();
    }
    if (s == MX_OK) {
        if (json) {
            if (print_json(dir, &config, e, n, &plan) != 0) s = mx_fail(MX_ERR_NOMEM, "JSON output");
        } else {
            print_text(dir, &config, e, n, &plan);
        }
    }
    mx_free(e);
    tensor_set_close(&ts);
    if (s != MX_OK) {
        fprintf(stderr, "myrmex %s: error: %s\n", CMD, mx_last_error());
        return 1;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) { // a full disk, a closed pipe: not a success
        fprintf(stderr, "myrmex %s: error: cannot write standard output\n", CMD);
        return 1;
    }
    return 0;
}
