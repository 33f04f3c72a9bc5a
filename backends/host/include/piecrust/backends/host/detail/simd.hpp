#pragma once
// Small portable SIMD helpers for the host kernels, on GCC/Clang vector extensions. The width follows
// the translation unit's target: 8 floats (32 bytes) when AVX is enabled (-mavx2, -march=native),
// else 4 floats (16 bytes, the x86-64 / AArch64 baseline). Never wider than the target: a 32-byte
// vector argument without AVX changes the ABI (GCC -Wpsabi). Loops keep several independent
// accumulators for instruction-level parallelism.

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "piecrust/kernels/bfloat16.hpp"

namespace piecrust::host::detail {

#if defined(__AVX__)
inline constexpr std::size_t lanes = 8;
#else
inline constexpr std::size_t lanes = 4;
#endif

typedef float Vf __attribute__((vector_size(lanes * 4)));
typedef std::uint32_t Vu __attribute__((vector_size(lanes * 4)));
typedef std::uint16_t Vu16 __attribute__((vector_size(lanes * 2)));
typedef std::int8_t Vi8 __attribute__((vector_size(lanes)));
typedef std::uint8_t Vu8 __attribute__((vector_size(lanes)));

inline Vf splat(float x) noexcept { return Vf{} + x; }  // a scalar operand broadcasts

inline Vf load(float const* p) noexcept {
  Vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline Vf load(BFloat16 const* p) noexcept {
  Vu16 h;
  std::memcpy(&h, p, sizeof h);
  Vu const w = __builtin_convertvector(h, Vu) << 16;  // bf16 is the top half of an f32
  Vf v;
  std::memcpy(&v, &w, sizeof v);
  return v;
}
inline Vf load(std::int8_t const* p) noexcept {
  Vi8 b;
  std::memcpy(&b, p, sizeof b);
  return __builtin_convertvector(b, Vf);
}
/// `lanes` bytes of packed nibbles: their low nibbles and their high nibbles as floats.
inline void load_nibbles(std::byte const* p, Vf& low, Vf& high) noexcept {
  Vu8 b;
  std::memcpy(&b, p, sizeof b);
  low = __builtin_convertvector(b & 0x0f, Vf);
  high = __builtin_convertvector(b >> 4, Vf);
}
inline void store(float* p, Vf v) noexcept { std::memcpy(p, &v, sizeof v); }

inline float hsum(Vf v) noexcept {
  float s = 0.0f;
  for (std::size_t i = 0; i < lanes; ++i) s += v[i];
  return s;
}

/// exp(x) per lane for x in [-87.3, 88.7] (inputs outside are clamped), relative error ~2e-7.
/// Cody-Waite range reduction x = k ln2 + r and a degree-6 polynomial for e^r, as Cephes' expf
/// (S. Moshier) and Pommier's sse_mathfun; 2^k is built in the exponent bits.
inline Vf exp_approx(Vf x) noexcept {
  Vf const hi = splat(88.37626f), lo = splat(-87.33654f);  // keep 2^k a normal float
  x = x > hi ? hi : x;
  x = x < lo ? lo : x;
  Vf fx = x * 1.44269504088896341f + 0.5f;
  typedef std::int32_t Vi __attribute__((vector_size(lanes * 4)));
  Vi k = __builtin_convertvector(fx, Vi);                        // truncation toward zero
  Vf kf = __builtin_convertvector(k, Vf);
  Vi const adjust = kf > fx;                                        // -1 where truncation rounded up
  k += adjust;
  kf = __builtin_convertvector(k, Vf);
  Vf const r = x - kf * 0.693359375f + kf * 2.12194440e-4f;
  Vf y = splat(1.9875691500e-4f);
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  Vi const bits = (k + 127) << 23;
  Vf scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

/// sum a[i] * b[i], n a multiple of lanes.
template <class A, class B>
inline float dot(A const* a, B const* b, std::size_t n) noexcept {
  Vf acc0 = splat(0.0f), acc1 = splat(0.0f), acc2 = splat(0.0f), acc3 = splat(0.0f);
  std::size_t i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    acc0 += load(a + i) * load(b + i);
    acc1 += load(a + i + lanes) * load(b + i + lanes);
    acc2 += load(a + i + 2 * lanes) * load(b + i + 2 * lanes);
    acc3 += load(a + i + 3 * lanes) * load(b + i + 3 * lanes);
  }
  for (; i < n; i += lanes) acc0 += load(a + i) * load(b + i);
  return hsum((acc0 + acc1) + (acc2 + acc3));
}

/// y[i] += a * x[i], n a multiple of lanes.
template <class X>
inline void axpy(float* y, float a, X const* x, std::size_t n) noexcept {
  Vf const va = splat(a);
  for (std::size_t i = 0; i < n; i += lanes) store(y + i, load(y + i) + va * load(x + i));
}

}  // namespace piecrust::host::detail
