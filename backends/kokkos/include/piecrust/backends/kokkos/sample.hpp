#pragma once
// sample and the probes on Kokkos spaces with host-accessible memory (Serial, OpenMP, Threads, and
// Cuda/HIP with UVM or host-pinned logits): a Kokkos parallel_for over rows, each row running the
// same per-row code as the host backend (kernels/detail/logit_rows.hpp), so results are identical.

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/kernels/detail/logit_rows.hpp"
#include "piecrust/kernels/probe.hpp"
#include "piecrust/kernels/sample.hpp"

namespace piecrust {

template <KokkosHostSpace S>
struct KernelImpl<ops::Sample, S> {
  static void run(S const& space, ShapedView<float const, 2> logits, std::span<SamplingParams const> params,
                  std::span<LogitMask const> masks, std::span<SampleKey const> keys, std::span<std::uint32_t> out) {
    std::size_t const vocab = logits.extent(1);
    Kokkos::parallel_for("piecrust::sample", Kokkos::RangePolicy<S>(space, 0, logits.extent(0)), [&](std::size_t r) {
      detail::LogitRowScratch scratch;
      out[r] = detail::sample_row(logits.data() + r * vocab, vocab, params[r], masks.empty() ? detail::no_mask() : masks[r],
                                  keys[r], scratch);
    });
    space.fence();
  }
};

template <KokkosHostSpace S>
struct KernelImpl<ops::ProbeDistribution, S> {
  static void run(S const& space, ShapedView<float const, 2> logits, float temperature, std::span<LogitMask const> masks,
                  ShapedView<std::uint32_t, 2> ids, ShapedView<float, 2> probs) {
    std::size_t const vocab = logits.extent(1);
    std::size_t const kk = ids.extent(1);
    Kokkos::parallel_for("piecrust::probe_distribution", Kokkos::RangePolicy<S>(space, 0, logits.extent(0)), [&](std::size_t r) {
      detail::LogitRowScratch scratch;
      detail::distribution_row(logits.data() + r * vocab, vocab, temperature, masks.empty() ? detail::no_mask() : masks[r], kk,
                               ids.data() + r * kk, probs.data() + r * kk, scratch);
    });
    space.fence();
  }
};

template <KokkosHostSpace S>
struct KernelImpl<ops::ProbeLogprobs, S> {
  static void run(S const& space, ShapedView<float const, 2> logits, ShapedView<std::uint32_t const, 2> ids, float temperature,
                  std::span<LogitMask const> masks, ShapedView<float, 2> out) {
    std::size_t const vocab = logits.extent(1);
    std::size_t const n = ids.extent(1);
    Kokkos::parallel_for("piecrust::probe_logprobs", Kokkos::RangePolicy<S>(space, 0, logits.extent(0)), [&](std::size_t r) {
      detail::LogitRowScratch scratch;
      detail::logprobs_row(logits.data() + r * vocab, vocab, temperature, masks.empty() ? detail::no_mask() : masks[r],
                           ids.data() + r * n, n, out.data() + r * n, scratch);
    });
    space.fence();
  }
};

template <KokkosHostSpace S>
struct KernelImpl<ops::ProbeEntropy, S> {
  static void run(S const& space, ShapedView<float const, 2> logits, float temperature, std::span<LogitMask const> masks,
                  std::span<float> out) {
    std::size_t const vocab = logits.extent(1);
    Kokkos::parallel_for("piecrust::probe_entropy", Kokkos::RangePolicy<S>(space, 0, logits.extent(0)), [&](std::size_t r) {
      detail::LogitRowScratch scratch;
      out[r] = detail::entropy_row(logits.data() + r * vocab, vocab, temperature, masks.empty() ? detail::no_mask() : masks[r],
                                   scratch);
    });
    space.fence();
  }
};

}  // namespace piecrust
