#pragma once
// Small device functions of the attention kernels: 16-byte vector loads and their conversion to f32,
// the split-state merge, and (CUDA only) the cp.async / ldmatrix / mma.sync wrappers of the prefill kernel.
// Portable parts use only what CUDA and HIP share; the PTX wrappers are compiled only by nvcc
// (PIECRUST_ATTENTION_TENSOR_CORES), and HIP and the host emulation of the tests take the CUDA-core path
// for every token.

#include <cstddef>
#include <cstdint>

#include "piecrust/config.hpp"

#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/kernels/bfloat16.hpp"

#if defined(__CUDACC__) && !defined(__HIPCC__) && !defined(PIECRUST_GPU_EMULATION)
#define PIECRUST_ATTENTION_TENSOR_CORES 1
#else
#define PIECRUST_ATTENTION_TENSOR_CORES 0
#endif

namespace piecrust::cuda::attention::detail {

/// log2(e): scores are kept in the log2 domain so the softmax uses exp2 (one MUFU.EX2 instruction), as
/// FlashAttention-2 and FlashInfer do; lse is converted back to natural log on output.
inline constexpr float log2e = 1.4426950408889634f;
inline constexpr float ln2 = 0.6931471805599453f;

/// Elements of T in one 16-byte vector.
template <class T>
inline constexpr int vec_elems = 16 / static_cast<int>(sizeof(T));

#if PIECRUST_DEVICE_COMPILE
/// One 16-byte vector of K or V; `valid` false gives zeros (no load issued).
__device__ __forceinline__ uint4 load16(void const* p, bool valid) {
  if (!valid) return make_uint4(0u, 0u, 0u, 0u);
  return *static_cast<uint4 const*>(p);
}

/// The 16 bytes as f32: 8 bfloat16 (high halves of f32) or 4 floats.
template <class T>
__device__ __forceinline__ void unpack(uint4 const& r, float* out) {
  unsigned const w[4] = {r.x, r.y, r.z, r.w};
  if constexpr (sizeof(T) == 2) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = __uint_as_float(w[i] << 16);
      out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) out[i] = __uint_as_float(w[i]);
  }
}

#endif  // PIECRUST_DEVICE_COMPILE

/// Raw logit -> log2-domain score: scale (folded with log2e when there is no cap), or Gemma 2's soft-cap
/// cap * tanh(s * scale / cap) (FlashInfer's logits_soft_cap), then * log2e.
struct ScoreTransform {
  float scale_log2;  // sm_scale * log2e (no cap) or sm_scale / cap (cap)
  float cap_log2;    // cap * log2e, or 0 = no cap
#if PIECRUST_DEVICE_COMPILE
  __device__ __forceinline__ float operator()(float raw) const {
    return cap_log2 > 0.0f ? cap_log2 * tanhf(raw * scale_log2) : raw * scale_log2;
  }
#endif
};

inline ScoreTransform make_transform(float sm_scale, float cap) {
  return cap > 0.0f ? ScoreTransform{sm_scale / cap, cap * log2e} : ScoreTransform{sm_scale * log2e, 0.0f};
}

#if PIECRUST_DEVICE_COMPILE
/// Merges partial states (normalized output + natural-log lse) of one (token, head), merge_states'
/// formula: s = log sum e^{s_i}, v = sum e^{s_i - s} v_i. States with lse = -inf contribute nothing.
///   v: state i at v + i * v_stride, s: state i at s[i * s_stride]; out [head_dim]
__device__ __forceinline__ void merge_one(float const* v, std::size_t v_stride, float const* s, std::size_t s_stride,
                                          unsigned states, unsigned head_dim, float* out, float* s_out, unsigned lane,
                                          unsigned lanes) {
  float m = -INFINITY;
  for (unsigned i = 0; i < states; ++i) m = fmaxf(m, s[i * s_stride]);
  if (m == -INFINITY) {
    for (unsigned d = lane; d < head_dim; d += lanes) out[d] = 0.0f;
    if (lane == 0) *s_out = -INFINITY;
    return;
  }
  float sum = 0.0f;
  for (unsigned i = 0; i < states; ++i) sum += expf(s[i * s_stride] - m);
  float const inv = 1.0f / sum;
  for (unsigned d = lane; d < head_dim; d += lanes) {
    float acc = 0.0f;
    for (unsigned i = 0; i < states; ++i) acc += expf(s[i * s_stride] - m) * v[i * v_stride + d];
    out[d] = acc * inv;
  }
  if (lane == 0) *s_out = m + logf(sum);
}

#if PIECRUST_ATTENTION_TENSOR_CORES
/// cp.async of 16 bytes global -> shared, L2 only (.cg); src_bytes 0 zero-fills (PTX ISA, cp.async).
__device__ __forceinline__ void cp_async16(void* smem, void const* gmem, bool valid) {
  unsigned const s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  int const n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/// ldmatrix .x4: four 8x8 b16 matrices; lane i gives the row address of matrix i / 8, row i % 8.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], void const* smem) {
  unsigned const s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], void const* smem) {
  unsigned const s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

/// d += a * b, m16n8k16, bf16 inputs, f32 accumulators (PTX ISA, mma.sync.aligned.m16n8k16.row.col).
__device__ __forceinline__ void mma_bf16(float (&d)[4], unsigned const (&a)[4], unsigned b0, unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

/// Two floats -> packed bf16x2 (low half = lo), round to nearest even (BFloat16's rounding).
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
#if PIECRUST_ATTENTION_TENSOR_CORES
  unsigned r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));  // a -> upper half, b -> lower
  return r;
#else
  auto round = [](float f) -> unsigned {
    unsigned const u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;  // quiet NaN
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  };
  return round(lo) | (round(hi) << 16);
#endif
}

#endif  // PIECRUST_DEVICE_COMPILE

}  // namespace piecrust::cuda::attention::detail
