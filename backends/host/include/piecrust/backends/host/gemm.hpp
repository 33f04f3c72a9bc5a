#pragma once
// Host implementation of gemm, y = beta * y + x * W^T.
//  * m <= direct_max_rows (1): direct dot products, each row decoded once (the weights are read once, in
//    their compressed size: single-sequence decode is bound by weight bandwidth); f32 / f16 / bf16 rows
//    convert in registers on AVX2 (detail/float_gemv_avx2.hpp).
//  * f32 weights otherwise: OpenBLAS sgemm.
//  * otherwise: panels of W dequantized to f32 in a scratch buffer, then sgemm per panel (prefill is
//    bound by FLOPs, where OpenBLAS' blocked kernel wins). See docs/kernels.md for the measurements.

#include <cblas.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "piecrust/backends/host/detail/cpu_features.hpp"
#include "piecrust/backends/host/detail/float_gemv_avx2.hpp"
#include "piecrust/backends/host/detail/quant.hpp"
#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/exec/buffer.hpp"
#include "piecrust/kernels/gemm.hpp"

namespace piecrust {

template <>
struct KernelImpl<ops::Gemm, Host> {
  /// Largest m computed with direct quantized dot products. Measured (bench_kernels, bench/RESULTS.md):
  /// direct beats dequantize-and-sgemm at m = 1 (and by 1.1-1.4x on the 49152 x 576 LM head, which is
  /// weight-bandwidth-bound) but loses from m = 8 on, where one dequantization feeds many rows.
  static constexpr std::size_t direct_max_rows = 1;

  static void run(Host const& space, ShapedView<float const, 2> x, WeightMatrix const& w, ShapedView<float, 2> y,
                  float beta) {
    std::size_t const m = x.extent(0);
    std::size_t const k = w.cols;
    std::size_t const n = w.rows;
    if (m == 0 || n == 0) return;
    if (m <= direct_max_rows && (w.type != WeightType::f32 || float_rows_available())) {
      direct(space, x, w, y, beta);
    } else if (w.type == WeightType::f32) {
      sgemm(x.data(), static_cast<float const*>(w.data), y.data(), m, n, k, n, beta);
    } else {
      panels(space, x, w, y, beta);
    }
  }

  /// Whether f32 / f16 / bf16 rows take the AVX2 kernel on this CPU.
  [[nodiscard]] static bool float_rows_available() noexcept {
    return PIECRUST_HOST_X86 && detail::cpu_supports(detail::SimdLevel::avx2);
  }

  /// The direct path, any weight type and any m (exposed for benchmarks and tests; `level` scalar forces the
  /// portable code where an AVX2 kernel exists).
  static void direct(Host const& space, ShapedView<float const, 2> x, WeightMatrix const& w, ShapedView<float, 2> y,
                     float beta, detail::SimdLevel level = detail::SimdLevel::avx2) {
    std::size_t const m = x.extent(0);
    std::size_t const k = w.cols;
    std::size_t const n = w.rows;
#if PIECRUST_HOST_X86
    if (level != detail::SimdLevel::scalar && float_rows_available()) {
      if (auto const fn = detail::avx2::float_rows_fn(w.type)) {
        auto const* w0 = static_cast<std::uint8_t const*>(w.data);
        space.parallel_for(n, [&](std::size_t begin, std::size_t end) {
          fn(x.data(), m, k, w0, w.row_bytes(), begin, end, y.data(), n, beta);
        }, 64);
        return;
      }
    }
#endif
    (void)level;
    std::vector<float> xsum(w.type == WeightType::q4_1 ? m * (k / 32) : 0);  // [m][k / 32]
    for (std::size_t i = 0; i < m && !xsum.empty(); ++i) {
      host::detail::block_sums(x.data() + i * k, xsum.data() + i * (k / 32), k);
    }
    bool const plain = w.type != WeightType::q8_0 && w.type != WeightType::q4_1;  // dequantized row by row
    space.parallel_for(n, [&](std::size_t begin, std::size_t end) {
      std::vector<float> row(plain ? k : 0);  // [k] a dequantized row
      for (std::size_t o = begin; o < end; ++o) {
        std::byte const* wr = w.row(o);
        if (plain) host::detail::dequantize_row(w.type, wr, row.data(), k);
        for (std::size_t i = 0; i < m; ++i) {
          float const* xi = x.data() + i * k;
          float acc = 0.0f;
          if (w.type == WeightType::q8_0) {
            acc = host::detail::dot_q8_0(xi, wr, k);
          } else if (w.type == WeightType::q4_1) {
            acc = host::detail::dot_q4_1(xi, xsum.data() + i * (k / 32), wr, k);
          } else {
            acc = k % host::detail::lanes == 0 ? host::detail::dot(xi, row.data(), k) : scalar_dot(xi, row.data(), k);
          }
          float& yo = y.data()[i * n + o];
          yo = beta == 0.0f ? acc : beta * yo + acc;
        }
      }
    }, 16);
  }

  /// The dequantize-then-sgemm path (exposed for benchmarks and tests).
  static void panels(Host const& space, ShapedView<float const, 2> x, WeightMatrix const& w, ShapedView<float, 2> y,
                     float beta) {
    std::size_t const m = x.extent(0);
    std::size_t const k = w.cols;
    std::size_t const n = w.rows;
    // Panels of about 4 MiB of f32 weights: large enough for sgemm's blocking, small enough for L2/L3.
    std::size_t const panel_rows = std::clamp<std::size_t>((std::size_t{1} << 20) / std::max<std::size_t>(k, 1), 64, n);
    Buffer<float> panel(panel_rows * k);  // [panel_rows][k]
    for (std::size_t o0 = 0; o0 < n; o0 += panel_rows) {
      std::size_t const rows = std::min(panel_rows, n - o0);
      space.parallel_for(rows, [&](std::size_t begin, std::size_t end) {
        for (std::size_t r = begin; r < end; ++r) host::detail::dequantize_row(w.type, w.row(o0 + r), panel.data() + r * k, k);
      }, 8);
      sgemm(x.data(), panel.data(), y.data() + o0, m, rows, k, n, beta);
    }
  }

 private:
  static float scalar_dot(float const* a, float const* b, std::size_t n) noexcept {
    float s = 0.0f;
    for (std::size_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
  }
  // y[m][ldy] (columns [0, n)) = beta * y + x[m][k] * w[n][k]^T
  static void sgemm(float const* x, float const* w, float* y, std::size_t m, std::size_t n, std::size_t k,
                    std::size_t ldy, float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
                1.0f, x, static_cast<int>(k), w, static_cast<int>(k), beta, y, static_cast<int>(ldy));
  }
};

}  // namespace piecrust
