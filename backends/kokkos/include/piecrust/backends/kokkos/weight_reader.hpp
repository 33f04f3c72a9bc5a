#pragma once
// WeightReader: one weight of a WeightMatrix (GGUF bytes in S::memory_space) as f32, decoded inside a
// kernel by kernels/quant_blocks.hpp. Shared by the Kokkos gemm, embedding and dequantize, so the three give
// the same value for the same weight.

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>

#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/kernels/quant_blocks.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

namespace piecrust::kokkos_detail {

/// Captured by value into kernels: the type, the bytes and the row pitch.
struct WeightReader {
  WeightType type = WeightType::f32;
  unsigned char const* bytes = nullptr;  // [rows][row_bytes]
  std::size_t row_bytes = 0;

  explicit WeightReader(WeightMatrix const& w)
      : type(w.type), bytes(static_cast<unsigned char const*>(w.data)), row_bytes(w.row_bytes()) {}

  /// W[r][c] as f32, decoded by the one definition of each layout (kernels/quant_blocks.hpp).
  KOKKOS_INLINE_FUNCTION float operator()(std::size_t r, std::size_t c) const {
    return quant::dequantize_element(type, bytes + r * row_bytes, c);
  }
};

}  // namespace piecrust::kokkos_detail
