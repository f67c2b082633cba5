// Named model shapes (see model_presets.h), written as config.json text and parsed by
// model_config_parse so a preset passes exactly the checks a real checkpoint does.
#include "model_presets.h"

#include <stdio.h>
#include <string.h>

typedef struct Preset {
    const char *name;
    int hidden, intermediate, layers, heads, kv_heads, vocab, max_positions;
    double rope_theta;
    int tie;
} Preset;

// From the checkpoints' config.json files (meta-llama/Llama-2-*-hf, Meta-Llama-3-*).
static const Preset presets[] = {
    {"llama-2-7b", 4096, 11008, 32, 32, 32, 32000, 4096, 10000.0, 0},
    {"llama-2-13b", 5120, 13824, 40, 40, 40, 32000, 4096, 10000.0, 0},
    {"llama-2-70b", 8192, 28672, 80, 64, 8, 32000, 4096, 10000.0, 0},
    {"llama-3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 500000.0, 0},
    {"llama-3-70b", 8192, 28672, 80, 64, 8, 128256, 8192, 500000.0, 0},
    {"small-100m", 768, 2048, 12, 12, 4, 32000, 2048, 10000.0, 1},
};

MxStatus model_preset_config(const char *name, ModelConfig *out) {
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) {
        const Preset *p = &presets[i];
        if (strcmp(name, p->name) != 0) continue;
        char json[1024];
        int n = snprintf(json, sizeof json,
                         "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": %d, \"intermediate_size\": %d, "
                         "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
                         "\"vocab_size\": %d, \"max_position_embeddings\": %d, \"rms_norm_eps\": 1e-5, "
                         "\"rope_theta\": %.1f, \"tie_word_embeddings\": %s, \"bos_token_id\": 1, "
                         "\"eos_token_id\": 2, \"torch_dtype\": \"bfloat16\"}",
                         p->hidden, p->intermediate, p->layers, p->heads, p->kv_heads, p->vocab, p->max_positions,
                         p->rope_theta, p->tie ? "true" : "false");
        return model_config_parse(json, (size_t)n, out);
    }
    return mx_fail(MX_ERR_ARG, "unknown model preset '%s' (one of %s)", name, model_preset_list());
}

const char *model_preset_list(void) {
    return "llama-2-7b, llama-2-13b, llama-2-70b, llama-3-8b, llama-3-70b, small-100m";
}
