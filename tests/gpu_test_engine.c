// The engine tests of test_engine.c on the CUDA backend. Skipped (77) without a CUDA device.
//
// bf16 activations round differently for different batch shapes (a decode of one sequence
// and a decode of eight take different GEMM paths), so batched and alone runs may part
// where two tokens are nearly tied: tokens must agree up to the first step whose top-2
// logprob gap is below GAP_MIN (twice the 0.25 logit tolerance of gpu_test_fixtures.c),
// and logprobs are not compared bit for bit.
#define ENGINE_DEVICE "cuda"
#define GAP_MIN 0.5
#define EXACT_LOGPROBS 0
#include "test_engine.c"
