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
#include "piecrust/kernels/quant_blocks.hpp"
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

/// gelu(gate) * up elementwise, GELU's tanh form.
inline std::vector<double> geglu(std::span<float const> gate, std::span<float const> up) {
  std::vector<double> out(gate.size());
  double const k = std::sqrt(2.0 / 3.14159265358979323846);
  for (std::size_t i = 0; i < gate.size(); ++i) {
    double const x = gate[i];
    out[i] = 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x))) * up[i];
  }
  return out;
}

/// One weight row in double: codes and sub-block scales read by the one definition of each layout
/// (kernels/quant_blocks.hpp), the value d * q + m computed in double.
inline std::vector<double> dequantize_row(WeightMatrix const& w, std::size_t r) {
  std::vector<double> out(w.cols);
  auto const* row = reinterpret_cast<std::uint8_t const*>(w.row(r));
  if (!is_quantized(w.type)) {
    for (std::size_t c = 0; c < w.cols; ++c) out[c] = quant::dequantize_element(w.type, row, c);
    return out;
  }
  std::size_t const n = weight_block_size(w.type), sub = quant::sub_block_size(w.type);
  for (std::size_t c = 0; c < w.cols; ++c) {
    std::uint8_t const* blk = row + (c / n) * weight_block_bytes(w.type);
    quant::Affine const a = quant::sub_block_affine(w.type, blk, (c % n) / sub);
    out[c] = double{a.d} * quant::code(w.type, blk, c % n) + double{a.m};
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
