#pragma once
// Small portable SIMD helpers for the host kernels, on GCC/Clang vector extensions of 16 bytes
// (4 floats): the x86-64 and AArch64 baseline, so no ABI change whatever -m flags a consumer uses
// (32-byte vector arguments trigger GCC's -Wpsabi without -mavx). Loops keep several independent
// accumulators for instruction-level parallelism. Every n here is a multiple of 16 (head_dim 64/128,
// GGUF blocks of 32) unless stated.

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "piecrust/kernels/bfloat16.hpp"

namespace piecrust::host::detail {

typedef float V4f __attribute__((vector_size(16)));
typedef std::uint32_t V4u __attribute__((vector_size(16)));
typedef std::uint16_t V4u16 __attribute__((vector_size(8)));
typedef std::int8_t V4i8 __attribute__((vector_size(4)));
typedef std::uint8_t V4u8 __attribute__((vector_size(4)));

inline V4f splat(float x) noexcept { return V4f{x, x, x, x}; }

inline V4f load4(float const* p) noexcept {
  V4f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline V4f load4(BFloat16 const* p) noexcept {
  V4u16 h;
  std::memcpy(&h, p, sizeof h);
  V4u const w = __builtin_convertvector(h, V4u) << 16;  // bf16 is the top half of an f32
  V4f v;
  std::memcpy(&v, &w, sizeof v);
  return v;
}
inline V4f load4(std::int8_t const* p) noexcept {
  V4i8 b;
  std::memcpy(&b, p, sizeof b);
  return __builtin_convertvector(b, V4f);
}
inline void store4(float* p, V4f v) noexcept { std::memcpy(p, &v, sizeof v); }

inline float hsum(V4f v) noexcept { return (v[0] + v[2]) + (v[1] + v[3]); }

/// sum a[i] * b[i], n a multiple of 16.
template <class A, class B>
inline float dot(A const* a, B const* b, std::size_t n) noexcept {
  V4f acc0 = splat(0.0f), acc1 = splat(0.0f), acc2 = splat(0.0f), acc3 = splat(0.0f);
  for (std::size_t i = 0; i < n; i += 16) {
    acc0 += load4(a + i) * load4(b + i);
    acc1 += load4(a + i + 4) * load4(b + i + 4);
    acc2 += load4(a + i + 8) * load4(b + i + 8);
    acc3 += load4(a + i + 12) * load4(b + i + 12);
  }
  return hsum((acc0 + acc1) + (acc2 + acc3));
}

/// y[i] += a * x[i], n a multiple of 4.
template <class X>
inline void axpy(float* y, float a, X const* x, std::size_t n) noexcept {
  V4f const va = splat(a);
  for (std::size_t i = 0; i < n; i += 4) store4(y + i, load4(y + i) + va * load4(x + i));
}

}  // namespace piecrust::host::detail
