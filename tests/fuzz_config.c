// libFuzzer target for config.json parsing (model_config_parse) and what it derives.
// Built with clang under ASan + UBSan (cmake -DMYRMEX_FUZZ=ON): 20,000 inputs in the test
// suite (CTest label fuzz), longer with scripts/fuzz.sh [SECONDS], which also holds the seeds.
//
// Every accepted config must satisfy the invariants the loader relies on.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    ModelConfig c;
    if (model_config_parse(text, size, &c) == MX_OK) {
        if (c.n_heads <= 0 || c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads || c.head_dim <= 0 ||
            c.head_dim % 2 || c.hidden_size <= 0 || c.vocab_size <= 0 || c.n_layers <= 0 ||
            !(c.rms_norm_eps > 0) || !(c.rope_theta > 0) || c.n_eos < 0 || c.n_eos > MX_MAX_EOS)
            abort();
        // Finite and in range, as RELIABILITY.md ("config.json") asks.
        if (!isfinite(c.rms_norm_eps) || !isfinite(c.rope_theta) || c.intermediate_size <= 0 ||
            c.max_positions <= 0 || c.sliding_window < 0 || c.sliding_window >= c.max_positions ||
            c.bos_id < -1 || c.bos_id >= c.vocab_size)
            abort();
        for (int i = 0; i < c.n_eos; i++)
            if (c.eos_ids[i] < 0 || c.eos_ids[i] >= c.vocab_size) abort();
        if (c.rope_scaling != ROPE_SCALING_NONE && !(c.rope_factor >= 1 && c.rope_factor <= 1024)) abort();
        if (c.rope_scaling == ROPE_SCALING_LLAMA3 &&
            (!(c.rope_low_freq_factor > 0) || !(c.rope_high_freq_factor > c.rope_low_freq_factor) ||
             c.rope_original_max_positions <= 0))
            abort();
        uint64_t kv_bytes;
        if (model_config_kv_bytes_per_token(&c, 4, &kv_bytes) != MX_OK || kv_bytes == 0) abort();
        float inv_freq[512];
        model_config_rope_inv_freq(&c, inv_freq);
        for (int i = 0; i < c.head_dim / 2; i++)
            if (!(inv_freq[i] > 0) || !isfinite(inv_freq[i])) abort();
    }
    free(text);
    return 0;
}
