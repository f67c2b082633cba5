// config.json parsing: defaults, both rope_scaling forms, and one named error per bad field.
#include <math.h>
#include <string.h>

#include "model_config.h"
#include "test_util.h"

// A valid Llama config with one field replaced: KEY is a JSON key, VALUE raw JSON or NULL
// to drop the key.
static MxStatus parse_with(const char *key, const char *value, ModelConfig *c) {
    const char *fields[][2] = {
        {"architectures", "[\"LlamaForCausalLM\"]"}, {"hidden_size", "64"}, {"intermediate_size", "160"},
        {"num_hidden_layers", "2"}, {"num_attention_heads", "8"}, {"num_key_value_heads", "2"},
        {"vocab_size", "300"}, {"max_position_embeddings", "256"}, {"rms_norm_eps", "1e-5"},
        {"rope_theta", "10000.0"}, {"bos_token_id", "1"}, {"eos_token_id", "2"}, {"torch_dtype", "\"bfloat16\""},
        {"tie_word_embeddings", "false"}, {"hidden_act", "\"silu\""},
    };
    char json[4096];
    int n = snprintf(json, sizeof json, "{");
    int found = 0;
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        const char *v = fields[i][1];
        if (key && strcmp(key, fields[i][0]) == 0) {
            found = 1;
            if (!value) continue;
            v = value;
        }
        n += snprintf(json + n, sizeof json - (size_t)n, "%s\"%s\": %s", n > 1 ? ", " : "", fields[i][0], v);
    }
    if (key && !found && value) n += snprintf(json + n, sizeof json - (size_t)n, ", \"%s\": %s", key, value);
    snprintf(json + n, sizeof json - (size_t)n, "}");
    return model_config_parse(json, strlen(json), c);
}

static void test_valid(void) {
    ModelConfig c;
    CHECK_STATUS(parse_with(NULL, NULL, &c), MX_OK);
    CHECK(c.hidden_size == 64 && c.n_heads == 8 && c.n_kv_heads == 2 && c.head_dim == 8);
    CHECK(c.vocab_size == 300 && c.n_layers == 2 && c.intermediate_size == 160 && c.max_positions == 256);
    CHECK(fabsf(c.rms_norm_eps - 1e-5f) < 1e-12f && c.rope_theta == 10000.0);
    CHECK(c.bos_id == 1 && c.n_eos == 1 && c.eos_ids[0] == 2 && c.dtype == DT_BF16);
    CHECK(c.rope_scaling == ROPE_SCALING_NONE && !c.tie_word_embeddings && c.sliding_window == 0);
    CHECK(strcmp(c.architecture, "LlamaForCausalLM") == 0);

    CHECK_STATUS(parse_with("eos_token_id", "[2, 7, 9]", &c), MX_OK);
    CHECK(c.n_eos == 3 && c.eos_ids[2] == 9);
    CHECK_STATUS(parse_with("eos_token_id", "null", &c), MX_OK);
    CHECK(c.n_eos == 0);
    CHECK_STATUS(parse_with("num_key_value_heads", NULL, &c), MX_OK);
    CHECK(c.n_kv_heads == 8);
    CHECK_STATUS(parse_with("head_dim", "32", &c), MX_OK);
    CHECK(c.head_dim == 32);
    CHECK_STATUS(parse_with("tie_word_embeddings", "true", &c), MX_OK);
    CHECK(c.tie_word_embeddings);
    CHECK_STATUS(parse_with("torch_dtype", NULL, &c), MX_OK);
    CHECK(c.dtype == DT_F32);
    CHECK_STATUS(parse_with("rms_norm_eps", NULL, &c), MX_OK);
    CHECK(fabsf(c.rms_norm_eps - 1e-6f) < 1e-13f);
}

