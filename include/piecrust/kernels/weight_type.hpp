#pragma once
// WeightType: the storage types kernels compute with, and their block geometry.
//
// Values equal ggml's type ids (ggml.h `enum ggml_type`) so a GGUF reader passes its tensor type through.
// A row of n weights is n / block_elems blocks of block_bytes bytes. Layouts: the GGUF specification and
// ggml-common.h (block_q4_0 ... block_iq4_xs); decoding: kernels/quant_blocks.hpp.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "piecrust/config.hpp"

namespace piecrust {

enum class WeightType : std::uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  iq4_nl = 20,
  iq4_xs = 23,
  bf16 = 30,
};

/// Every WeightType, in id order (tests and tools iterate over it).
inline constexpr std::array<WeightType, 15> all_weight_types{
    WeightType::f32,  WeightType::f16,  WeightType::q4_0, WeightType::q4_1,   WeightType::q5_0,
    WeightType::q5_1, WeightType::q8_0, WeightType::q2_k, WeightType::q3_k,   WeightType::q4_k,
    WeightType::q5_k, WeightType::q6_k, WeightType::iq4_nl, WeightType::iq4_xs, WeightType::bf16};

/// "f32, f16, q4_0, ...": the list an Unsupported error names.
inline constexpr std::string_view supported_weight_types =
    "f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs";

/// The type with this ggml id, or nullopt when kernels cannot compute with it.
[[nodiscard]] constexpr std::optional<WeightType> weight_type_from_id(std::uint32_t id) noexcept {
  for (WeightType t : all_weight_types) {
    if (static_cast<std::uint32_t>(t) == id) return t;
  }
  return std::nullopt;
}

[[nodiscard]] constexpr std::string_view weight_type_name(WeightType t) noexcept {
  switch (t) {
    case WeightType::f32: return "f32";
    case WeightType::f16: return "f16";
    case WeightType::q4_0: return "q4_0";
    case WeightType::q4_1: return "q4_1";
    case WeightType::q5_0: return "q5_0";
    case WeightType::q5_1: return "q5_1";
    case WeightType::q8_0: return "q8_0";
    case WeightType::q2_k: return "q2_k";
    case WeightType::q3_k: return "q3_k";
    case WeightType::q4_k: return "q4_k";
    case WeightType::q5_k: return "q5_k";
    case WeightType::q6_k: return "q6_k";
    case WeightType::iq4_nl: return "iq4_nl";
    case WeightType::iq4_xs: return "iq4_xs";
    case WeightType::bf16: return "bf16";
  }
  return "unknown";
}

/// Weights per block: 1 for the plain types, 32 for the legacy quants and IQ4_NL, 256 (QK_K) for the
/// K-quants and IQ4_XS.
[[nodiscard]] PIECRUST_HOST_DEVICE constexpr std::size_t weight_block_size(WeightType t) noexcept {
  switch (t) {
    case WeightType::f32:
    case WeightType::f16:
    case WeightType::bf16: return 1;
    case WeightType::q4_0:
    case WeightType::q4_1:
    case WeightType::q5_0:
    case WeightType::q5_1:
    case WeightType::q8_0:
    case WeightType::iq4_nl: return 32;
    case WeightType::q2_k:
    case WeightType::q3_k:
    case WeightType::q4_k:
    case WeightType::q5_k:
    case WeightType::q6_k:
    case WeightType::iq4_xs: return 256;
  }
  return 0;
}

/// Bytes per block (ggml-common.h sizes; f16 scales are 2 bytes).
[[nodiscard]] PIECRUST_HOST_DEVICE constexpr std::size_t weight_block_bytes(WeightType t) noexcept {
  switch (t) {
    case WeightType::f32: return 4;
    case WeightType::f16:
    case WeightType::bf16: return 2;
    case WeightType::q4_0: return 2 + 16;            // d, 32 nibbles
    case WeightType::q4_1: return 2 + 2 + 16;        // d, m, 32 nibbles
    case WeightType::q5_0: return 2 + 4 + 16;        // d, 32 high bits, 32 nibbles
    case WeightType::q5_1: return 2 + 2 + 4 + 16;    // d, m, 32 high bits, 32 nibbles
    case WeightType::q8_0: return 2 + 32;            // d, 32 bytes
    case WeightType::q2_k: return 16 + 64 + 2 + 2;   // 16 scale/min bytes, 256 x 2 bits, d, dmin
    case WeightType::q3_k: return 32 + 64 + 12 + 2;  // 256 high bits, 256 x 2 bits, 16 x 6-bit scales, d
    case WeightType::q4_k: return 2 + 2 + 12 + 128;  // d, dmin, 8 x 6-bit scale and min, 256 nibbles
    case WeightType::q5_k: return 2 + 2 + 12 + 32 + 128;  // as Q4_K plus 256 high bits
    case WeightType::q6_k: return 128 + 64 + 16 + 2;      // 256 nibbles, 256 x 2 high bits, 16 x i8 scales, d
    case WeightType::iq4_nl: return 2 + 16;               // d, 32 nibbles into a 16-value table
    case WeightType::iq4_xs: return 2 + 2 + 4 + 128;      // d, 8 x 2 high scale bits, 8 x 4 low, 256 nibbles
  }
  return 0;
}

/// Whether a type is stored in blocks with scales (everything but f32, f16 and bf16).
[[nodiscard]] PIECRUST_HOST_DEVICE constexpr bool is_quantized(WeightType t) noexcept {
  return weight_block_size(t) > 1;
}

}  // namespace piecrust
