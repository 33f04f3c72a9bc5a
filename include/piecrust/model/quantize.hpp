#pragma once
// quantize_row: f32 -> Q8_0 / Q4_1 / F16 / BF16 rows, as ggml's reference quantizers
// (ggml/src/ggml-quants.c quantize_row_q8_0_ref, quantize_row_q4_1_ref). Used to build test models and
// to emulate llama.cpp's on-the-fly activation quantization.

#include <piecrust/core/error.hpp>
#include <piecrust/kernels/detail/half.hpp>
#include <piecrust/model/ggml_type.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace piecrust {

/// Encodes src (a multiple of the block size) into dst (exactly ggml_row_bytes(type, src.size()) bytes).
inline void quantize_row(GgmlType type, std::span<float const> src, std::span<std::byte> dst) {
  std::size_t const n = src.size();
  if (dst.size() != ggml_row_bytes(type, n)) {
    detail::fail<InvalidArgument>("quantize_row: dst has ", dst.size(), " bytes, a ", ggml_type_name(type), " row of ", n,
                                  " elements needs ", ggml_row_bytes(type, n));
  }
  auto* p = reinterpret_cast<unsigned char*>(dst.data());
  auto const put16 = [](unsigned char* q, std::uint16_t v) { std::memcpy(q, &v, 2); };
  switch (type) {
    case GgmlType::f32: std::memcpy(p, src.data(), n * 4); return;
    case GgmlType::f16:
      for (std::size_t i = 0; i < n; ++i) put16(p + 2 * i, detail::f32_to_f16(src[i]));
      return;
    case GgmlType::bf16:
      for (std::size_t i = 0; i < n; ++i) put16(p + 2 * i, detail::f32_to_bf16(src[i]));
      return;
    case GgmlType::q8_0:
      for (std::size_t b = 0; b < n / 32; ++b, p += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(src[b * 32 + j]));
        float const d = amax / 127.0f;
        float const id = d != 0.0f ? 1.0f / d : 0.0f;
        put16(p, detail::f32_to_f16(d));
        for (int j = 0; j < 32; ++j) p[2 + j] = static_cast<unsigned char>(static_cast<std::int8_t>(std::lround(src[b * 32 + j] * id)));
      }
      return;
    case GgmlType::q4_1:
      for (std::size_t b = 0; b < n / 32; ++b, p += 20) {
        float lo = src[b * 32], hi = src[b * 32];
        for (int j = 1; j < 32; ++j) {
          lo = std::min(lo, src[b * 32 + j]);
          hi = std::max(hi, src[b * 32 + j]);
        }
        float const d = (hi - lo) / 15.0f;
        float const id = d != 0.0f ? 1.0f / d : 0.0f;
        put16(p, detail::f32_to_f16(d));
        put16(p + 2, detail::f32_to_f16(lo));
        for (int j = 0; j < 16; ++j) {
          auto const q0 = static_cast<std::uint8_t>(std::min(15, static_cast<int>((src[b * 32 + j] - lo) * id + 0.5f)));
          auto const q1 = static_cast<std::uint8_t>(std::min(15, static_cast<int>((src[b * 32 + j + 16] - lo) * id + 0.5f)));
          p[4 + j] = static_cast<unsigned char>(q0 | (q1 << 4));
        }
      }
      return;
    default: detail::fail<Unsupported>("quantize_row: no quantizer for ", ggml_type_name(type));
  }
}

}  // namespace piecrust
