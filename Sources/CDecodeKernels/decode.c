// See oreo_decode.h. Separate mul and add (never fused), as the Swift dequantization computes them.
#pragma STDC FP_CONTRACT OFF
#include "oreo_decode.h"
#if defined(__AVX512F__) && defined(__F16C__)
#include <immintrin.h>

/// Swift's `hsum`: halves added down to two lanes, then lane 0 + lane 1.
static inline float hsum16(__m512 v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(c) + _mm_cvtss_f32(_mm_shuffle_ps(c, c, 1));
}

int oreo_block_dot_rows4(const uint8_t *rows, size_t rowBytes, int blocks, int format, const float *x, float out[4]) {
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 iota8 = _mm512_sub_ps(iota, _mm512_set1_ps(8));
    const __m128i low = _mm_set1_epi8(0x0F);
    const int minimum = format == 1;
    const int bytes = format == 2 ? 34 : minimum ? 20 : 18, qOffset = minimum ? 4 : 2;
    __m512 a[4], c[4];
    for (int j = 0; j < 4; j++) { a[j] = _mm512_setzero_ps(); c[j] = _mm512_setzero_ps(); }
    if (format == 2) {
        // Q8_0: w = d * q
        for (int b = 0; b < blocks; b++) {
            __m512 xlo = _mm512_loadu_ps(x + 32 * b), xhi = _mm512_loadu_ps(x + 32 * b + 16);
            for (int j = 0; j < 4; j++) {
                const uint8_t *blk = rows + j * rowBytes + (size_t)b * 34;
                uint16_t dh;
                __builtin_memcpy(&dh, blk, 2);
                __m512 d = _mm512_set1_ps(_cvtsh_ss(dh));
                __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 2))));
                __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 18))));
                a[j] = _mm512_fmadd_ps(_mm512_mul_ps(d, lo), xlo, a[j]);
                c[j] = _mm512_fmadd_ps(_mm512_mul_ps(d, hi), xhi, c[j]);
            }
        }
        for (int j = 0; j < 4; j++) out[j] = hsum16(_mm512_add_ps(a[j], c[j]));
        return 1;
    }
    for (int b = 0; b < blocks; b++) {
        __m512 xlo = _mm512_loadu_ps(x + 32 * b), xhi = _mm512_loadu_ps(x + 32 * b + 16);
        for (int j = 0; j < 4; j++) {
            const uint8_t *blk = rows + j * rowBytes + (size_t)b * bytes;
            uint16_t dh, mh = 0;
            __builtin_memcpy(&dh, blk, 2);
            if (minimum) __builtin_memcpy(&mh, blk + 2, 2);
            __m512 d = _mm512_set1_ps(_cvtsh_ss(dh));
            // the 16 values this block's nibbles can take: d * q + m (Q4_1) or d * (q - 8) (Q4_0)
            __m512 table = minimum ? _mm512_add_ps(_mm512_mul_ps(iota, d), _mm512_set1_ps(_cvtsh_ss(mh)))
                                   : _mm512_mul_ps(d, iota8);
            __m128i q = _mm_loadu_si128((const __m128i *)(blk + qOffset));
            __m512i lo = _mm512_cvtepu8_epi32(_mm_and_si128(q, low));
            __m512i hi = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q, 4), low));
            a[j] = _mm512_fmadd_ps(_mm512_permutexvar_ps(lo, table), xlo, a[j]);
            c[j] = _mm512_fmadd_ps(_mm512_permutexvar_ps(hi, table), xhi, c[j]);
        }
    }
    for (int j = 0; j < 4; j++) out[j] = hsum16(_mm512_add_ps(a[j], c[j]));
    return 1;
}
#else
int oreo_block_dot_rows4(const uint8_t *rows, size_t rowBytes, int blocks, int format, const float *x, float out[4]) {
    (void)rows; (void)rowBytes; (void)blocks; (void)format; (void)x; (void)out;
    return 0;
}
#endif

void oreo_round_bf16(const float *src, uint16_t *dst, size_t n) {
    const uint32_t *u = (const uint32_t *)src;
    for (size_t i = 0; i < n; i++) {
        uint32_t x = u[i];
        uint32_t r = (x + 0x7FFFu + ((x >> 16) & 1u)) >> 16;
        uint32_t nan = (x >> 16) | 0x40u;
        dst[i] = (uint16_t)((x & 0x7FFFFFFFu) > 0x7F800000u ? nan : r);
    }
}
