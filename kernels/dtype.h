// Element types shared by the kernels and the runtime, and exact scalar conversions.
// bf16 and f16 are stored as uint16_t bit patterns; conversions to f32 are exact,
// conversions from f32 round to nearest even (NaN stays NaN).
#ifndef MYRMEX_DTYPE_H
#define MYRMEX_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum DType { DT_F32 = 0, DT_F16 = 1, DT_BF16 = 2 } DType;

static inline size_t dtype_size(DType t) { return t == DT_F32 ? 4 : 2; }

static inline const char *dtype_name(DType t) {
    return t == DT_F32 ? "f32" : t == DT_F16 ? "f16" : "bf16";
}

static inline float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                          // round to nearest even
    return (uint16_t)(u >> 16);
}

static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (mant << 13)); // inf / NaN
    if (exp == 0) {
        if (mant == 0) return f32_from_bits(sign);
        // subnormal: value = mant * 2^-24
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

static inline uint16_t f32_to_f16(float f) {
    uint32_t u = f32_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;           // NaN
    if (a >= 0x477ff000u) return sign | 0x7c00u;          // rounds to >= 65520: inf
    if (a < 0x38800000u) {                                // below f16's smallest normal
        if (a < 0x33000000u) return sign;                 // rounds to zero
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e;                        // 14..24
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return sign | (uint16_t)r;
    }
    a += 0xfffu + ((a >> 13) & 1u);                       // round to nearest even
    return sign | (uint16_t)((a - 0x38000000u) >> 13);
}

// Reads element i of a weight array of type t as f32.
static inline float dtype_load(const void *p, DType t, size_t i) {
    switch (t) {
    case DT_F32: return ((const float *)p)[i];
    case DT_F16: return f16_to_f32(((const uint16_t *)p)[i]);
    default: return bf16_to_f32(((const uint16_t *)p)[i]);
    }
}

#endif
