// Private to the ops_ref backend: the ops defined outside ops_ref.c, exact weight-row
// conversion to f32, and small validation helpers. Not included by the runtime.
#ifndef MYRMEX_OPS_REF_INTERNAL_H
#define MYRMEX_OPS_REF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dtype.h"
#include "kernels.h"

// Work (in multiply-adds or elements) below which an op runs on one thread: starting the
// OpenMP team costs more than it saves.
#define OPS_REF_PAR_MIN 32768

int ops_ref_gemm(const GemmParams *p, void *queue);        // ops_ref_gemm.c
int ops_ref_lm_head(const LmHeadParams *p, void *queue);   // ops_ref_gemm.c
int ops_ref_attention(const AttentionParams *p, void *queue);  // ops_ref_attention.c
int ops_ref_sample(const SampleParams *p, void *queue);      // ops_ref_sample.c

static inline int ops_ref_dtype_ok(DType t) { return t == DT_F32 || t == DT_F16 || t == DT_BF16; }

// f16 -> f32 without branches, so the row loop below vectorises; bit-identical to
// f16_to_f32 in dtype.h (the tests check all 65536 patterns through the embedding op).
static inline float ops_ref_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t em = h & 0x7fffu;                   // exponent and mantissa
    uint32_t normal = (em << 13) + 0x38000000u;  // rebias the exponent: 15 -> 127
    uint32_t special = (em << 13) | 0x7f800000u; // inf and NaN keep their payload
    uint32_t sub = f32_to_bits((float)(int32_t)em * 0x1p-24f); // zero, subnormals: exact
    uint32_t is_special = 0u - (uint32_t)(em >= 0x7c00u); // all ones or zero: no branches
    uint32_t is_sub = 0u - (uint32_t)(em < 0x0400u);
    uint32_t bits = (special & is_special) | (sub & is_sub) | (normal & ~(is_special | is_sub));
    return f32_from_bits(sign | bits);
}

// dst[i] = weight element (first + i) of src as f32, for i in [0, n). Exact.
static inline void ops_ref_load_row(float *restrict dst, const void *src, DType t, size_t first,
                                    size_t n) {
    if (t == DT_F32) {
        memcpy(dst, (const float *)src + first, n * sizeof(float));
    } else if (t == DT_BF16) {
        const uint16_t *s = (const uint16_t *)src + first;
#pragma omp simd
        for (size_t i = 0; i < n; i++) dst[i] = f32_from_bits((uint32_t)s[i] << 16);
    } else {
        const uint16_t *s = (const uint16_t *)src + first;
#pragma omp simd
        for (size_t i = 0; i < n; i++) dst[i] = ops_ref_f16_to_f32(s[i]);
    }
}

#endif
