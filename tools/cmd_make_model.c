// myrmex make-model: writes a random Llama/Mistral model in Hugging Face form
// (config.json + model.safetensors, or N shards + model.safetensors.index.json).
//
// Deterministic: every tensor draws from its own RNG, seeded by (--seed, tensor name), so the
// files are byte-identical for a seed, and a tensor's values do not depend on the shard count.
// Memory stays bounded: tensors are generated in chunks while their shard is written.
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../runtime/alloc.h"
#include "../runtime/json_util.h"
#include "../runtime/safetensors_write.h"
#include "args.h"
#include "commands.h"

#define CMD "make-model"
#define MAX_DIM (1 << 20)    // hidden, intermediate, head_dim * heads
#define MAX_VOCAB (1 << 24)
#define MAX_LAYERS 4096
#define MAX_POSITIONS (1 << 27)
#define MAX_HEAD_DIM 1024
#define UNSET INT_MIN

// ---------------------------------------------------------------------------------------
// Shapes and presets

typedef struct ModelShape {
    int mistral;           // 0: LlamaForCausalLM, 1: MistralForCausalLM
    int hidden;            // D
    int intermediate;      // I
    int layers;            // L
    int heads;             // Hq
    int kv_heads;          // Hkv
    int head_dim;          // Dh
    int vocab;             // V
    int max_positions;
    int sliding_window;    // 0: null (Mistral only)
    double rope_theta;
    int rope_kind;         // 0 none, 1 linear, 2 llama3
    double rope_factor;
    int tie;
    DType dtype;
    float init_std;        // of the weight matrices
} ModelShape;

typedef struct Preset {
    const char *name;
    int hidden, intermediate, layers, heads, kv_heads, vocab, max_positions, tie;
    float init_std;
} Preset;

// Matrices use std 0.02 at 100m scale; the small presets use more, so that their logits are
// not nearly uniform (a logit's std is about init_std * sqrt(D)).
static const Preset presets[] = {
    {"tiny", 64, 192, 2, 4, 2, 256, 512, 0, 0.125f},       // 131,392 params
    {"small", 256, 704, 4, 8, 4, 1024, 1024, 0, 0.0625f},  // 3,475,712 params
    {"100m", 768, 2048, 12, 12, 4, 32000, 2048, 1, 0.02f}, // 100,092,672 params (tied)
};

