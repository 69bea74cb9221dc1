// Decoding kernels Swift cannot spell: software prefetch, and block dot products that need AVX-512 register
// table lookups (vpermps) and conversions Swift's SIMD types only reach through out-of-line calls. Compiled for the host CPU; without AVX-512 the dot products report that they did
// nothing and the Swift kernel runs instead.
#pragma once
#include <stddef.h>
#include <stdint.h>

/// Asks the CPU to start loading the cache line at `p` (for reading, into all cache levels).
static inline void oreo_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/// Dot products of 4 consecutive rows of a ggml block matrix (format 0: Q4_0, 1: Q4_1, 2: Q8_0) with one f32
/// vector x of 32 * blocks floats, summed exactly as Swift's `smallBatchLinearRows` sums one row of f32 weights
/// (16 lanes, block halves in two accumulators, the same horizontal reduction), with every weight the value
/// `GGUFFile.floats` gives it: out[j] is bit-identical to the f32 kernel on the dequantized rows.
/// Rows are `rowBytes` apart. Returns 1, or 0 (out untouched) when the CPU path is not compiled in.
int oreo_block_dot_rows4(const uint8_t *rows, size_t rowBytes, int blocks, int format, const float *x, float out[4]);

// f32 -> bf16, round to nearest with ties to even, NaN kept (quiet, with its sign), subnormals rounded like the
// rest (unlike vcvtneps2bf16, which flushes them). A plain loop the compiler vectorizes for the host CPU; Swift's
// SIMD spelling of the same bit arithmetic ran several times slower. Shapes: src [n], dst [n].
void oreo_round_bf16(const float *src, uint16_t *dst, size_t n);
