#pragma once
// Device decoding of GGUF weight rows (f32, f16, bf16, Q8_0, Q4_1), one element at a time.
// Block layouts: ggml-common.h block_q8_0 (f16 d, 32 x int8) and block_q4_1 (f16 d, f16 m, 16 bytes of
// nibbles: weight j in the low nibble of byte j, weight j + 16 in the high nibble), as in
// piecrust/kernels/weight_matrix.hpp.

#include <cstddef>
#include <cstdint>

#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

#if PIECRUST_DEVICE_COMPILE
namespace piecrust::gpu::detail {

__device__ __forceinline__ float load_half(unsigned char const* p) {
  return Half::to_float(static_cast<std::uint16_t>(p[0] | (p[1] << 8)));
}

/// Element c of a row of `type` stored at `row`.
__device__ __forceinline__ float decode(WeightType type, unsigned char const* row, std::size_t c) {
  switch (type) {
    case WeightType::f32:
      return reinterpret_cast<float const*>(row)[c];
    case WeightType::f16:
      return Half::to_float(reinterpret_cast<std::uint16_t const*>(row)[c]);
    case WeightType::bf16:
      return BFloat16::to_float(reinterpret_cast<std::uint16_t const*>(row)[c]);
    case WeightType::q8_0: {
      unsigned char const* blk = row + (c / 32) * sizeof(BlockQ8_0);
      return load_half(blk) * static_cast<float>(static_cast<std::int8_t>(blk[2 + c % 32]));
    }
    case WeightType::q4_1: {
      unsigned char const* blk = row + (c / 32) * sizeof(BlockQ4_1);
      unsigned const j = static_cast<unsigned>(c % 32);
      unsigned const byte = blk[4 + (j % 16)];
      unsigned const q = j < 16 ? (byte & 0x0fu) : (byte >> 4);
      // d * q + m, as ggml's dequantize_row_q4_1 (a multiply, then an add: no fused rounding here).
      return __fadd_rn(__fmul_rn(load_half(blk), static_cast<float>(q)), load_half(blk + 2));
    }
  }
  return 0.0f;
}

}  // namespace piecrust::gpu::detail
#endif
