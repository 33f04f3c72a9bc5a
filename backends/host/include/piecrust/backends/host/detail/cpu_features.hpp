#pragma once
// The host CPU's vector features, read once with cpuid (and xgetbv: the OS must save the wider registers),
// never from compile flags: the project compiles for baseline x86-64 and its SIMD code lives in functions
// with target attributes, so a binary built on one machine picks the right code on another.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "piecrust/core/error.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define PIECRUST_HOST_X86 1
#else
#define PIECRUST_HOST_X86 0
#endif

namespace piecrust::detail {

/// Code paths of the host's kernels, slowest first. avx512 means F, BW, VL, DQ and VNNI (Cascade Lake, Ice
/// Lake, Zen 4 and later; earlier AVX-512 CPUs run the avx2 code); BF16 is a separate feature (CpuFeatures).
enum class SimdLevel : int { scalar = 0, avx2 = 1, avx512 = 2 };

[[nodiscard]] constexpr char const* simd_level_name(SimdLevel l) noexcept {
  switch (l) {
    case SimdLevel::avx2: return "avx2";
    case SimdLevel::avx512: return "avx512";
    default: return "scalar";
  }
}

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;                                // with OS support of ymm state
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;    // with OS support of zmm state
  bool avx512vnni = false, avx512bf16 = false;                                   // (vpdpbusd, vdpbf16ps)
};

[[nodiscard]] inline CpuFeatures detect_cpu_features() noexcept {
  CpuFeatures f;
#if PIECRUST_HOST_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return f;
  bool const osxsave = (c & (1u << 27)) != 0, avx = (c & (1u << 28)) != 0;
  if (!osxsave || !avx) return f;
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  std::uint64_t const xcr0 = (std::uint64_t{hi} << 32) | lo;
  bool const ymm = (xcr0 & 0x6u) == 0x6u;     // SSE and AVX state
  bool const zmm = (xcr0 & 0xe6u) == 0xe6u;   // plus opmask and both halves of zmm
  if (!ymm) return f;
  f.fma = (c & (1u << 12)) != 0;
  f.f16c = (c & (1u << 29)) != 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return f;
  f.avx2 = (b & (1u << 5)) != 0;
  if (zmm) {
    f.avx512f = (b & (1u << 16)) != 0;
    f.avx512dq = (b & (1u << 17)) != 0;
    f.avx512bw = (b & (1u << 30)) != 0;
    f.avx512vl = (b & (1u << 31)) != 0;
    f.avx512vnni = (c & (1u << 11)) != 0;
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d) != 0) f.avx512bf16 = (a & (1u << 5)) != 0;
  }
#endif
  return f;
}

[[nodiscard]] inline CpuFeatures const& cpu_features() noexcept {
  static CpuFeatures const f = detect_cpu_features();
  return f;
}

/// Whether this CPU can run the code of level l.
[[nodiscard]] inline bool cpu_supports(SimdLevel l) noexcept {
  CpuFeatures const& f = cpu_features();
  bool const avx2 = f.avx2 && f.fma && f.f16c;
  switch (l) {
    case SimdLevel::scalar: return true;
    case SimdLevel::avx2: return avx2;
    case SimdLevel::avx512: return avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni;
  }
  return false;
}

/// The highest level the environment allows: PIECRUST_HOST_SIMD = scalar | avx2 | avx512 caps the host's
/// code paths for the whole process (to compare paths on one machine, or to reproduce another machine's
/// results); unset or empty: no cap. Read once.
[[nodiscard]] inline SimdLevel simd_level_cap() {
  static SimdLevel const cap = [] {
    char const* v = std::getenv("PIECRUST_HOST_SIMD");
    if (v == nullptr || *v == '\0') return SimdLevel::avx512;
    for (SimdLevel l : {SimdLevel::scalar, SimdLevel::avx2, SimdLevel::avx512}) {
      if (std::strcmp(v, simd_level_name(l)) == 0) return l;
    }
    fail<InvalidArgument>("PIECRUST_HOST_SIMD: '", v, "' is not one of scalar, avx2, avx512");
  }();
  return cap;
}

/// The levels this CPU runs under the environment's cap, slowest first (tests run every one of them).
[[nodiscard]] inline std::vector<SimdLevel> cpu_simd_levels() {
  std::vector<SimdLevel> out;
  for (SimdLevel l : {SimdLevel::scalar, SimdLevel::avx2, SimdLevel::avx512}) {
    if (cpu_supports(l) && l <= simd_level_cap()) out.push_back(l);
  }
  return out;
}

}  // namespace piecrust::detail
