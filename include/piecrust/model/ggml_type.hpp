#pragma once
// GgmlType: the element types a GGUF tensor can hold, with their block geometry.
//
// Numbers and block layouts follow ggml (ggml/include/ggml.h `enum ggml_type`, ggml/src/ggml-common.h
// `block_q4_0`, `block_q4_1`, `block_q8_0`, ...). A quantized row of n elements is n / block_elems blocks
// of block_bytes bytes each; n must be a multiple of block_elems.

#include <piecrust/core/error.hpp>
#include <piecrust/kernels/weight_type.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

namespace piecrust {

enum class GgmlType : std::uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q8_1 = 9,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  q8_k = 15,
  iq4_nl = 20,
  iq4_xs = 23,
  i8 = 24,
  i16 = 25,
  i32 = 26,
  i64 = 27,
  f64 = 28,
  bf16 = 30,
};

/// Geometry of one ggml type: `block_elems` elements are stored in `block_bytes` bytes.
struct GgmlTypeTraits {
  std::string_view name;
  std::uint32_t block_elems = 0;
  std::uint32_t block_bytes = 0;
};

/// Traits of a raw type number, or nullopt for a number this reader does not know.
[[nodiscard]] constexpr std::optional<GgmlTypeTraits> ggml_type_traits(std::uint32_t raw) noexcept {
  // Sizes: ggml/src/ggml-common.h (QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0 = QK8_1 = 32, QK_K = 256).
  switch (raw) {
    case 0: return GgmlTypeTraits{"F32", 1, 4};
    case 1: return GgmlTypeTraits{"F16", 1, 2};
    case 2: return GgmlTypeTraits{"Q4_0", 32, 2 + 16};
    case 3: return GgmlTypeTraits{"Q4_1", 32, 2 + 2 + 16};
    case 6: return GgmlTypeTraits{"Q5_0", 32, 2 + 4 + 16};
    case 7: return GgmlTypeTraits{"Q5_1", 32, 2 + 2 + 4 + 16};
    case 8: return GgmlTypeTraits{"Q8_0", 32, 2 + 32};
    case 9: return GgmlTypeTraits{"Q8_1", 32, 2 + 2 + 32};
    case 10: return GgmlTypeTraits{"Q2_K", 256, 256 / 16 + 256 / 4 + 2 + 2};
    case 11: return GgmlTypeTraits{"Q3_K", 256, 256 / 8 + 256 / 4 + 12 + 2};
    case 12: return GgmlTypeTraits{"Q4_K", 256, 2 + 2 + 12 + 256 / 2};
    case 13: return GgmlTypeTraits{"Q5_K", 256, 2 + 2 + 12 + 256 / 8 + 256 / 2};
    case 14: return GgmlTypeTraits{"Q6_K", 256, 256 / 2 + 256 / 4 + 256 / 16 + 2};
    case 15: return GgmlTypeTraits{"Q8_K", 256, 4 + 256 + 256 / 16 * 2};
    // Types no kernel computes with: known here only so that a file holding them parses and is refused by
    // name (LlamaWeights: Unsupported) and can be inspected.
    case 16: return GgmlTypeTraits{"IQ2_XXS", 256, 2 + 256 / 4};
    case 17: return GgmlTypeTraits{"IQ2_XS", 256, 2 + 256 / 4 + 256 / 32};
    case 18: return GgmlTypeTraits{"IQ3_XXS", 256, 2 + 3 * 256 / 8};
    case 19: return GgmlTypeTraits{"IQ1_S", 256, 2 + 256 / 8 + 256 / 16};
    case 20: return GgmlTypeTraits{"IQ4_NL", 32, 2 + 16};
    case 21: return GgmlTypeTraits{"IQ3_S", 256, 2 + 256 / 4 + 256 / 32 + 256 / 8 + 256 / 64};
    case 22: return GgmlTypeTraits{"IQ2_S", 256, 2 + 256 / 4 + 256 / 32 + 256 / 32};
    case 23: return GgmlTypeTraits{"IQ4_XS", 256, 2 + 2 + 256 / 64 + 256 / 2};
    case 24: return GgmlTypeTraits{"I8", 1, 1};
    case 25: return GgmlTypeTraits{"I16", 1, 2};
    case 26: return GgmlTypeTraits{"I32", 1, 4};
    case 27: return GgmlTypeTraits{"I64", 1, 8};
    case 28: return GgmlTypeTraits{"F64", 1, 8};
    case 29: return GgmlTypeTraits{"IQ1_M", 256, 256 / 8 + 256 / 16 + 256 / 32};
    case 30: return GgmlTypeTraits{"BF16", 1, 2};
    case 34: return GgmlTypeTraits{"TQ1_0", 256, (256 - 4 * 256 / 64) / 5 + 256 / 64 + 2};
    case 35: return GgmlTypeTraits{"TQ2_0", 256, 256 / 4 + 2};
    case 39: return GgmlTypeTraits{"MXFP4", 32, 1 + 16};
    default: return std::nullopt;
  }
}

/// Traits of a known type (every enumerator is known).
[[nodiscard]] constexpr GgmlTypeTraits ggml_type_traits(GgmlType type) noexcept {
  return *ggml_type_traits(static_cast<std::uint32_t>(type));
}

[[nodiscard]] constexpr std::string_view ggml_type_name(GgmlType type) noexcept { return ggml_type_traits(type).name; }

namespace detail {
// The kernels' geometry of every WeightType agrees with the file reader's.
[[nodiscard]] constexpr bool weight_geometry_agrees() noexcept {
  for (WeightType t : all_weight_types) {
    auto const g = ggml_type_traits(static_cast<std::uint32_t>(t));
    if (!g || g->block_elems != weight_block_size(t) || g->block_bytes != weight_block_bytes(t)) return false;
  }
  return true;
}
static_assert(weight_geometry_agrees());
}  // namespace detail

namespace detail {

/// a * b, or nullopt when the product does not fit in 64 bits (sizes read from files are multiplied only so).
[[nodiscard]] constexpr std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) noexcept {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return std::nullopt;
  return a * b;
}

/// a + b, or nullopt when the sum does not fit in 64 bits.
[[nodiscard]] constexpr std::optional<std::uint64_t> checked_add(std::uint64_t a, std::uint64_t b) noexcept {
  if (b > std::numeric_limits<std::uint64_t>::max() - a) return std::nullopt;
  return a + b;
}

/// Bytes of n elements of a type, or nullopt when n is not a multiple of the block size or the size overflows.
[[nodiscard]] constexpr std::optional<std::uint64_t> ggml_bytes(GgmlTypeTraits const& t, std::uint64_t n) noexcept {
  if (n % t.block_elems != 0) return std::nullopt;
  return checked_mul(n / t.block_elems, t.block_bytes);
}

}  // namespace detail

/// Bytes of a row of n elements. Throws InvalidArgument when n is not a multiple of the block size or the
/// byte count does not fit in size_t.
[[nodiscard]] inline std::size_t ggml_row_bytes(GgmlType type, std::size_t n) {
  auto const t = ggml_type_traits(type);
  if (n % t.block_elems != 0) {
    detail::fail<InvalidArgument>("ggml_row_bytes: n = ", n, " is not a multiple of the ", t.name, " block size ",
                                  t.block_elems);
  }
  auto const bytes = detail::ggml_bytes(t, n);
  if (!bytes || *bytes > std::numeric_limits<std::size_t>::max()) {
    detail::fail<InvalidArgument>("ggml_row_bytes: n = ", n, " elements of ", t.name, " overflow the byte count");
  }
  return static_cast<std::size_t>(*bytes);
}

}  // namespace piecrust
