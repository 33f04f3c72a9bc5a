#pragma once
// WeightReader: one weight of a WeightMatrix (GGUF bytes in S::memory_space) as f32, decoded inside a
// kernel from the block layouts of kernels/weight_matrix.hpp (BlockQ8_0, BlockQ4_1). Shared by the Kokkos
// gemm, embedding and dequantize, so the three give the same value for the same weight.

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>

#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

namespace piecrust::kokkos_detail {

/// Captured by value into kernels: the type, the bytes and the row pitch.
struct WeightReader {
  WeightType type = WeightType::f32;
  unsigned char const* bytes = nullptr;  // [rows][row_bytes]
  std::size_t row_bytes = 0;

  explicit WeightReader(WeightMatrix const& w)
      : type(w.type), bytes(static_cast<unsigned char const*>(w.data)), row_bytes(w.row_bytes()) {}

  /// Little-endian u16 at byte offset `at` (GGUF is little-endian; block scales are only 2-byte aligned).
  KOKKOS_INLINE_FUNCTION static std::uint16_t u16(unsigned char const* p, std::size_t at) {
    return static_cast<std::uint16_t>(p[at] | (static_cast<unsigned>(p[at + 1]) << 8));
  }

  /// W[r][c] as f32: exact for f32 / f16 / bf16 and q8_0 (an f16 scale times an 8-bit integer fits f32's
  /// mantissa); q4_1's d * q + m rounds once.
  KOKKOS_INLINE_FUNCTION float operator()(std::size_t r, std::size_t c) const {
    unsigned char const* const row = bytes + r * row_bytes;
    switch (type) {
      case WeightType::f32: return reinterpret_cast<float const*>(row)[c];  // rows are 4-byte aligned (cols * 4 bytes)
      case WeightType::f16: return Half::to_float(u16(row, 2 * c));
      case WeightType::bf16: return BFloat16::to_float(u16(row, 2 * c));
      case WeightType::q8_0: {
        unsigned char const* const blk = row + (c / BlockQ8_0::block_size) * sizeof(BlockQ8_0);
        auto const q = static_cast<std::int8_t>(blk[2 + c % BlockQ8_0::block_size]);
        return Half::to_float(u16(blk, 0)) * static_cast<float>(q);
      }
      case WeightType::q4_1: {
        unsigned char const* const blk = row + (c / BlockQ4_1::block_size) * sizeof(BlockQ4_1);
        std::size_t const j = c % BlockQ4_1::block_size;
        unsigned const byte = blk[4 + j % (BlockQ4_1::block_size / 2)];
        unsigned const q = j < BlockQ4_1::block_size / 2 ? (byte & 0x0fu) : (byte >> 4);
        return Half::to_float(u16(blk, 0)) * static_cast<float>(q) + Half::to_float(u16(blk, 2));
      }
    }
    return 0.0f;  // unreachable: WeightMatrix::validate ran first
  }
};

}  // namespace piecrust::kokkos_detail