static void test_rope_scaling(void) {
    ModelConfig c;
    CHECK_STATUS(parse_with("rope_scaling", "{\"type\": \"linear\", \"factor\": 2.0}", &c), MX_OK);
    CHECK(c.rope_scaling == ROPE_SCALING_LINEAR && c.rope_factor == 2.0);
    CHECK_STATUS(parse_with("rope_scaling",
                            "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0,"
                            " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}",
                            &c),
                 MX_OK);
    CHECK(c.rope_scaling == ROPE_SCALING_LLAMA3 && c.rope_original_max_positions == 8192);
    CHECK_STATUS(parse_with("rope_scaling", "null", &c), MX_OK);
    CHECK(c.rope_scaling == ROPE_SCALING_NONE);
    // transformers >= 5 form: rope_parameters carries theta and the type.
    CHECK_STATUS(parse_with("rope_parameters", "{\"rope_type\": \"default\", \"rope_theta\": 500000.0}", &c), MX_OK);
    CHECK(c.rope_theta == 500000.0 && c.rope_scaling == ROPE_SCALING_NONE);

    CHECK_STATUS(parse_with("rope_scaling", "{\"type\": \"yarn\", \"factor\": 4.0}", &c), MX_ERR_CONFIG_ROPE_SCALING);
    CHECK_STATUS(parse_with("rope_scaling", "{\"type\": \"linear\"}", &c), MX_ERR_CONFIG_ROPE_SCALING);
    CHECK_STATUS(parse_with("rope_scaling", "{\"type\": \"linear\", \"factor\": -1}", &c), MX_ERR_CONFIG_ROPE_SCALING);
    CHECK_STATUS(parse_with("rope_scaling", "{\"type\": \"linear\", \"factor\": 8e81}", &c), // found by fuzz_config
                 MX_ERR_CONFIG_ROPE_SCALING);
    CHECK_STATUS(parse_with("rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8.0}", &c), MX_ERR_CONFIG_ROPE_SCALING);
    CHECK_STATUS(parse_with("rope_scaling", "[1]", &c), MX_ERR_CONFIG_ROPE_SCALING);

    // llama3: short wavelengths untouched, long ones divided by the factor.
    CHECK_STATUS(parse_with("rope_scaling",
                            "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0,"
                            " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}",
                            &c),
                 MX_OK);
    float scaled[4], plain[4];
    model_config_rope_inv_freq(&c, scaled);
    c.rope_scaling = ROPE_SCALING_NONE;
    model_config_rope_inv_freq(&c, plain);
    CHECK(scaled[0] == plain[0]);                          // wavelength 2*pi < 64/4
    CHECK(fabsf(scaled[3] - plain[3] / 8) < 1e-9f);       // wavelength 2*pi*10000^(3/4) > 64

    // Fuzz campaign (fuzz_config's inv_freq > 0 check): factors an ulp apart put wavelength
    // 2*pi*100 (i = 2) between the two cut-offs, where rounding made the blend weight -1 and the
    // frequency negative.
    CHECK_STATUS(parse_with("rope_scaling",
                            "{\"rope_type\": \"llama3\", \"factor\": 1024, \"low_freq_factor\": 0.014323944878270581,"
                            " \"high_freq_factor\": 0.014323944878270583, \"original_max_position_embeddings\": 9}",
                            &c),
                 MX_OK);
    model_config_rope_inv_freq(&c, scaled);
    for (int i = 0; i < 4; i++) CHECK(scaled[i] > 0 && isfinite(scaled[i]));
}

