// The random weight generator shared by tests and benchmarks (tests/support/random_quant_blocks.hpp), and the
// quant::f16_fields accessor it relies on: blocks decode to finite, moderate, varied weights.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <set>
#include <vector>

#include "piecrust/kernels/quant_blocks.hpp"
#include "random_quant_blocks.hpp"

using namespace piecrust;

namespace {

std::vector<float> decode(WeightMatrix const& w, std::size_t r) {
  std::vector<float> out(w.cols);  // [cols]
  quant::dequantize_row(w.type, reinterpret_cast<std::uint8_t const*>(w.row(r)), out.data(), w.cols);
  return out;
}

// The largest |weight| a block can hold with |d|, |m| < 2^-7: Q6_K's 8-bit scale 128 x code 32 (and IQ4_XS's
// 32 x 127) stay under 2^-7 * 4096 = 32; plain types are drawn in [-1/8, 1/8).
float max_magnitude(WeightType t) { return is_quantized(t) ? 32.0f : 0.125f; }

}  // namespace

TEST_CASE("random_weights: every type decodes to finite, bounded, varied weights", "[random_quant_blocks]") {
  for (WeightType t : all_weight_types) {
    CAPTURE(weight_type_name(t));
    auto const w = testing::random_weights(t, 3, 512, 41);
    REQUIRE(w.bytes.size() == w.matrix.size_bytes());
    for (std::size_t r = 0; r < 3; ++r) {
      auto const row = decode(w.matrix, r);
      std::set<float> distinct;
      for (float x : row) {
        REQUIRE(std::isfinite(x));
        REQUIRE(std::fabs(x) <= max_magnitude(t));
        distinct.insert(x);
      }
      REQUIRE(distinct.size() >= 8);  // random codes and scales, not one repeated value
    }
  }
}

TEST_CASE("random_weights: the f16 fields hold moderate finite scales", "[random_quant_blocks]") {
  for (WeightType t : all_weight_types) {
    if (!is_quantized(t)) continue;
    CAPTURE(weight_type_name(t));
    auto const w = testing::random_weights(t, 2, 1024, 42);
    auto const f = quant::f16_fields(t);
    REQUIRE(f.count >= 1);
    auto const* bytes = reinterpret_cast<std::uint8_t const*>(w.bytes.data());
    for (std::size_t b = 0; b < w.bytes.size() / weight_block_bytes(t); ++b) {
      for (std::size_t j = 0; j < f.count; ++j) {
        float const h = std::fabs(quant::load_f16(bytes + b * weight_block_bytes(t) + f.at[j]));
        REQUIRE(h >= 0x1p-10f);
        REQUIRE(h < 0x1p-7f);
      }
    }
  }
}

TEST_CASE("quant::f16_fields names the scales the decoder reads", "[random_quant_blocks]") {
  // Zeroing a block's f16 fields zeroes every weight of that block (all scales and minimums are products of
  // them), and leaves the next block as it was.
  for (WeightType t : all_weight_types) {
    if (!is_quantized(t)) continue;
    CAPTURE(weight_type_name(t));
    auto w = testing::random_weights(t, 1, 512, 43);
    auto const before = decode(w.matrix, 0);
    auto const f = quant::f16_fields(t);
    for (std::size_t j = 0; j < f.count; ++j) {
      w.bytes[f.at[j]] = std::byte{0};
      w.bytes[f.at[j] + 1] = std::byte{0};
    }
    auto const after = decode(w.matrix, 0);
    std::size_t const n = weight_block_size(t);
    for (std::size_t i = 0; i < n; ++i) REQUIRE(after[i] == 0.0f);
    for (std::size_t i = n; i < 512; ++i) REQUIRE(after[i] == before[i]);
  }
}

TEST_CASE("random_weights: a seed gives one matrix, another seed another", "[random_quant_blocks]") {
  for (WeightType t : all_weight_types) {
    CAPTURE(weight_type_name(t));
    auto const a = testing::random_weights(t, 4, 256, 7);
    auto const b = testing::random_weights(t, 4, 256, 7);
    auto const c = testing::random_weights(t, 4, 256, 8);
    REQUIRE(a.bytes == b.bytes);
    REQUIRE(a.bytes != c.bytes);
    REQUIRE(a.matrix.data == a.bytes.data());
  }
}
