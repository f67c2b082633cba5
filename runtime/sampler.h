// Choosing the next token from f32 logits: greedy, temperature, top-k, top-p, each request
// with its own seeded RNG so a (seed, logits) sequence always gives the same tokens.
#ifndef MYRMEX_SAMPLER_H
#define MYRMEX_SAMPLER_H

#include <stdint.h>

#include "status.h"

typedef struct SamplingParams {
    float temperature; // 0 = greedy (argmax, lowest id on ties); > 0 scales logits
    int top_k;         // 0 = whole vocabulary
    float top_p;       // (0, 1]; 1 = no nucleus cut
    uint64_t seed;
} SamplingParams;

// Greedy, top_k 0, top_p 1, seed 0.
SamplingParams sampling_default(void);
// MX_ERR_ARG when temperature < 0 or not finite, top_k < 0, or top_p not in (0, 1].
MxStatus sampling_check(const SamplingParams *p);

typedef struct Rng {
    uint64_t state;
} Rng;

void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_next(Rng *r);
// Uniform in [0, 1), 24 random bits.
float rng_uniform(Rng *r);

// Scratch space for sampling over a vocabulary of V ids.
typedef struct Sampler {
    int vocab;
    float *probs;  // [V]
    int32_t *ids;  // [V]
} Sampler;

MxStatus sampler_init(Sampler *s, int vocab);
void sampler_destroy(Sampler *s);

// Picks a token from logits[V]. Draws exactly one number from rng unless greedy.
int32_t sampler_sample(Sampler *s, const float *logits, const SamplingParams *p, Rng *rng);

// The k most likely ids of log_softmax(logits), most likely first (ties: lower id first),
// with their natural-log probabilities. k is clamped to V; returns the count written.
int sampler_top_logprobs(Sampler *s, const float *logits, int k, int32_t *ids, float *logprobs);
// The natural-log probability of id (in [0, V)) under log_softmax(logits): the same value
// sampler_top_logprobs reports for it.
float sampler_logprob(const Sampler *s, const float *logits, int32_t id);

#endif
