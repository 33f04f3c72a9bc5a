// Every WeightType on the Cuda space (on a GPU, and on the host under the emulation), on random valid blocks
// (random bytes, finite f16 scales: tests/support/random_quant_blocks.hpp):
//  * embedding, dequantize and dequantize_to_bf16 against quant::dequantize_row on the host: exact (the device
//    decodes through the same quant_blocks.hpp functions, its multiply and add rounded separately);
//  * the direct GEMV kernel (gemv.hpp, m <= gemv_max_rows), called directly and through gemm, against the
//    double-precision reference::gemm over the same bytes: |gpu - ref| <= 2e-5 * sum_c |x_c w_c| + 1e-6 per
//    element (f32 accumulation of k = 512 products: a lane's 16 sequential adds, then a 32-lane tree, each add
//    at most 2^-24 relative; 2e-5 leaves a wide margin).

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <piecrust/backends/cuda.hpp>
#include <piecrust/backends/cuda/gemv.hpp>
#include <piecrust/kernels/quant_blocks.hpp>
#include <piecrust/kernels/reference/model_ops.hpp>

#include "../support/random_quant_blocks.hpp"
#include "gpu_test.hpp"

namespace {

using namespace piecrust;

template <class T>
Buffer<T, CudaMemory> to_dev(Cuda const& space, std::vector<T> const& v) {
  return to_device(space, std::span<T const>(v));
}

}  // namespace

PIECRUST_GPU_TEST(every_weight_type_decodes_as_the_host) {
  Cuda const& s = t.space();
  std::size_t const vocab = gpu_test::emulated ? 24 : 300, dim = 512;  // dim: two blocks of the K-quants
  for (WeightType type : all_weight_types) {
    auto const w = testing::random_weights(type, vocab, dim, t.rng()());
    std::vector<float> want(vocab * dim);  // [vocab][dim]
    for (std::size_t r = 0; r < vocab; ++r) {
      quant::dequantize_row(type, reinterpret_cast<std::uint8_t const*>(w.matrix.row(r)), want.data() + r * dim, dim);
    }
    auto const dbytes = to_dev(s, w.bytes);
    WeightMatrix const dw{type, dbytes.data(), vocab, dim};

    auto dfull = to_dev(s, t.random_floats(vocab * dim));  // [vocab][dim]
    dequantize(s, dw, dfull.view(vocab, dim));
    auto const full = to_host(s, dfull);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < want.size(); ++i) bad += std::bit_cast<std::uint32_t>(full[i]) != std::bit_cast<std::uint32_t>(want[i]);
    t.check(bad == 0, "dequantize ", weight_type_name(type), ": ", bad, " values differ from the host's");

    std::vector<std::uint32_t> const ids{static_cast<std::uint32_t>(vocab - 1), 0, 7, 7};
    auto dout = to_dev(s, t.random_floats(ids.size() * dim));  // [tokens][dim]
    embedding(s, dw, ids, dout.view(ids.size(), dim));
    auto const out = to_host(s, dout);
    bad = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      for (std::size_t c = 0; c < dim; ++c) bad += out[i * dim + c] != want[ids[i] * dim + c];
    }
    t.check(bad == 0, "embedding ", weight_type_name(type), ": ", bad, " values differ from the host's");

    Buffer<BFloat16, CudaMemory> dbf(vocab * dim, s.memory());  // [vocab][dim]
    gpu::dequantize_to_bf16(s, dw, dbf.data());
    auto const bf = to_host(s, dbf);
    bad = 0;
    for (std::size_t i = 0; i < want.size(); ++i) bad += bf[i].bits != BFloat16::from_float(want[i]);
    t.check(bad == 0, "dequantize_to_bf16 ", weight_type_name(type), ": ", bad, " values differ from BFloat16(host)");
  }
}

PIECRUST_GPU_TEST(gemv_every_weight_type_matches_the_double_reference) {
  Cuda const& s = t.space();
  std::size_t const n = gpu_test::emulated ? 24 : 384, k = 512;
  double const tol = 2e-5;
  for (WeightType type : all_weight_types) {
    auto const w = testing::random_weights(type, n, k, t.rng()());
    auto const dbytes = to_dev(s, w.bytes);
    WeightMatrix const dw{type, dbytes.data(), n, k};
    std::vector<std::vector<double>> wd(n);  // [n][k] decoded weights, for the bound's scale
    for (std::size_t o = 0; o < n; ++o) wd[o] = reference::dequantize_row(w.matrix, o);
    for (std::size_t m : {std::size_t{1}, std::size_t{3}, gpu::detail::gemv_max_rows}) {
      for (float beta : {0.0f, 0.5f}) {
        auto const x = t.random_floats(m * k, -2.0f, 2.0f);  // [m][k]
        auto y0 = t.random_floats(m * n);                     // [m][n]
        if (beta == 0.0f) y0[0] = std::numeric_limits<float>::quiet_NaN();  // beta = 0 ignores old contents
        auto const ref = reference::gemm(x, m, w.matrix, y0, beta);
        auto const dx = to_dev(s, x);
        for (bool direct : {true, false}) {
          auto dy = to_dev(s, y0);
          if (direct) {
            gpu::detail::launch_gemv(s, dx.view(m, k), dw, dy.view(m, n), beta);
          } else {
            gemm(s, dx.view(m, k), dw, dy.view(m, n), beta);
          }
          auto const got = to_host(s, dy);
          double worst = 0;
          for (std::size_t i = 0; i < m; ++i) {
            for (std::size_t o = 0; o < n; ++o) {
              double scale = beta != 0.0f ? std::abs(beta * double{y0[i * n + o]}) : 0.0;
              for (std::size_t c = 0; c < k; ++c) scale += std::abs(double{x[i * k + c]} * wd[o][c]);
              double const err = std::abs(double{got[i * n + o]} - ref[i * n + o]);
              worst = std::max(worst, std::isnan(err) ? INFINITY : err / (tol * scale + 1e-6));
            }
          }
          t.check(worst <= 1.0, direct ? "launch_gemv " : "gemm ", weight_type_name(type), " m ", m, " beta ", beta,
                  ": tolerance ratio ", worst);
        }
      }
    }
  }
}
