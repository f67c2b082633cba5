// config.json for Llama-family models: parse, apply Hugging Face defaults, validate.
#include "model_config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "json_util.h"
#include "utf8.h"

#define CONFIG_MAX_BYTES (16u << 20)

// Bounds that catch nonsense without limiting real models (the largest have D = 25600,
// 126 layers, 256K vocab, head dim 256, 1M-token contexts).
#define MAX_DIM (1 << 20)
#define MAX_LAYERS 4096
#define MAX_VOCAB (1 << 24)
#define MAX_HEAD_DIM 1024
#define MAX_POSITIONS (1 << 27)

static const cJSON *member(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNull(v) ? NULL : v;
}

// Reads a positive integer field within [1, max]. Absent: *out = dflt, or an error when dflt < 0.
static MxStatus get_size(const cJSON *o, const char *key, int dflt, int max, int *out) {
    const cJSON *v = member(o, key);
    if (!v) {
        if (dflt < 0) return mx_fail(MX_ERR_CONFIG_FIELD, "\"%s\" is missing", key);
        *out = dflt;
        return MX_OK;
    }
    int x;
    if (!json_get_int(v, &x)) return mx_fail(MX_ERR_CONFIG_FIELD, "\"%s\" must be an integer", key);
    if (x <= 0 || x > max) return mx_fail(MX_ERR_CONFIG_SIZE, "\"%s\" = %d is outside [1, %d]", key, x, max);
    *out = x;
    return MX_OK;
}

static MxStatus get_double(const cJSON *o, const char *key, double dflt, MxStatus bad, double *out) {
    const cJSON *v = member(o, key);
    if (!v) {
        *out = dflt;
        return MX_OK;
    }
    if (!cJSON_IsNumber(v)) return mx_fail(bad, "\"%s\" must be a number", key);
    *out = v->valuedouble;
    if (!isfinite(*out) || *out <= 0) return mx_fail(bad, "\"%s\" = %g must be finite and > 0", key, *out);
    return MX_OK;
}

static MxStatus parse_architecture(const cJSON *root, ModelConfig *c) {
    static const char *const supported[] = {"LlamaForCausalLM", "MistralForCausalLM"};
    const cJSON *archs = member(root, "architectures");
    if (!cJSON_IsArray(archs) || cJSON_GetArraySize(archs) != 1 || !cJSON_IsString(archs->child))
        return mx_fail(MX_ERR_CONFIG_ARCH, "\"architectures\" must be a list of one name");
    const char *name = archs->child->valuestring;
    for (size_t i = 0; i < sizeof supported / sizeof *supported; i++) {
        if (strcmp(name, supported[i]) == 0) {
            snprintf(c->architecture, sizeof c->architecture, "%s", name);
            return MX_OK;
        }
    }
    char safe[64]; // never echo raw bytes: keep printable ASCII only
    size_t n = 0;
    for (const char *p = name; *p && n + 1 < sizeof safe; p++) safe[n++] = (*p >= 32 && *p < 127) ? *p : '?';
    safe[n] = 0;
    return mx_fail(MX_ERR_CONFIG_ARCH, "\"%s\" (supported: LlamaForCausalLM, MistralForCausalLM)", safe);
}

