#pragma once
// dequantize_row: converts one row of a GGUF tensor (F32, F16, BF16, Q8_0, Q4_0, Q4_1) to f32.
//
// Block formats: ggml/src/ggml-common.h; reference decoders: ggml/src/ggml-quants.c
// (dequantize_row_q4_0, dequantize_row_q4_1, dequantize_row_q8_0).

#include <piecrust/core/error.hpp>
#include <piecrust/kernels/detail/half.hpp>
#include <piecrust/model/ggml_type.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
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
  auto const* p = reinterpret_cast<unsigned char const*>(src.data());
  auto const u16 = [](unsigned char const* q) {
    std::uint16_t v;
    std::memcpy(&v, q, 2);
    return v;
  };
  switch (type) {
    case GgmlType::f32: std::memcpy(dst.data(), p, n * 4); return;
    case GgmlType::f16:
      for (std::size_t i = 0; i < n; ++i) dst[i] = detail::f16_to_f32(u16(p + 2 * i));
      return;
    case GgmlType::bf16:
      for (std::size_t i = 0; i < n; ++i) dst[i] = detail::bf16_to_f32(u16(p + 2 * i));
      return;
    case GgmlType::q8_0:  // block: f16 d, i8 qs[32]; x = d * q
      for (std::size_t b = 0; b < n / 32; ++b, p += 34) {
        float const d = detail::f16_to_f32(u16(p));
        for (int j = 0; j < 32; ++j) dst[b * 32 + j] = d * static_cast<float>(static_cast<std::int8_t>(p[2 + j]));
      }
      return;
    case GgmlType::q4_0:  // block: f16 d, u8 qs[16]; x[j] = d*(lo(qs[j])-8), x[j+16] = d*(hi(qs[j])-8)
      for (std::size_t b = 0; b < n / 32; ++b, p += 18) {
        float const d = detail::f16_to_f32(u16(p));
        for (int j = 0; j < 16; ++j) {
          dst[b * 32 + j] = d * static_cast<float>((p[2 + j] & 0x0f) - 8);
          dst[b * 32 + j + 16] = d * static_cast<float>((p[2 + j] >> 4) - 8);
        }
      }
      return;
    case GgmlType::q4_1:  // block: f16 d, f16 m, u8 qs[16]; x[j] = d*lo(qs[j]) + m, x[j+16] = d*hi(qs[j]) + m
      for (std::size_t b = 0; b < n / 32; ++b, p += 20) {
        float const d = detail::f16_to_f32(u16(p));
        float const m = detail::f16_to_f32(u16(p + 2));
        for (int j = 0; j < 16; ++j) {
          dst[b * 32 + j] = d * static_cast<float>(p[4 + j] & 0x0f) + m;
          dst[b * 32 + j + 16] = d * static_cast<float>(p[4 + j] >> 4) + m;
        }
      }
      return;
    default:
      detail::fail<Unsupported>("dequantize_row: tensor type ", ggml_type_name(type), " has no decoder");
  }
}

}  // namespace piecrust
