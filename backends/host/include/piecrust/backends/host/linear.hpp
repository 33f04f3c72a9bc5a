#pragma once
// Host implementation of linear over loaded weights. Quantized weights with round_activations: llama.cpp's
// 8-bit activations (blocks of 32, or 256-value blocks with sums for the K-quants) and integer dot products
// per block (detail/quant_gemm.hpp), on the best code path of this CPU, and for the block-of-32 types on an
// interleaved copy of the rows when one was made at load (detail/quant_interleaved.hpp, the same bits);
// each row's result is independent of the other rows of the batch. Everything else: the host gemm.

#include <cstddef>
#include <span>
#include <vector>

#include "piecrust/backends/host/detail/quant_gemm.hpp"
#include "piecrust/backends/host/detail/quant_interleaved.hpp"
#include "piecrust/backends/host/gemm.hpp"
#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/linear.hpp"

namespace piecrust {

/// A weight on the host: the caller's GGUF bytes (not copied; they must outlive it), plus the interleaved
/// copy when the integer path uses one.
struct HostLinearWeight {
  WeightMatrix matrix;               // GGUF bytes, host memory
  bool round_activations = false;    // the integer path (quantized types only)
  detail::InterleavedQuant packed;   // groups == 0: none
};

template <>
struct KernelImpl<ops::Linear, Host> {
  using weight_type = HostLinearWeight;

  static weight_type load(Host const&, WeightMatrix const& w, LinearOptions const& o) {
    weight_type out{w, o.round_activations && is_quantized(w.type), {}};
    if (out.round_activations && o.interleave && detail::InterleavedQuant::supports(w.type) &&
        detail::interleaved_quant_available(detail::best_quant_level())) {
      out.packed = detail::InterleavedQuant::from(w);
    }
    return out;
  }

  static void run(Host const& space, ShapedView<float const, 2> x, weight_type const& w, ShapedView<float, 2> y, float beta) {
    LinearProduct<weight_type> const p{&w, y, beta};
    run_many(space, x, std::span<LinearProduct<weight_type> const>(&p, 1));
  }

  // Products of one input: each activation format the integer products need is computed once, then one
  // parallel loop runs over every output row of them; the float products use the host gemm.
  static void run_many(Host const& space, ShapedView<float const, 2> x, std::span<LinearProduct<weight_type> const> ps) {
    bool q8 = false, q8k = false;
    thread_local std::vector<detail::QuantGemmOutput> outs;              // [row-major integer products]
    thread_local std::vector<detail::InterleavedQuantOutput> packed;     // [interleaved integer products]
    outs.clear();
    packed.clear();
    for (auto const& p : ps) {
      if (!p.w->round_activations) {
        gemm(space, x, p.w->matrix, p.y, p.beta);
        continue;
      }
      (detail::uses_q8k(p.w->matrix.type) ? q8k : q8) = true;
      if (p.w->packed.groups > 0) {
        packed.push_back({&p.w->packed, p.y.data(), p.beta});
      } else {
        outs.push_back({&p.w->matrix, p.y.data(), p.beta});
      }
    }
    if ((outs.empty() && packed.empty()) || x.extent(0) == 0) return;
    detail::SimdLevel const level = detail::best_quant_level();
    thread_local detail::QuantizedActivations qx;  // [rows][cols] in the formats needed
    qx.quantize(x.data(), x.extent(0), x.extent(1), q8, q8k, level);
    if (!packed.empty()) {
      detail::interleaved_quant_gemm_many([&space](std::size_t n, auto&& f) { space.parallel_for(n, f, 2); }, qx,
                                          std::span<detail::InterleavedQuantOutput const>(packed.data(), packed.size()), level);
    }
    if (!outs.empty()) {
      detail::quant_gemm_many([&space](std::size_t n, auto&& f) { space.parallel_for(n, f, 16); }, qx,
                              std::span<detail::QuantGemmOutput const>(outs.data(), outs.size()), level);
    }
  }
};

}  // namespace piecrust