// Features of the Llama family that myrmex does not implement: refuse rather than be wrong.
static MxStatus reject_unsupported(const cJSON *root) {
    const cJSON *act = member(root, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        return mx_fail(MX_ERR_CONFIG_ARCH, "\"hidden_act\" must be \"silu\"");
    static const char *const biases[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        const cJSON *b = member(root, biases[i]);
        if (b && !cJSON_IsFalse(b)) return mx_fail(MX_ERR_CONFIG_ARCH, "\"%s\": biases are not supported", biases[i]);
    }
    return MX_OK;
}

static MxStatus parse_dtype(const cJSON *root, ModelConfig *c) {
    const cJSON *v = member(root, "torch_dtype");
    if (!v) v = member(root, "dtype"); // transformers >= 5 writes "dtype"
    c->dtype = DT_F32;
    if (!v) return MX_OK;
    if (!cJSON_IsString(v)) return mx_fail(MX_ERR_CONFIG_FIELD, "\"torch_dtype\" must be a string");
    const char *s = v->valuestring;
    if (strcmp(s, "float32") == 0) c->dtype = DT_F32;
    else if (strcmp(s, "float16") == 0) c->dtype = DT_F16;
    else if (strcmp(s, "bfloat16") == 0) c->dtype = DT_BF16;
    else return mx_fail(MX_ERR_CONFIG_FIELD, "\"torch_dtype\" must be float32, float16 or bfloat16");
    return MX_OK;
}

// bos_token_id: int or null; eos_token_id: int, list of ints, or null.
static MxStatus parse_special_ids(const cJSON *root, ModelConfig *c) {
    c->bos_id = -1;
    c->n_eos = 0;
    const cJSON *bos = member(root, "bos_token_id");
    if (bos && (!json_get_int(bos, &c->bos_id) || c->bos_id < 0 || c->bos_id >= c->vocab_size))
        return mx_fail(MX_ERR_CONFIG_FIELD, "\"bos_token_id\" must be an id below vocab_size");
    const cJSON *eos = member(root, "eos_token_id");
    if (!eos) return MX_OK;
    const cJSON *first = cJSON_IsArray(eos) ? eos->child : eos;
    if (cJSON_IsArray(eos) && cJSON_GetArraySize(eos) > MX_MAX_EOS)
        return mx_fail(MX_ERR_CONFIG_FIELD, "\"eos_token_id\" lists more than %d ids", MX_MAX_EOS);
    for (const cJSON *e = first; e; e = cJSON_IsArray(eos) ? e->next : NULL) {
        int id;
        if (!json_get_int(e, &id) || id < 0 || id >= c->vocab_size)
            return mx_fail(MX_ERR_CONFIG_FIELD, "\"eos_token_id\" must be ids below vocab_size");
        c->eos_ids[c->n_eos++] = id;
    }
    return MX_OK;
}

// rope_theta and rope_scaling in the classic form, or transformers 5's "rope_parameters"
// (one object holding rope_theta, rope_type and the scaling fields).
static MxStatus parse_rope(const cJSON *root, ModelConfig *c) {
    const cJSON *params = member(root, "rope_parameters");
    if (params && !cJSON_IsObject(params)) return mx_fail(MX_ERR_CONFIG_ROPE_SCALING, "\"rope_parameters\" must be an object");
    const cJSON *theta_owner = (params && member(params, "rope_theta")) ? params : root;
    MxStatus st = get_double(theta_owner, "rope_theta", 10000.0, MX_ERR_CONFIG_ROPE_THETA, &c->rope_theta);
    if (st) return st;
    // Real models use 1e4 .. 1e8; beyond 1e12 the slowest frequencies underflow f32.
    if (c->rope_theta <= 1.0 || c->rope_theta > 1e12)
        return mx_fail(MX_ERR_CONFIG_ROPE_THETA, "%g is outside (1, 1e12]", c->rope_theta);

    const cJSON *s = params ? params : member(root, "rope_scaling");
    c->rope_scaling = ROPE_SCALING_NONE;
    if (!s) return MX_OK;
    if (!cJSON_IsObject(s)) return mx_fail(MX_ERR_CONFIG_ROPE_SCALING, "\"rope_scaling\" must be an object or null");
    const cJSON *type = member(s, "rope_type");
    if (!type) type = member(s, "type");
    if (!cJSON_IsString(type)) return mx_fail(MX_ERR_CONFIG_ROPE_SCALING, "\"rope_type\" must be a string");
    const char *t = type->valuestring;
    if (strcmp(t, "default") == 0) return MX_OK;
    int is_linear = strcmp(t, "linear") == 0, is_llama3 = strcmp(t, "llama3") == 0;
    if (!is_linear && !is_llama3)
        return mx_fail(MX_ERR_CONFIG_ROPE_SCALING, "rope type must be default, linear or llama3");
    const cJSON *factor = member(s, "factor");
    if (!cJSON_IsNumber(factor) || !(factor->valuedouble >= 1.0 && factor->valuedouble <= 1024.0))
        return mx_fail(MX_ERR_CONFIG_ROPE_SCALING, "\"factor\" must be a number in [1, 1024]");
    c->rope_factor = factor->valuedouble;
    if (is_linear) {
        c->rope_scaling = ROPE_SCALING_LINEAR;
        return MX_OK;
    }
    c->rope_scaling = ROPE_SCALING_LLAMA3;
    if (get_double(s, "low_freq_factor", NAN, MX_ERR_CONFIG_ROPE_SCALING, &c->rope_low_freq_factor) ||
        get_double(s, "high_freq_factor", NAN, MX_ERR_CONFIG_ROPE_SCALING, &c->rope_high_freq_factor) ||
        get_size(s, "original_max_position_embeddings", c->max_positions, MAX_POSITIONS,
                 &c->rope_original_max_positions)) // absent: max_position_embeddings, as transformers does
        return mx_fail(MX_ERR_CONFIG_ROPE_SCALING, "llama3 needs low_freq_factor, high_freq_factor and a positive "
                                                   "original_max_position_embeddings");
    if (isnan(c->rope_low_freq_factor) || isnan(c->rope_high_freq_factor) ||
        c->rope_high_freq_factor <= c->rope_low_freq_factor)
        return mx_fail(MX_ERR_CONFIG_ROPE_SCALING, "llama3 needs 0 < low_freq_factor < high_freq_factor");
    return MX_OK;
}

static MxStatus parse_fields(const cJSON *root, ModelConfig *c) {
    MxStatus st;
    if ((st = parse_architecture(root, c)) || (st = reject_unsupported(root))) return st;
    if ((st = get_size(root, "hidden_size", -1, MAX_DIM, &c->hidden_size)) ||
        (st = get_size(root, "intermediate_size", -1, MAX_DIM, &c->intermediate_size)) ||
        (st = get_size(root, "num_hidden_layers", -1, MAX_LAYERS, &c->n_layers)) ||
        (st = get_size(root, "vocab_size", -1, MAX_VOCAB, &c->vocab_size)) ||
        (st = get_size(root, "max_position_embeddings", 2048, MAX_POSITIONS, &c->max_positions)))
        return st;

    const cJSON *heads = member(root, "num_attention_heads");
    if (!heads) return mx_fail(MX_ERR_CONFIG_FIELD, "\"num_attention_heads\" is missing");
    if (!json_get_int(heads, &c->n_heads) || c->n_heads <= 0 || c->n_heads > MAX_DIM)
        return mx_fail(MX_ERR_CONFIG_HEADS, NULL);
    const cJSON *kv = member(root, "num_key_value_heads");
    c->n_kv_heads = c->n_heads;
    if (kv && (!json_get_int(kv, &c->n_kv_heads) || c->n_kv_heads <= 0))
        return mx_fail(MX_ERR_CONFIG_KV_HEADS, NULL);
    if (c->n_heads % c->n_kv_heads != 0)
        return mx_fail(MX_ERR_CONFIG_KV_HEADS, "%d kv heads do not divide %d heads", c->n_kv_heads, c->n_heads);

    // head_dim may be given explicitly (and then need not be hidden / heads).
    if (member(root, "head_dim")) {
        if ((st = get_size(root, "head_dim", -1, MAX_HEAD_DIM, &c->head_dim))) return st;
    } else {
        if (c->hidden_size % c->n_heads != 0)
            return mx_fail(MX_ERR_CONFIG_HIDDEN_HEADS, "hidden_size %d, %d heads", c->hidden_size, c->n_heads);
        c->head_dim = c->hidden_size / c->n_heads;
    }
    if (c->head_dim % 2 != 0 || c->head_dim > MAX_HEAD_DIM)
        return mx_fail(MX_ERR_CONFIG_SIZE, "head_dim %d must be even and at most %d", c->head_dim, MAX_HEAD_DIM);

    double eps = 0;
    if ((st = get_double(root, "rms_norm_eps", 1e-6, MX_ERR_CONFIG_EPS, &eps))) return st;
    c->rms_norm_eps = (float)eps;
    if (!(c->rms_norm_eps > 0) || !isfinite(c->rms_norm_eps)) // 1e-300 underflows float, 1e39 overflows
        return mx_fail(MX_ERR_CONFIG_EPS, "%g is not a positive finite float", eps);
    if ((st = parse_rope(root, c))) return st;

    const cJSON *tie = member(root, "tie_word_embeddings");
    if (tie && !cJSON_IsBool(tie)) return mx_fail(MX_ERR_CONFIG_FIELD, "\"tie_word_embeddings\" must be a boolean");
    c->tie_word_embeddings = cJSON_IsTrue(tie);

    c->sliding_window = 0;
    if (strcmp(c->architecture, "MistralForCausalLM") == 0 && member(root, "sliding_window")) {
        if ((st = get_size(root, "sliding_window", -1, MAX_POSITIONS, &c->sliding_window))) return st;
        if (c->sliding_window >= c->max_positions) c->sliding_window = 0; // the window never bites
    }
    if ((st = parse_dtype(root, c)) || (st = parse_special_ids(root, c))) return st;

    uint64_t kv_bytes;
    return model_config_kv_bytes_per_token(c, 4, &kv_bytes);
}

MxStatus model_config_parse(const char *json, size_t len, ModelConfig *out) {
    memset(out, 0, sizeof *out);
    cJSON *root;
    if (!utf8_valid((const uint8_t *)json, len)) return mx_fail(MX_ERR_CONFIG_JSON, "not valid UTF-8");
    if (!json_strict_ok(json, len)) return mx_fail(MX_ERR_CONFIG_JSON, "not valid JSON");
    MxStatus st = json_parse_checked(json, len, "config.json", &root);
    if (st) return st;
    if (!cJSON_IsObject(root)) st = mx_fail(MX_ERR_CONFIG_JSON, "the root is not an object");
    else if (json_has_duplicate_keys(root)) st = mx_fail(MX_ERR_CONFIG_JSON, "duplicate keys");
    else st = parse_fields(root, out);
    cJSON_Delete(root);
    if (st) memset(out, 0, sizeof *out);
    return st;
}

MxStatus model_config_load(const char *dir, ModelConfig *out) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/config.json", dir) >= sizeof path)
        return mx_fail(MX_ERR_ARG, "model path too long");
    char *text;
    size_t len;
    if (json_read_file(path, CONFIG_MAX_BYTES, &text, &len) != MX_OK)
        return mx_fail(MX_ERR_CONFIG_JSON, "cannot read %s", path);
    MxStatus st = model_config_parse(text, len, out);
    mx_free(text);
    return st;
}

