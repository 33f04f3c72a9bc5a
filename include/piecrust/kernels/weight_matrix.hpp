#pragma once
// WeightMatrix: a read-only view of a 2-D weight tensor in one of GGUF's storage types (kernels/weight_type.hpp).

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "piecrust/core/error.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/weight_type.hpp"

namespace piecrust {

/// GGUF Q8_0 block: 32 weights, w[i] = d * qs[i]. Source: ggml-common.h, block_q8_0 (34 bytes).
struct BlockQ8_0 {
  static constexpr std::size_t block_size = 32;
  std::uint16_t d;             // f16 scale
  std::int8_t qs[block_size];  // quants
};
static_assert(sizeof(BlockQ8_0) == 34);

/// GGUF Q4_1 block: 32 weights, w[i] = d * q[i] + m, q in 0..15; byte j holds weight j in its low
/// nibble and weight j + 16 in its high nibble. Source: ggml-common.h block_q4_1 and
/// dequantize_row_q4_1 in ggml-quants.c (20 bytes).
struct BlockQ4_1 {
  static constexpr std::size_t block_size = 32;
  std::uint16_t d;                 // f16 scale
  std::uint16_t m;                 // f16 minimum
  std::uint8_t qs[block_size / 2];  // nibbles
};
static_assert(sizeof(BlockQ4_1) == 20);

/// A row-major [rows][cols] weight matrix in GGUF order: rows are output features, cols the input
/// features (GGUF's ne[0] = cols, ne[1] = rows), each row stored as cols / block_size blocks.
/// Non-owning: data must outlive every kernel call that reads it.
struct WeightMatrix {
  WeightType type = WeightType::f32;
  void const* data = nullptr;  // [rows][cols / block_size] blocks
  std::size_t rows = 0;
  std::size_t cols = 0;

  [[nodiscard]] constexpr std::size_t row_bytes() const noexcept {
    return cols / weight_block_size(type) * weight_block_bytes(type);
  }
  [[nodiscard]] constexpr std::size_t size_bytes() const noexcept { return rows * row_bytes(); }
  [[nodiscard]] std::byte const* row(std::size_t r) const noexcept {
    return static_cast<std::byte const*>(data) + r * row_bytes();
  }

  /// Throws Unsupported for an unknown type, InvalidArgument for cols not a multiple of the block size
  /// or a null pointer.
  void validate(std::string_view op) const {
    if (!weight_type_from_id(static_cast<std::uint32_t>(type))) {
      detail::fail<Unsupported>(op, ": weight type = ", static_cast<std::uint32_t>(type), " is not supported (supported: ",
                                supported_weight_types, ")");
    }
    if (cols % weight_block_size(type) != 0) {
      detail::fail<InvalidArgument>(op, ": weight cols = ", cols, " is not a multiple of the ",
                                    weight_type_name(type), " block size ", weight_block_size(type));
    }
    if (data == nullptr && rows * cols != 0) {
      detail::fail<InvalidArgument>(op, ": weight data is null for a ", rows, " x ", cols, " matrix");
    }
  }
};

}  // namespace piecrust
