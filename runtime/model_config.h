// config.json of a Llama-family model (LlamaForCausalLM, MistralForCausalLM), validated.
#ifndef MYRMEX_MODEL_CONFIG_H
#define MYRMEX_MODEL_CONFIG_H

#include <stdint.h>

#include "../kernels/dtype.h"
#include "status.h"

#define MX_MAX_EOS 16

typedef enum RopeScaling { ROPE_SCALING_NONE, ROPE_SCALING_LINEAR, ROPE_SCALING_LLAMA3 } RopeScaling;

typedef struct ModelConfig {
    char architecture[64];   // "LlamaForCausalLM" | "MistralForCausalLM"
    int hidden_size;         // D
    int intermediate_size;   // I
    int n_layers;
    int n_heads;             // Hq
    int n_kv_heads;          // Hkv, divides Hq
    int head_dim;            // Dh; config's head_dim when present, else D / Hq
    int vocab_size;          // V
    int max_positions;       // max_position_embeddings
    int sliding_window;      // 0 = none (Mistral may set it)
    float rms_norm_eps;
    double rope_theta;
    RopeScaling rope_scaling;
    double rope_factor;              // linear and llama3
    double rope_low_freq_factor;     // llama3
    double rope_high_freq_factor;    // llama3
    int rope_original_max_positions; // llama3
    int tie_word_embeddings;
    int bos_id;                      // -1 when absent
    int eos_ids[MX_MAX_EOS];
    int n_eos;
    DType dtype;                     // torch_dtype (or dtype); f32 when absent
} ModelConfig;

// Parses and validates a config.json text of len bytes. On error returns MX_ERR_CONFIG_*.
MxStatus model_config_parse(const char *json, size_t len, ModelConfig *out);
// Reads DIR/config.json and parses it.
MxStatus model_config_load(const char *dir, ModelConfig *out);

// rope inverse frequencies with rope_scaling folded in: inv_freq[Dh / 2].
void model_config_rope_inv_freq(const ModelConfig *c, float *inv_freq);

// Bytes of K and V per token over all layers for a KV element size; MX_ERR_CONFIG_KV_OVERFLOW
// when it does not fit in 64 bits.
MxStatus model_config_kv_bytes_per_token(const ModelConfig *c, size_t elem_size, uint64_t *out);

#endif
