// Prefill attention: the tensor-core tile kernel (cuda_attention.cuh) in its row-parallel
// configuration. Used when a step's packed rows (max_q_len * GQA group) exceed one 16-row
// tile: chunked prefill, whole prompts, and mixed prefill + decode batches.
//
// Configuration per head dim (WN = 1: every warp owns 16 packed rows and sees every key
// of a tile; two K/V stages of BN keys; Q in registers aliasing stage 1 for Dh <= 128):
//
//   Dh    warps  rows/CTA  BN  Q       shared memory   CTAs/SM aimed at
//   16    4      64        64  regs    12 KiB          2+
//   32    4      64        64  regs    20 KiB          2+
//   64    8      128       64  regs    36 KiB          1+
//   96    8      128       64  regs    52 KiB          1
//   128   8      128       64  regs    68 KiB          1 (o 64 + q 32 + s 32 f32 regs/thread)
//   256   4      64        32  shared  99 KiB          2 on sm_90 (fits sm_86/89's 99 KiB)
//
// 128-row tiles for Dh >= 64: each K/V tile brought into shared memory feeds 128 rows, which
// keeps L2 -> SM traffic near 2.7 TB/s at 350 TFLOP/s (64-row tiles would double it).
// Small head dims (the test models) use 64-row tiles so short sequences waste less.
// KV splits are used only when the grid would leave SMs idle (a short chunk over a long
// context, e.g. batch 1 with 512 queries and 32K keys).
#include "cuda_attention.cuh"

int attn_prefill_launch(AttnArgs a, const AttnPlan &plan, CudaQueue *q) {
    switch (a.head_dim) {
    case 16: return attn_run_tiled<16, 4, 1, 64, true, 2>(a, plan, q);
    case 32: return attn_run_tiled<32, 4, 1, 64, true, 2>(a, plan, q);
    case 64: return attn_run_tiled<64, 8, 1, 64, true, 1>(a, plan, q);
    case 96: return attn_run_tiled<96, 8, 1, 64, true, 1>(a, plan, q);
    case 128: return attn_run_tiled<128, 8, 1, 64, true, 1>(a, plan, q);
    case 256: return attn_run_tiled<256, 4, 1, 32, false, 2>(a, plan, q);
    default: return OPS_ERR_UNSUPPORTED;
    }
}
