// Running a few requests to completion together on one model: each step batches every
// unfinished request (prefill chunks and single-token decodes) into one varlen forward.
// This is the simple driver the fixture tests use, since it can return the logits of every
// position (logits_out); everything else runs on the engine (myrmex.h: scheduler,
// preemption, prefix cache), `myrmex generate` included.
#ifndef MYRMEX_GENERATE_H
#define MYRMEX_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "model.h"
#include "sampler.h"

typedef enum FinishReason { FINISH_NONE, FINISH_LENGTH, FINISH_EOS } FinishReason; // EOS: an eos or stop id

typedef struct GenRequest {
    // Inputs.
    const int32_t *prompt; // [n_prompt] token ids in [0, V)
    int n_prompt;          // >= 1
    int max_tokens;        // >= 1; prompt + max_tokens must fit max_position_embeddings
    SamplingParams sampling;
    int top_logprobs;      // K: record the K most likely ids per generated token (0 = off)
    bool ignore_eos;       // keep going past the config's eos ids and stop_ids
    const int32_t *stop_ids; // [n_stop_ids] more ids that end the request (e.g. the tokenizer's eos)
    int n_stop_ids;
    float *logits_out;     // optional [n_prompt + max_tokens - 1, V]: row i = logits after token i
    // Outputs, allocated by generate_run and released by gen_request_clear.
    int32_t *output;       // [n_output] generated ids
    int n_output;
    int32_t *top_ids;      // [n_output, K]
    float *top_logprobs_out; // [n_output, K] natural-log probabilities
    FinishReason finish;
} GenRequest;

typedef struct GenStats {
    long prefill_tokens, decode_tokens;
    double prefill_seconds, decode_seconds; // wall time of steps with / without prompt tokens
    int steps;
} GenStats;

// Runs reqs[0..n) to completion. Errors: MX_ERR_ARG (empty prompt, bad sampling params,
// max_tokens < 1), MX_ERR_TOKEN, MX_ERR_CONTEXT, MX_ERR_KV_FULL (the pool cannot hold all
// requests at once), forward errors. On error the outputs are released and the pool is
// back to its state before the call.
MxStatus generate_run(Model *m, GenRequest *reqs, int n, GenStats *stats);
void gen_request_clear(GenRequest *r);

// KV pages (ModelOptions.kv_blocks) for n requests to run together with blocks of
// block_size tokens: their blocks plus the pool's null block.
int generate_blocks_needed(const GenRequest *reqs, int n, int block_size);

#endif
