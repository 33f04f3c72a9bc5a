#pragma once
// Host implementations of the probes: rows in parallel.

#include <cstddef>
#include <cstdint>
#include <span>

#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/detail/logit_rows.hpp"
#include "piecrust/kernels/probe.hpp"

namespace piecrust {

template <>
struct KernelImpl<ops::ProbeDistribution, Host> {
  static void run(Host const& space, ShapedView<float const, 2> logits, float temperature, std::span<LogitMask const> masks,
                  ShapedView<std::uint32_t, 2> ids, ShapedView<float, 2> probs) {
    std::size_t const vocab = logits.extent(1);
    std::size_t const kk = ids.extent(1);
    space.parallel_for(logits.extent(0), [&](std::size_t begin, std::size_t end) {
      detail::LogitRowScratch scratch;
      for (std::size_t r = begin; r < end; ++r) {
        detail::distribution_row(logits.data() + r * vocab, vocab, temperature, masks.empty() ? detail::no_mask() : masks[r],
                                 kk, ids.data() + r * kk, probs.data() + r * kk, scratch);
      }
    });
  }
};

template <>
struct KernelImpl<ops::ProbeLogprobs, Host> {
  static void run(Host const& space, ShapedView<float const, 2> logits, ShapedView<std::uint32_t const, 2> ids,
                  float temperature, std::span<LogitMask const> masks, ShapedView<float, 2> out) {
    std::size_t const vocab = logits.extent(1);
    std::size_t const n = ids.extent(1);
    space.parallel_for(logits.extent(0), [&](std::size_t begin, std::size_t end) {
      detail::LogitRowScratch scratch;
      for (std::size_t r = begin; r < end; ++r) {
        detail::logprobs_row(logits.data() + r * vocab, vocab, temperature, masks.empty() ? detail::no_mask() : masks[r],
                             ids.data() + r * n, n, out.data() + r * n, scratch);
      }
    });
  }
};

template <>
struct KernelImpl<ops::ProbeEntropy, Host> {
  static void run(Host const& space, ShapedView<float const, 2> logits, float temperature, std::span<LogitMask const> masks,
                  std::span<float> out) {
    std::size_t const vocab = logits.extent(1);
    space.parallel_for(logits.extent(0), [&](std::size_t begin, std::size_t end) {
      detail::LogitRowScratch scratch;
      for (std::size_t r = begin; r < end; ++r) {
        out[r] = detail::entropy_row(logits.data() + r * vocab, vocab, temperature,
                                     masks.empty() ? detail::no_mask() : masks[r], scratch);
      }
    });
  }
};

}  // namespace piecrust