static void test_errors(void) {
    ModelConfig c;
    const char *bad = "{\"hidden_size\": 64,";
    CHECK_STATUS(model_config_parse(bad, strlen(bad), &c), MX_ERR_CONFIG_JSON);
    CHECK_STATUS(model_config_parse("[1]", 3, &c), MX_ERR_CONFIG_JSON);
    CHECK_STATUS(model_config_parse("{}\0\0", 4, &c), MX_ERR_CONFIG_JSON);        // NUL is not whitespace
    CHECK_STATUS(model_config_parse("{\"a\xff\": 1}", 9, &c), MX_ERR_CONFIG_JSON); // invalid UTF-8
    const char *dup = "{\"hidden_size\": 64, \"hidden_size\": 32}";
    CHECK_STATUS(model_config_parse(dup, strlen(dup), &c), MX_ERR_CONFIG_JSON);

    CHECK_STATUS(parse_with("architectures", "[\"GPT2LMHeadModel\"]", &c), MX_ERR_CONFIG_ARCH);
    CHECK_STATUS(parse_with("architectures", NULL, &c), MX_ERR_CONFIG_ARCH);
    CHECK_STATUS(parse_with("hidden_act", "\"gelu\"", &c), MX_ERR_CONFIG_ARCH);
    CHECK_STATUS(parse_with("attention_bias", "true", &c), MX_ERR_CONFIG_ARCH);

    CHECK_STATUS(parse_with("num_attention_heads", "0", &c), MX_ERR_CONFIG_HEADS);
    CHECK_STATUS(parse_with("num_attention_heads", "-8", &c), MX_ERR_CONFIG_HEADS);
    CHECK_STATUS(parse_with("num_attention_heads", "\"8\"", &c), MX_ERR_CONFIG_HEADS);
    CHECK_STATUS(parse_with("num_key_value_heads", "0", &c), MX_ERR_CONFIG_KV_HEADS);
    CHECK_STATUS(parse_with("num_key_value_heads", "3", &c), MX_ERR_CONFIG_KV_HEADS);
    CHECK_STATUS(parse_with("hidden_size", "60", &c), MX_ERR_CONFIG_HIDDEN_HEADS);
    CHECK_STATUS(parse_with("rms_norm_eps", "0", &c), MX_ERR_CONFIG_EPS);
    CHECK_STATUS(parse_with("rms_norm_eps", "-1e-5", &c), MX_ERR_CONFIG_EPS);
    CHECK_STATUS(parse_with("rms_norm_eps", "1e-300", &c), MX_ERR_CONFIG_EPS); // underflows float
    CHECK_STATUS(parse_with("rms_norm_eps", "1e999", &c), MX_ERR_CONFIG_EPS);  // cJSON gives inf
    CHECK_STATUS(parse_with("rms_norm_eps", "1e105", &c), MX_ERR_CONFIG_EPS);  // finite, but inf as float (fuzz)
    CHECK_STATUS(parse_with("rms_norm_eps", "3.5e38", &c), MX_ERR_CONFIG_EPS); // just above FLT_MAX
    CHECK_STATUS(parse_with("rope_theta", "0", &c), MX_ERR_CONFIG_ROPE_THETA);
    CHECK_STATUS(parse_with("rope_theta", "\"big\"", &c), MX_ERR_CONFIG_ROPE_THETA);
    CHECK_STATUS(parse_with("rope_theta", "5e104", &c), MX_ERR_CONFIG_ROPE_THETA); // found by fuzz_config
    CHECK_STATUS(parse_with("rope_theta", "0.5", &c), MX_ERR_CONFIG_ROPE_THETA);

    CHECK_STATUS(parse_with("hidden_size", NULL, &c), MX_ERR_CONFIG_FIELD);
    CHECK_STATUS(parse_with("vocab_size", "300.5", &c), MX_ERR_CONFIG_FIELD);
    CHECK_STATUS(parse_with("vocab_size", "1e20", &c), MX_ERR_CONFIG_FIELD);
    CHECK_STATUS(parse_with("vocab_size", "0", &c), MX_ERR_CONFIG_SIZE);
    CHECK_STATUS(parse_with("num_hidden_layers", "100000", &c), MX_ERR_CONFIG_SIZE);
    CHECK_STATUS(parse_with("head_dim", "7", &c), MX_ERR_CONFIG_SIZE);
    CHECK_STATUS(parse_with("eos_token_id", "300", &c), MX_ERR_CONFIG_FIELD);
    CHECK_STATUS(parse_with("eos_token_id", "[1, \"x\"]", &c), MX_ERR_CONFIG_FIELD);
    CHECK_STATUS(parse_with("bos_token_id", "-1", &c), MX_ERR_CONFIG_FIELD);
    CHECK_STATUS(parse_with("torch_dtype", "\"float8\"", &c), MX_ERR_CONFIG_FIELD);
    CHECK_STATUS(parse_with("tie_word_embeddings", "1", &c), MX_ERR_CONFIG_FIELD);
}

static void test_kv_bytes(void) {
    ModelConfig c;
    CHECK_STATUS(parse_with(NULL, NULL, &c), MX_OK);
    uint64_t b;
    CHECK_STATUS(model_config_kv_bytes_per_token(&c, 2, &b), MX_OK);
    CHECK(b == 2ull * 2 * 2 * 8 * 2);
    // Sizes each within bounds whose product overflows 64 bits.
    c.n_layers = 4096;
    c.n_kv_heads = 1 << 20;
    c.head_dim = 1 << 20;
    CHECK_STATUS(model_config_kv_bytes_per_token(&c, 1ull << 30, &b), MX_ERR_CONFIG_KV_OVERFLOW);
}

static void test_mistral_window(void) {
    ModelConfig c;
    CHECK_STATUS(parse_with("architectures", "[\"MistralForCausalLM\"]", &c), MX_OK);
    CHECK(c.sliding_window == 0);
    const char *j = "{\"architectures\": [\"MistralForCausalLM\"], \"hidden_size\": 64, \"intermediate_size\": 128,"
                    " \"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"vocab_size\": 10,"
                    " \"max_position_embeddings\": 128, \"sliding_window\": 16}";
    CHECK_STATUS(model_config_parse(j, strlen(j), &c), MX_OK);
    CHECK(c.sliding_window == 16);
}

static void test_load_missing(void) {
    ModelConfig c;
    CHECK_STATUS(model_config_load("/nonexistent-dir", &c), MX_ERR_CONFIG_JSON);
}

int main(void) {
    RUN(test_valid);
    RUN(test_rope_scaling);
    RUN(test_errors);
    RUN(test_kv_bytes);
    RUN(test_mistral_window);
    RUN(test_load_missing);
    return test_exit();
}