// ---------------------------------------------------------------------------------------
// Deterministic random numbers
//
// splitmix64 for the bits; the normal deviate is the sum of eight 16-bit uniforms (Irwin-Hall,
// n = 8), rescaled. It uses only integer adds and one IEEE multiply, so the files are
// byte-identical on every platform (Box-Muller's log/cos may differ in the last bit between
// libm versions, and a changed bit can flip a bf16 rounding).

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double normal_deviate(uint64_t *state) {
    uint64_t a = splitmix64(state), b = splitmix64(state);
    int64_t sum = 0;
    for (int i = 0; i < 4; i++) sum += (int64_t)((a >> (16 * i)) & 0xffff) + (int64_t)((b >> (16 * i)) & 0xffff);
    // Each uniform has mean 32767.5 and variance (65536^2 - 1) / 12; eight of them sum to
    // mean 262140 and variance 8 * (65536^2 - 1) / 12.
    static const double inv_sd = 1.0 / 53509.83318880584; // 1 / sqrt(8 * (65536^2 - 1) / 12)
    return ((double)sum - 262140.0) * inv_sd;
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

// ---------------------------------------------------------------------------------------
// Tensors

typedef struct TensorDesc {
    char name[96];
    int rank;
    int64_t shape[2];
    uint64_t nbytes;
    float mean, std; // norms: 1 +- a little; matrices: 0 +- init_std
    uint64_t rng;    // the fill state, seeded from (seed, name)
    DType dtype;
} TensorDesc;

static MxStatus fill_tensor(void *ctx, void *dst, uint64_t first, uint64_t count) {
    TensorDesc *t = ctx;
    (void)first; // calls come in order; the RNG state carries over
    for (uint64_t i = 0; i < count; i++) {
        float v = (float)(t->mean + t->std * normal_deviate(&t->rng));
        switch (t->dtype) {
        case DT_F32: ((float *)dst)[i] = v; break;
        case DT_F16: ((uint16_t *)dst)[i] = f32_to_f16(v); break;
        default: ((uint16_t *)dst)[i] = f32_to_bf16(v); break;
        }
    }
    return MX_OK;
}

static void add_desc(TensorDesc *list, int *n, const ModelShape *m, uint64_t seed, int rank,
                     int64_t rows, int64_t cols, const char *fmt, int layer) {
    TensorDesc *t = &list[(*n)++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, fmt, layer);
    t->rank = rank;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->dtype = m->dtype;
    t->nbytes = (uint64_t)rows * (uint64_t)(rank == 2 ? cols : 1) * dtype_size(m->dtype);
    t->mean = rank == 1 ? 1.0f : 0.0f;
    t->std = rank == 1 ? 0.02f : m->init_std;
    t->rng = seed ^ fnv1a(t->name);
    splitmix64(&t->rng); // decorrelate nearby seeds
}

static int tensor_count(const ModelShape *m) { return 1 + 9 * m->layers + 1 + (m->tie ? 0 : 1); }

// The Hugging Face tensors of the model, in the order a checkpoint lists them.
static void list_tensors(const ModelShape *m, uint64_t seed, TensorDesc *list) {
    int64_t D = m->hidden, I = m->intermediate, V = m->vocab;
    int64_t Q = (int64_t)m->heads * m->head_dim, KV = (int64_t)m->kv_heads * m->head_dim;
    int n = 0;
    add_desc(list, &n, m, seed, 2, V, D, "model.embed_tokens.weight", 0);
    for (int l = 0; l < m->layers; l++) {
        add_desc(list, &n, m, seed, 1, D, 0, "model.layers.%d.input_layernorm.weight", l);
        add_desc(list, &n, m, seed, 2, Q, D, "model.layers.%d.self_attn.q_proj.weight", l);
        add_desc(list, &n, m, seed, 2, KV, D, "model.layers.%d.self_attn.k_proj.weight", l);
        add_desc(list, &n, m, seed, 2, KV, D, "model.layers.%d.self_attn.v_proj.weight", l);
        add_desc(list, &n, m, seed, 2, D, Q, "model.layers.%d.self_attn.o_proj.weight", l);
        add_desc(list, &n, m, seed, 1, D, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        add_desc(list, &n, m, seed, 2, I, D, "model.layers.%d.mlp.gate_proj.weight", l);
        add_desc(list, &n, m, seed, 2, I, D, "model.layers.%d.mlp.up_proj.weight", l);
        add_desc(list, &n, m, seed, 2, D, I, "model.layers.%d.mlp.down_proj.weight", l);
    }
    add_desc(list, &n, m, seed, 1, D, 0, "model.norm.weight", 0);
    if (!m->tie) add_desc(list, &n, m, seed, 2, V, D, "lm_head.weight", 0);
    MX_ASSERT(n == tensor_count(m));
}

// Shard k gets tensors [first[k], first[k + 1]): contiguous runs of about total / N bytes,
// each shard at least one tensor (the caller guarantees n_shards <= n).
static void assign_shards(const TensorDesc *t, int n, int n_shards, uint64_t total, int *first) {
    int k = 0;
    unsigned __int128 acc = 0; // bytes in shards 0..k
    first[0] = 0;
    for (int i = 0; i < n; i++) {
        int shard_nonempty = i > first[k];
        int must_advance = n - i == n_shards - 1 - k;
        int full = acc * (unsigned)n_shards >= (unsigned __int128)total * (unsigned)(k + 1);
        if (k < n_shards - 1 && shard_nonempty && (full || must_advance)) first[++k] = i;
        acc += t[i].nbytes;
    }
    MX_ASSERT(k == n_shards - 1);
    first[n_shards] = n;
}

// ---------------------------------------------------------------------------------------
// Files

static MxStatus join_path(char *out, size_t size, const char *dir, const char *name) {
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size) return mx_fail(MX_ERR_IO, "path too long: %s/%s", dir, name);
    return MX_OK;
}

static MxStatus mkdir_p(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return mx_fail(MX_ERR_IO, "path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return mx_fail(MX_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return mx_fail(MX_ERR_IO, "cannot create %s: %s", buf, strerror(errno));
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return mx_fail(MX_ERR_IO, "%s exists and is not a directory", path);
    return MX_OK;
}

static int is_weights_file(const char *name) {
    size_t n = strlen(name);
    if (strcmp(name, "model.safetensors") == 0 || strcmp(name, "model.safetensors.index.json") == 0)
        return 1;
    return strncmp(name, "model-", 6) == 0 && n > 12 && strcmp(name + n - 12, ".safetensors") == 0;
}

// Refuses a non-empty directory unless force; with force, removes the weight files of an
// earlier model (a stale index would otherwise shadow a new single file).
static MxStatus prepare_dir(const char *dir, int force) {
    MxStatus s = mkdir_p(dir);
    if (s != MX_OK) return s;
    DIR *d = opendir(dir);
    if (!d) return mx_fail(MX_ERR_IO, "cannot read %s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (!force) {
            closedir(d);
            return mx_fail(MX_ERR_IO, "%s is not empty (use --force to write into it)", dir);
        }
        if (is_weights_file(e->d_name)) {
            char path[4096];
            if ((s = join_path(path, sizeof path, dir, e->d_name)) != MX_OK || unlink(path) != 0) {
                closedir(d);
                return s != MX_OK ? s : mx_fail(MX_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
            }
        }
    }
    closedir(d);
    return MX_OK;
}

// Writes a cJSON tree as indented text (and a final newline) to dir/name.
static MxStatus write_json(const char *dir, const char *name, const cJSON *root) {
    char path[4096];
    MxStatus s = join_path(path, sizeof path, dir, name);
    if (s != MX_OK) return s;
    char *text = cJSON_Print(root);
    if (!text) return mx_fail(MX_ERR_NOMEM, "printing %s", name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        cJSON_free(text);
        return mx_fail(MX_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    }
    size_t len = strlen(text);
    int ok = fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    cJSON_free(text);
    if (!ok) {
        unlink(path);
        return mx_fail(MX_ERR_IO, "writing %s: %s", path, strerror(errno));
    }
    return MX_OK;
}

static const char *torch_dtype(DType t) {
    return t == DT_F32 ? "float32" : t == DT_F16 ? "float16" : "bfloat16";
}

static cJSON *config_json(const ModelShape *m) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON *archs = cJSON_AddArrayToObject(root, "architectures");
    const char *arch = m->mistral ? "MistralForCausalLM" : "LlamaForCausalLM";
    if (archs) cJSON_AddItemToArray(archs, cJSON_CreateString(arch));
    cJSON_AddStringToObject(root, "model_type", m->mistral ? "mistral" : "llama");
    cJSON_AddNumberToObject(root, "hidden_size", m->hidden);
    cJSON_AddNumberToObject(root, "intermediate_size", m->intermediate);
    cJSON_AddNumberToObject(root, "num_hidden_layers", m->layers);
    cJSON_AddNumberToObject(root, "num_attention_heads", m->heads);
    cJSON_AddNumberToObject(root, "num_key_value_heads", m->kv_heads);
    cJSON_AddNumberToObject(root, "head_dim", m->head_dim);
    cJSON_AddStringToObject(root, "hidden_act", "silu");
    cJSON_AddNumberToObject(root, "rms_norm_eps", 1e-5);
    cJSON_AddNumberToObject(root, "rope_theta", m->rope_theta);
    if (m->rope_kind == 0) {
        cJSON_AddNullToObject(root, "rope_scaling");
    } else {
        cJSON *rs = cJSON_AddObjectToObject(root, "rope_scaling");
        if (rs && m->rope_kind == 1) {
            cJSON_AddStringToObject(rs, "type", "linear");
            cJSON_AddNumberToObject(rs, "factor", m->rope_factor);
        } else if (rs) {
            cJSON_AddNumberToObject(rs, "factor", m->rope_factor);
            cJSON_AddNumberToObject(rs, "low_freq_factor", 1.0);
            cJSON_AddNumberToObject(rs, "high_freq_factor", 4.0);
            cJSON_AddNumberToObject(rs, "original_max_position_embeddings", 8192);
            cJSON_AddStringToObject(rs, "rope_type", "llama3");
        }
    }
    cJSON_AddNumberToObject(root, "vocab_size", m->vocab);
    cJSON_AddNumberToObject(root, "max_position_embeddings", m->max_positions);
    if (m->mistral) {
        if (m->sliding_window) cJSON_AddNumberToObject(root, "sliding_window", m->sliding_window);
        else cJSON_AddNullToObject(root, "sliding_window");
    }
    cJSON_AddBoolToObject(root, "tie_word_embeddings", m->tie);
    cJSON_AddNumberToObject(root, "bos_token_id", 1);
    cJSON_AddNumberToObject(root, "eos_token_id", 2);
    cJSON_AddStringToObject(root, "torch_dtype", torch_dtype(m->dtype));
    // cJSON_Add* return NULL on allocation failure; count what landed instead of checking each.
    int expect = 18 + (m->mistral ? 1 : 0);
    int expect_rope = m->rope_kind == 0 ? 0 : m->rope_kind == 1 ? 2 : 5;
    if (cJSON_GetArraySize(root) != expect || cJSON_GetArraySize(archs) != 1 ||
        cJSON_GetArraySize(cJSON_GetObjectItem(root, "rope_scaling")) != expect_rope) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

// "model.safetensors", or "model-0000K-of-0000N.safetensors" for shard k of n > 1.
static void shard_name(char *buf, size_t size, int k, int n_shards) {
    if (n_shards == 1) snprintf(buf, size, "model.safetensors");
    else snprintf(buf, size, "model-%05d-of-%05d.safetensors", k + 1, n_shards);
}

// After a failed write: removes the weight files of this run, so no half model stays behind.
static void remove_partial(const char *dir, int n_shards) {
    char path[4096], file[64];
    for (int k = 0; k <= n_shards; k++) {
        if (k < n_shards) shard_name(file, sizeof file, k, n_shards);
        else snprintf(file, sizeof file, "model.safetensors.index.json");
        if (join_path(path, sizeof path, dir, file) == MX_OK) unlink(path);
    }
}

static MxStatus write_index(const char *dir, const TensorDesc *t, const int *first, int n_shards,
                            uint64_t total) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = root ? cJSON_AddObjectToObject(root, "metadata") : NULL;
    cJSON *map = root ? cJSON_AddObjectToObject(root, "weight_map") : NULL;
    int ok = meta && map && cJSON_AddNumberToObject(meta, "total_size", (double)total);
    for (int k = 0; k < n_shards && ok; k++) {
        char file[64];
        shard_name(file, sizeof file, k, n_shards);
        for (int i = first[k]; i < first[k + 1] && ok; i++)
            ok = cJSON_AddStringToObject(map, t[i].name, file) != NULL;
    }
    MxStatus s = ok ? write_json(dir, "model.safetensors.index.json", root)
                    : mx_fail(MX_ERR_NOMEM, "building the index");
    cJSON_Delete(root);
    return s;
}

static MxStatus write_shard(const char *dir, const char *file, TensorDesc *t, int begin, int end) {
    char path[4096];
    MxStatus s = join_path(path, sizeof path, dir, file);
    if (s != MX_OK) return s;
    StWriter w;
    st_writer_init(&w);
    s = st_writer_set_metadata(&w, "format", "pt");
    for (int i = begin; i < end && s == MX_OK; i++)
        s = st_writer_add_fill(&w, t[i].name, t[i].dtype, t[i].rank, t[i].shape, fill_tensor, &t[i]);
    if (s == MX_OK) s = st_writer_write(&w, path);
    st_writer_free(&w);
    return s;
}

// ---------------------------------------------------------------------------------------
// The command

// "12,345,678"
static const char *with_commas(uint64_t v, char *buf, size_t size) {
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < size; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

static int check_range(const char *flag, int v, int max) {
    if (v >= 1 && v <= max) return 0;
    args_usage_error(CMD, "%s must be in [1, %d], got %d", flag, max, v);
    return -1;
}

// Parses "none", "linear:F" or "llama3:F".
static int parse_rope_scaling(const char *s, ModelShape *m) {
    if (strcmp(s, "none") == 0) {
        m->rope_kind = 0;
        return 0;
    }
    const char *colon = strchr(s, ':');
    if (colon && colon - s == 6 && strncmp(s, "linear", 6) == 0) m->rope_kind = 1;
    else if (colon && colon - s == 6 && strncmp(s, "llama3", 6) == 0) m->rope_kind = 2;
    else return -1;
    if (parse_double(colon + 1, &m->rope_factor) != 0 || !(m->rope_factor > 0)) return -1;
    return 0;
}

static void print_summary(const char *dir, const ModelShape *m, const char *preset, uint64_t params,
                          uint64_t bytes, int n_tensors, int n_shards) {
    char p[40], b[40];
    printf("wrote %s\n", dir);
    printf("  architecture  %s (preset %s)\n", m->mistral ? "MistralForCausalLM" : "LlamaForCausalLM", preset);
    printf("  shape         hidden %d, intermediate %d, layers %d, heads %d, kv heads %d, head dim %d\n",
           m->hidden, m->intermediate, m->layers, m->heads, m->kv_heads, m->head_dim);
    printf("                vocab %d, max positions %d, rope theta %g%s%s\n", m->vocab, m->max_positions,
           m->rope_theta, m->rope_kind == 1 ? ", rope linear" : m->rope_kind == 2 ? ", rope llama3" : "",
           m->tie ? ", tied embeddings" : "");
    printf("  parameters    %s (%.2f M)\n", with_commas(params, p, sizeof p), (double)params / 1e6);
    printf("  weights       %s bytes (%s, %.2f MiB), %d tensors\n", with_commas(bytes, b, sizeof b),
           dtype_name(m->dtype), (double)bytes / (1024.0 * 1024.0), n_tensors);
    if (n_shards == 1) {
        printf("  files         config.json, model.safetensors\n");
    } else {
        printf("  files         config.json, model.safetensors.index.json, "
               "model-00001-of-%05d.safetensors .. model-%05d-of-%05d.safetensors\n",
               n_shards, n_shards, n_shards);
    }
}

int cmd_make_model(int argc, char **argv) {
    const char *preset_name = "tiny", *rope_scaling = NULL, *dtype = "bf16", *arch = "llama";
    // UNSET marks a size the preset decides; any value given (even -1) is checked.
    int hidden = UNSET, intermediate = UNSET, layers = UNSET, heads = UNSET, kv_heads = UNSET;
    int head_dim = UNSET, vocab = UNSET, max_positions = UNSET, sliding_window = UNSET;
    int shards = 1, tie = 0, no_tie = 0;
    int force = 0;
    double rope_theta = NAN;
    float init_std = NAN;
    int64_t seed = 0;
    const ArgSpec specs[] = {
        {"--preset", ARG_STRING, &preset_name, "NAME",
         "tiny (131K params) | small (3.5M) | 100m (100M, tied); default tiny; flags override it"},
        {"--arch", ARG_STRING, &arch, "NAME", "llama | mistral (default llama)"},
        {"--hidden", ARG_INT, &hidden, "N", "hidden size D"},
        {"--intermediate", ARG_INT, &intermediate, "N", "MLP intermediate size"},
        {"--layers", ARG_INT, &layers, "N", "number of layers"},
        {"--heads", ARG_INT, &heads, "N", "attention heads (must divide --hidden)"},
        {"--kv-heads", ARG_INT, &kv_heads, "N", "key/value heads (must divide --heads)"},
        {"--head-dim", ARG_INT, &head_dim, "N", "head dimension, even (default hidden / heads)"},
        {"--vocab", ARG_INT, &vocab, "N", "vocabulary size"},
        {"--max-positions", ARG_INT, &max_positions, "N", "max_position_embeddings"},
        {"--rope-theta", ARG_DOUBLE, &rope_theta, "F", "rope base (default 10000)"},
        {"--rope-scaling", ARG_STRING, &rope_scaling, "KIND", "none | linear:F | llama3:F (default none)"},
        {"--sliding-window", ARG_INT, &sliding_window, "N", "attention window (mistral only; default null)"},
        {"--tie", ARG_FLAG, &tie, NULL, "tie lm_head to the embedding (no lm_head.weight)"},
        {"--no-tie", ARG_FLAG, &no_tie, NULL, "write a separate lm_head.weight (100m ties by default)"},
        {"--dtype", ARG_STRING, &dtype, "T", "bf16 | f16 | f32 (default bf16)"},
        {"--init-std", ARG_FLOAT, &init_std, "F", "std of the weight matrices (preset default)"},
        {"--shards", ARG_INT, &shards, "N", "number of safetensors files (default 1)"},
        {"--seed", ARG_INT64, &seed, "S", "RNG seed (default 0); same seed, same bytes"},
        {"--force", ARG_FLAG, &force, NULL, "write into a non-empty OUT_DIR (replaces model files)"},
    };
    const char *pos[1];
    int rc = args_parse(CMD, "myrmex make-model OUT_DIR [options]", specs, sizeof specs / sizeof *specs,
                        argc, argv, pos, 1, 1);
    if (rc != ARGS_OK) return rc == ARGS_HELP ? 0 : 2;
    const char *out_dir = pos[0];

    // Preset, then the flags on top.
    const Preset *pr = NULL;
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (strcmp(preset_name, presets[i].name) == 0) pr = &presets[i];
    if (!pr) return args_usage_error(CMD, "unknown preset '%s' (tiny, small or 100m)", preset_name);
    ModelShape m = {
        .hidden = hidden != UNSET ? hidden : pr->hidden,
        .intermediate = intermediate != UNSET ? intermediate : pr->intermediate,
        .layers = layers != UNSET ? layers : pr->layers,
        .heads = heads != UNSET ? heads : pr->heads,
        .kv_heads = kv_heads != UNSET ? kv_heads : pr->kv_heads,
        .vocab = vocab != UNSET ? vocab : pr->vocab,
        .max_positions = max_positions != UNSET ? max_positions : pr->max_positions,
        .rope_theta = isnan(rope_theta) ? 10000.0 : rope_theta,
        .tie = pr->tie,
        .init_std = isnan(init_std) ? pr->init_std : init_std,
        .dtype = DT_BF16,
    };
    if (tie && no_tie) return args_usage_error(CMD, "--tie and --no-tie exclude each other");
    if (tie) m.tie = 1;
    if (no_tie) m.tie = 0;
    if (strcmp(arch, "llama") == 0) m.mistral = 0;
    else if (strcmp(arch, "mistral") == 0) m.mistral = 1;
    else return args_usage_error(CMD, "unknown --arch '%s' (llama or mistral)", arch);
    if (strcmp(dtype, "bf16") == 0) m.dtype = DT_BF16;
    else if (strcmp(dtype, "f16") == 0) m.dtype = DT_F16;
    else if (strcmp(dtype, "f32") == 0) m.dtype = DT_F32;
    else return args_usage_error(CMD, "unknown --dtype '%s' (bf16, f16 or f32)", dtype);
    if (rope_scaling && parse_rope_scaling(rope_scaling, &m) != 0)
        return args_usage_error(CMD, "invalid --rope-scaling '%s' (none, linear:F or llama3:F with F > 0)",
                                rope_scaling);

    // Validation: every rule a loader applies, checked here with the flag's name.
    if (check_range("--hidden", m.hidden, MAX_DIM) || check_range("--intermediate", m.intermediate, MAX_DIM) ||
        check_range("--layers", m.layers, MAX_LAYERS) || check_range("--heads", m.heads, MAX_DIM) ||
        check_range("--kv-heads", m.kv_heads, MAX_DIM) || check_range("--vocab", m.vocab, MAX_VOCAB) ||
        check_range("--max-positions", m.max_positions, MAX_POSITIONS))
        return 2;
    if (m.hidden % m.heads != 0)
        return args_usage_error(CMD, "--heads %d does not divide --hidden %d", m.heads, m.hidden);
    if (m.heads % m.kv_heads != 0)
        return args_usage_error(CMD, "--kv-heads %d does not divide --heads %d", m.kv_heads, m.heads);
    m.head_dim = head_dim != UNSET ? head_dim : m.hidden / m.heads;
    if (check_range("--head-dim", m.head_dim, MAX_HEAD_DIM)) return 2;
    if (m.head_dim % 2 != 0)
        return args_usage_error(CMD, "head dim %d must be even (rope rotates pairs)", m.head_dim);
    if ((int64_t)m.heads * m.head_dim > MAX_DIM)
        return args_usage_error(CMD, "--heads x --head-dim = %" PRId64 " is over %d",
                                (int64_t)m.heads * m.head_dim, MAX_DIM);
    if (!(m.rope_theta > 0)) return args_usage_error(CMD, "--rope-theta must be > 0");
    if (!(m.init_std >= 0)) return args_usage_error(CMD, "--init-std must be >= 0");
    if (sliding_window != UNSET) {
        if (!m.mistral) return args_usage_error(CMD, "--sliding-window needs --arch mistral");
        if (check_range("--sliding-window", sliding_window, MAX_POSITIONS)) return 2;
        m.sliding_window = sliding_window;
    }
    int n = tensor_count(&m);
    if (shards < 1 || shards > n || shards > 99999)
        return args_usage_error(CMD, "--shards must be in [1, %d] (the number of tensors), got %d",
                                n < 99999 ? n : 99999, shards);

    // Generate and write.
    json_init();
    TensorDesc *t = mx_calloc((size_t)n, sizeof *t);
    int *first = mx_calloc((size_t)shards + 1, sizeof *first);
    MxStatus s = (t && first) ? MX_OK : mx_fail(MX_ERR_NOMEM, "tensor list");
    uint64_t bytes = 0, params = 0;
    if (s == MX_OK) {
        list_tensors(&m, (uint64_t)seed, t);
        for (int i = 0; i < n; i++) {
            bytes += t[i].nbytes;
            params += t[i].nbytes / dtype_size(m.dtype);
        }
        assign_shards(t, n, shards, bytes, first);
        s = prepare_dir(out_dir, force);
    }
    int dir_ready = s == MX_OK;
    for (int k = 0; k < shards && s == MX_OK; k++) {
        char file[64];
        shard_name(file, sizeof file, k, shards);
        s = write_shard(out_dir, file, t, first[k], first[k + 1]);
    }
    if (s == MX_OK && shards > 1) s = write_index(out_dir, t, first, shards, bytes);
    if (s == MX_OK) {
        cJSON *config = config_json(&m);
        s = config ? write_json(out_dir, "config.json", config) : mx_fail(MX_ERR_NOMEM, "config.json");
        cJSON_Delete(config);
    }
    if (s == MX_OK) print_summary(out_dir, &m, preset_name, params, bytes, n, shards);
    else if (dir_ready) remove_partial(out_dir, shards);
    mx_free(first);
    mx_free(t);
    if (s != MX_OK) {
        fprintf(stderr, "myrmex %s: error: %s\n", CMD, mx_last_error());
        return 1;
    }
    return 0;
}
