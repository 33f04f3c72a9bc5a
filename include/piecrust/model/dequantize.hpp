#pragma once
// dequantize_row: converts one row of a GGUF tensor of any type kernels compute with (kernels/weight_type.hpp)
// to f32, by the one definition of each block layout (kernels/quant_blocks.hpp).

#include <piecrust/core/error.hpp>
#include <piecrust/kernels/quant_blocks.hpp>
#include <piecrust/model/ggml_type.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace piecrust {

/// Decodes `dst.size()` elements from `src` (exactly ggml_row_bytes(type, dst.size()) bytes).
/// Throws InvalidArgument on a size mismatch, Unsupported for a type with no decoder here.
inline void dequantize_row(GgmlType type, std::span<std::byte const> src, std::span<float> dst) {
  std::size_t const n = dst.size();
  if (src.size() != ggml_row_bytes(type, n)) {
    detail::fail<InvalidArgument>("dequantize_row: src has ", src.size(), " bytes, a ", ggml_type_name(type),
                                  " row of ", n, " elements needs ", ggml_row_bytes(type, n));
  }
  auto const wt = weight_type_from_id(static_cast<std::uint32_t>(type));
  if (!wt) {
    detail::fail<Unsupported>("dequantize_row: tensor type ", ggml_type_name(type), " (id ", static_cast<std::uint32_t>(type),
                              ") has no decoder (supported: ", supported_weight_types, ")");
  }
  quant::dequantize_row(*wt, reinterpret_cast<std::uint8_t const*>(src.data()), dst.data(), n);
}

}  // namespace piecrust
