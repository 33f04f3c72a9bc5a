#pragma once
// Host implementation of linear over loaded weights. Q4_1 / Q8_0 weights with round_activations: llama.cpp's
// 8-bit activations and integer dot products per block (detail/q8_activation_gemm.hpp), on an interleaved
// copy of the rows when one was made at load (detail/q8_interleaved_gemm.hpp); each row's result is
// independent of the other rows of the batch. Everything else: the host gemm on the GGUF bytes.

#include <array>
#include <cstddef>
#include <span>

#include "piecrust/backends/host/detail/q8_activation_gemm.hpp"
#include "piecrust/backends/host/detail/q8_interleaved_gemm.hpp"
#include "piecrust/backends/host/gemm.hpp"
#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/linear.hpp"

namespace piecrust {

/// A weight on the host: the caller's GGUF bytes (not copied; they must outlive it), plus the interleaved
/// copy when the 8-bit path uses one.
struct HostLinearWeight {
  WeightMatrix matrix;                 // GGUF bytes, host memory
  detail::InterleavedWeights packed;   // groups == 0: none
  bool round_activations = false;      // the 8-bit activation path (Q4_1 / Q8_0 only)
};

template <>
struct KernelImpl<ops::Linear, Host> {
  using weight_type = HostLinearWeight;

  static bool is_q8(WeightMatrix const& w) noexcept { return w.type == WeightType::q4_1 || w.type == WeightType::q8_0; }

  static weight_type load(Host const&, WeightMatrix const& w, LinearOptions const& o) {
    weight_type out{w, {}, o.round_activations && is_q8(w)};
    if (out.round_activations && o.interleave) out.packed = detail::InterleavedWeights::from(w);
    return out;
  }

  static void run(Host const& space, ShapedView<float const, 2> x, weight_type const& w, ShapedView<float, 2> y, float beta) {
    LinearProduct<weight_type> const p{&w, y, beta};
    run_many(space, x, std::span<LinearProduct<weight_type> const>(&p, 1));
  }

  // Products of one input: quantized once, then one parallel loop over every output row (or row group).
  static void run_many(Host const& space, ShapedView<float const, 2> x, std::span<LinearProduct<weight_type> const> ps) {
    bool rounded = !ps.empty(), interleaved = true;
    for (auto const& p : ps) {
      rounded = rounded && p.w->round_activations;
      interleaved = interleaved && p.w->packed.groups > 0;
    }
    if (!rounded) {
      for (auto const& p : ps) {
        if (p.w->round_activations) {
          run(space, x, *p.w, p.y, p.beta);
        } else {
          gemm(space, x, p.w->matrix, p.y, p.beta);
        }
      }
      return;
    }
    if (x.extent(0) == 0) return;
    thread_local detail::Q8Activations qx;  // [rows][cols] 8-bit activations of the current product
    qx.quantize(x.data(), x.extent(0), x.extent(1));
    auto split = [&](std::size_t grain) {
      return [&space, grain](std::size_t n, auto&& f) { space.parallel_for(n, f, grain); };
    };
    constexpr std::size_t max_products = 4;
    if (ps.size() > max_products) detail::fail<InvalidArgument>("linear_many: ", ps.size(), " products > ", max_products);
    std::size_t n = 0;
    if (interleaved) {
      std::array<detail::InterleavedGemmOutput, max_products> outs{};
      for (auto const& p : ps) outs[n++] = {&p.w->packed, p.y.data(), p.beta};
      detail::q8_interleaved_gemm_many(split(2), qx, std::span<detail::InterleavedGemmOutput const>(outs.data(), n));
      return;
    }
    std::array<detail::Q8GemmOutput, max_products> outs{};
    for (auto const& p : ps) outs[n++] = {&p.w->matrix, p.y.data(), p.beta};
    detail::q8_activation_gemm_many(split(16), qx, std::span<detail::Q8GemmOutput const>(outs.data(), n));
  }
};

}  // namespace piecrust
