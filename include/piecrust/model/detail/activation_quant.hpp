#pragma once
// round_to_q8_blocks: what llama.cpp's CPU matmul does to activations before a Q4_1 / Q8_0 dot product.
// Each block of 32 values becomes d * q with d = amax / 127 stored as f16 and q = round(x / d) in
// [-127, 127] (ggml/src/ggml-cpu quantize_row_q8_0 / quantize_row_q8_1: the quants use the f32 d, the
// product uses the f16 d).

#include <piecrust/model/detail/half.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>

namespace piecrust::detail {

/// dst[i] = f16(d_b) * round(src[i] / d_b) per block b of 32; src.size() must be a multiple of 32
/// (a trailing partial block is copied unchanged).
inline void round_to_q8_blocks(std::span<float const> src, std::span<float> dst) noexcept {
  std::size_t const n = src.size();
  std::size_t b = 0;
  for (; b + 32 <= n; b += 32) {
    float amax = 0.0f;
    for (std::size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(src[b + j]));
    float const d = amax / 127.0f;
    float const id = d != 0.0f ? 1.0f / d : 0.0f;
    float const dh = f16_to_f32(f32_to_f16(d));
    for (std::size_t j = 0; j < 32; ++j) dst[b + j] = dh * std::nearbyint(src[b + j] * id);
  }
  for (; b < n; ++b) dst[b] = src[b];
}

}  // namespace piecrust::detail
