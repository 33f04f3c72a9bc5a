#pragma once
// y = beta * y + x W^T for quantized W with x quantized per llama.cpp's rules (quant_activations.hpp) and
// integer dot products per block (quant_dot.hpp's order). The code path is chosen once from the CPU
// (best_quant_level) or given explicitly (tests run every level the CPU supports); every level gives the
// same bits, and each output is one row's own dot product, so a row's result never depends on its batch.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "piecrust/backends/host/detail/cpu_features.hpp"
#include "piecrust/backends/host/detail/quant_activations.hpp"
#include "piecrust/backends/host/detail/quant_dot.hpp"
#include "piecrust/backends/host/detail/quant_dot_avx2.hpp"
#include "piecrust/backends/host/detail/quant_dot_avx512.hpp"
#include "piecrust/core/error.hpp"
#include "piecrust/kernels/weight_matrix.hpp"

namespace piecrust::detail {

/// The levels with integer kernels that this CPU runs, slowest first.
[[nodiscard]] inline std::vector<SimdLevel> quant_levels() { return cpu_simd_levels(); }

[[nodiscard]] inline SimdLevel best_quant_level() {
  static SimdLevel const best = quant_levels().back();
  return best;
}

/// out [nw][a.rows] = dots of nw consecutive weight rows (row_bytes apart) with every activation row.
using QuantRowsFn = void (*)(std::uint8_t const* w0, std::size_t row_bytes, std::size_t nw,
                             QuantizedActivations const& a, float* out);

template <WeightType T>
void quant_rows_scalar(std::uint8_t const* w0, std::size_t row_bytes, std::size_t nw, QuantizedActivations const& a,
                       float* out) noexcept {
  for (std::size_t w = 0; w < nw; ++w) {
    for (std::size_t i = 0; i < a.rows; ++i) out[w * a.rows + i] = quant_dot_scalar(T, w0 + w * row_bytes, a, i);
  }
}

template <WeightType T>
[[nodiscard]] QuantRowsFn quant_rows_for(SimdLevel level) noexcept {
#if PIECRUST_HOST_X86
  if (level == SimdLevel::avx512) return &avx512::quant_rows<T>;
  if (level == SimdLevel::avx2) return &avx2::quant_rows<T>;
#endif
  (void)level;
  return &quant_rows_scalar<T>;
}

[[nodiscard]] inline QuantRowsFn quant_rows_fn(WeightType t, SimdLevel level) {
  if (!cpu_supports(level)) {
    fail<Unsupported>("quant_gemm: level ", simd_level_name(level), " is not available on this CPU (available: ",
                      simd_level_name(best_quant_level()), " and below)");
  }
  switch (t) {
    case WeightType::q4_0: return quant_rows_for<WeightType::q4_0>(level);
    case WeightType::q4_1: return quant_rows_for<WeightType::q4_1>(level);
    case WeightType::q5_0: return quant_rows_for<WeightType::q5_0>(level);
    case WeightType::q5_1: return quant_rows_for<WeightType::q5_1>(level);
    case WeightType::q8_0: return quant_rows_for<WeightType::q8_0>(level);
    case WeightType::iq4_nl: return quant_rows_for<WeightType::iq4_nl>(level);
    case WeightType::q2_k: return quant_rows_for<WeightType::q2_k>(level);
    case WeightType::q3_k: return quant_rows_for<WeightType::q3_k>(level);
    case WeightType::q4_k: return quant_rows_for<WeightType::q4_k>(level);
    case WeightType::q5_k: return quant_rows_for<WeightType::q5_k>(level);
    case WeightType::q6_k: return quant_rows_for<WeightType::q6_k>(level);
    case WeightType::iq4_xs: return quant_rows_for<WeightType::iq4_xs>(level);
    default: fail<InvalidArgument>("quant_gemm: weight type ", weight_type_name(t), " is not quantized");
  }
}

/// One weight matrix and its output: y [m][w->rows] = beta * y + dot(activation rows, weight rows).
struct QuantGemmOutput {
  WeightMatrix const* w = nullptr;
  float* y = nullptr;
  float beta = 0.0f;
};

/// Weight rows per task block: their outputs for all activation rows gather in a small buffer and are
/// written to y as contiguous runs.
inline constexpr std::size_t quant_gemm_row_block = 16;

/// Several products of the same activations in one parallel loop over all their output rows.
/// `parallel_for(n, f(begin, end))` splits the rows.
template <class ParallelFor>
void quant_gemm_many(ParallelFor&& parallel_for, QuantizedActivations const& a, std::span<QuantGemmOutput const> outs,
                     SimdLevel level = best_quant_level()) {
  std::vector<std::size_t> start{0};  // [outs + 1] first global row of each output
  std::vector<QuantRowsFn> fns;       // [outs]
  for (auto const& o : outs) {
    auto const& w = *o.w;
    if (a.cols != w.cols) {
      fail<InvalidArgument>("quant_gemm: activations [", a.rows, "][", a.cols, "] vs weights [", w.rows, "][", w.cols,
                            "]");
    }
    if (!(uses_q8k(w.type) ? a.has_q8k : a.has_q8)) {
      fail<InvalidArgument>("quant_gemm: activations lack the ", uses_q8k(w.type) ? "256" : "32",
                            "-value blocks that weight type ", weight_type_name(w.type), " needs");
    }
    fns.push_back(quant_rows_fn(w.type, level));
    start.push_back(start.back() + w.rows);
  }
  std::size_t const m = a.rows;
  if (m == 0) return;
  constexpr std::size_t rb = quant_gemm_row_block;
  parallel_for(start.back(), [&](std::size_t begin, std::size_t end) {
    std::vector<float> out(rb * m);  // [rb weight rows][m activation rows]
    std::size_t k = 0;
    for (std::size_t g = begin; g < end;) {
      while (g >= start[k + 1]) ++k;
      auto const& w = *outs[k].w;
      std::size_t const o0 = g - start[k], n = w.rows;
      std::size_t const nw = std::min({rb, end - g, start[k + 1] - g});  // a block never crosses outputs
      fns[k](reinterpret_cast<std::uint8_t const*>(w.row(o0)), w.row_bytes(), nw, a, out.data());
      float const beta = outs[k].beta;
      for (std::size_t i = 0; i < m; ++i) {
        float* yr = outs[k].y + i * n + o0;
        for (std::size_t j = 0; j < nw; ++j) {
          float const v = out[j * m + i];
          yr[j] = beta == 0.0f ? v : beta * yr[j] + v;
        }
      }
      g += nw;
    }
  });
}

}  // namespace piecrust::detail
