#pragma once
// Naive double-precision references of the model ops: the oracles every backend is tested against.
// Written for clarity, not speed; flat row-major std::vectors, shapes in comments.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/rope.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

namespace piecrust::reference {

/// out [rows][dim] = x / sqrt(mean(x^2) + eps) * weight; x [rows][dim], weight [dim].
inline std::vector<double> rms_norm(std::span<float const> x, std::span<float const> weight, std::size_t dim, double eps) {
  std::vector<double> out(x.size());
  for (std::size_t r = 0; r < x.size() / dim; ++r) {
    double ss = 0;
    for (std::size_t i = 0; i < dim; ++i) ss += double{x[r * dim + i]} * x[r * dim + i];
    double const inv = 1.0 / std::sqrt(ss / static_cast<double>(dim) + eps);
    for (std::size_t i = 0; i < dim; ++i) out[r * dim + i] = x[r * dim + i] * inv * weight[i];
  }
  return out;
}

/// out [tokens][heads][head_dim]: x rotated at `positions` (see piecrust::rope).
inline std::vector<double> rope(std::span<float const> x, std::size_t heads, std::size_t head_dim,
                                std::span<std::uint32_t const> positions, RopeParams const& p) {
  std::size_t const rotary = p.rotary_dim == 0 ? head_dim : p.rotary_dim;
  std::vector<double> const inv = detail::rope_inv_freq(p, rotary);
  std::vector<double> out(x.begin(), x.end());
  std::size_t const half = rotary / 2;
  for (std::size_t t = 0; t < positions.size(); ++t) {
    for (std::size_t h = 0; h < heads; ++h) {
      double* v = out.data() + (t * heads + h) * head_dim;
      for (std::size_t i = 0; i < half; ++i) {
        std::size_t const a = p.style == RopeStyle::adjacent_pairs ? 2 * i : i;
        std::size_t const b = p.style == RopeStyle::adjacent_pairs ? 2 * i + 1 : i + half;
        double const angle = positions[t] * inv[i];
        double const x0 = v[a], x1 = v[b];
        v[a] = x0 * std::cos(angle) - x1 * std::sin(angle);
        v[b] = x0 * std::sin(angle) + x1 * std::cos(angle);
      }
    }
  }
  return out;
}

/// silu(gate) * up, elementwise.
inline std::vector<double> swiglu(std::span<float const> gate, std::span<float const> up) {
  std::vector<double> out(gate.size());
  for (std::size_t i = 0; i < gate.size(); ++i) out[i] = gate[i] / (1.0 + std::exp(-double{gate[i]})) * up[i];
  return out;
}

/// One weight row in double, decoded straight from the GGUF block layout.
inline std::vector<double> dequantize_row(WeightMatrix const& w, std::size_t r) {
  std::vector<double> out(w.cols);
  auto const* bytes = reinterpret_cast<unsigned char const*>(w.row(r));
  auto u16 = [&](std::size_t off) {
    std::uint16_t v;
    std::memcpy(&v, bytes + off, 2);
    return v;
  };
  for (std::size_t c = 0; c < w.cols; ++c) {
    switch (w.type) {
      case WeightType::f32: {
        float f;
        std::memcpy(&f, bytes + 4 * c, 4);
        out[c] = f;
        break;
      }
      case WeightType::f16: out[c] = Half::to_float(u16(2 * c)); break;
      case WeightType::bf16: out[c] = BFloat16::to_float(u16(2 * c)); break;
      case WeightType::q8_0: {
        std::size_t const blk = (c / 32) * 34;
        out[c] = double{Half::to_float(u16(blk))} * static_cast<std::int8_t>(bytes[blk + 2 + c % 32]);
        break;
      }
      case WeightType::q4_1: {
        std::size_t const blk = (c / 32) * 20;
        std::size_t const j = c % 32;
        unsigned const byte = bytes[blk + 4 + (j % 16)];
        unsigned const qv = j < 16 ? (byte & 0x0f) : (byte >> 4);
        out[c] = double{Half::to_float(u16(blk))} * qv + Half::to_float(u16(blk + 2));
        break;
      }
    }
  }
  return out;
}

/// y [m][n] = beta * y0 + x [m][k] * W^T.
inline std::vector<double> gemm(std::span<float const> x, std::size_t m, WeightMatrix const& w,
                                std::span<float const> y0 = {}, double beta = 0) {
  std::vector<double> y(m * w.rows, 0.0);
  for (std::size_t o = 0; o < w.rows; ++o) {
    std::vector<double> const row = dequantize_row(w, o);
    for (std::size_t i = 0; i < m; ++i) {
      double s = 0;
      for (std::size_t c = 0; c < w.cols; ++c) s += x[i * w.cols + c] * row[c];
      y[i * w.rows + o] = (beta != 0 ? beta * y0[i * w.rows + o] : 0.0) + s;
    }
  }
  return y;
}

}  // namespace piecrust::reference
