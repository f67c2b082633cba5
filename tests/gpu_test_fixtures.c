// The fixture models of test_fixtures.c on the CUDA backend: the same prompts, layouts and
// transformers references, with bf16 tolerances. Skipped (77) without a CUDA device.
//
// Tolerance: the CUDA path converts the fp32 fixture weights to bf16 (relative error 2^-9
// per weight) and keeps activations in bf16 (2^-9 per store, about a dozen stores per
// layer on 2-layer models), so a logit of magnitude up to ~15 moves by a few times
// 15 * 2^-9 * sqrt(number of roundings) ~ 0.1; 0.25 absolute + 2% relative allows that
// while a wrong rope, mask, norm or page moves logits by far more (whole units).
// Greedy tokens must agree wherever the reference's top-2 gap exceeds twice that absolute
// tolerance.
#define FIXTURE_DEVICE "cuda"
#define ATOL 0.25
#define RTOL 0.02
#define GAP_MIN 0.5
#include "test_fixtures.c"