void model_config_rope_inv_freq(const ModelConfig *c, float *inv_freq) {
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        // As transformers computes it: base ** (2i / Dh) in float32.
        float expo = (float)(2 * i) / (float)c->head_dim;
        double f = 1.0 / pow(c->rope_theta, (double)expo);
        if (c->rope_scaling == ROPE_SCALING_LINEAR) {
            f /= c->rope_factor;
        } else if (c->rope_scaling == ROPE_SCALING_LLAMA3) {
            // Long wavelengths are slowed by `factor`, short ones kept, the middle blended.
            double old_ctx = c->rope_original_max_positions;
            double low_wavelen = old_ctx / c->rope_low_freq_factor;
            double high_wavelen = old_ctx / c->rope_high_freq_factor;
            double wavelen = 2.0 * M_PI / f;
            if (wavelen > low_wavelen) {
                f /= c->rope_factor;
            } else if (wavelen >= high_wavelen) {
                double smooth = (old_ctx / wavelen - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                // In [0, 1] exactly; rounding can leave it at -1 or 2 when the factors are an ulp
                // apart, which would make f negative.
                smooth = smooth < 0 ? 0 : smooth > 1 ? 1 : smooth;
                f = (1.0 - smooth) * f / c->rope_factor + smooth * f;
            }
        }
        inv_freq[i] = (float)f;
    }
}

MxStatus model_config_kv_bytes_per_token(const ModelConfig *c, size_t elem_size, uint64_t *out) {
    // 2 (K and V) x layers x kv heads x head dim x element size, each step overflow-checked.
    uint64_t terms[] = {2, (uint64_t)c->n_layers, (uint64_t)c->n_kv_heads, (uint64_t)c->head_dim, elem_size};
    uint64_t total = 1;
    for (size_t i = 0; i < sizeof terms / sizeof *terms; i++) {
        if (terms[i] && total > UINT64_MAX / terms[i]) return mx_fail(MX_ERR_CONFIG_KV_OVERFLOW, NULL);
        total *= terms[i];
    }
    *out = total;
    return MX_OK;
}
