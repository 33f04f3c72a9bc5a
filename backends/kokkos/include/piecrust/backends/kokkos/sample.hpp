#pragma once
// sample and the probes on any Kokkos space. Each row runs the same per-row code as the host backend
// (kernels/detail/logit_rows.hpp: plain host C++ with sorting and per-row buffers), so results are
// identical to the host's, inside a Kokkos parallel_for over rows:
//  * memory the host can read (Serial, OpenMP, Threads; Cuda/HIP with UVM or host-pinned logits): in
//    place, on S itself;
//  * other memory (Cuda, HIP device memory): the logits rows are copied to the host once per call, the
//    rows run on Kokkos' default host space, and the outputs are copied back into S's memory. A per-row
//    sampler written on Kokkos team patterns for device memory is not there yet.
// Index and parameter inputs (params, masks, keys, logit edits, probe_logprobs' ids) are host memory, as the
// interfaces check them on the host; logits and every output live in S::memory_space.

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/kernels/detail/logit_rows.hpp"
#include "piecrust/kernels/probe.hpp"
#include "piecrust/kernels/sample.hpp"

namespace piecrust {
namespace kokkos_detail {

/// n elements of S's memory as host memory: the same pointer when the host can dereference S's memory,
/// else a host copy (read: filled from the space; write_back: copied into the space).
template <class T, class S>
class HostRows {
 public:
  HostRows(S const& space, T* data, std::size_t n, bool read) : data_(data), n_(n) {
    if constexpr (!host_accessible_space<S>) {
      copy_.resize(n);
      if (read && n != 0) {
        Kokkos::deep_copy(space, HostUnmanaged1<std::remove_const_t<T>>(copy_.data(), n),
                          Unmanaged1<std::remove_const_t<T> const, S>(data, n));
        space.fence();
      }
    } else {
      (void)space;
      (void)read;
    }
  }
  [[nodiscard]] T* data() {
    if constexpr (host_accessible_space<S>) {
      return data_;
    } else {
      return copy_.data();
    }
  }
  void write_back(S const& space) {
    if constexpr (!host_accessible_space<S>) {
      if (n_ != 0) {
        Kokkos::deep_copy(space, Unmanaged1<std::remove_const_t<T>, S>(data_, n_), HostUnmanaged1<std::remove_const_t<T> const>(copy_.data(), n_));
      }
    }
    space.fence();
  }

 private:
  T* data_;
  std::size_t n_;
  std::vector<std::remove_const_t<T>> copy_;  // [n] only for memory the host cannot read
};

/// A parallel_for over rows on the space that runs host code: S itself when the host can read its memory,
/// else Kokkos' default host space (over host copies).
template <class S, class F>
void for_each_row(S const& space, char const* label, std::size_t rows, F const& f) {
  if constexpr (host_accessible_space<S>) {
    Kokkos::parallel_for(label, Kokkos::RangePolicy<S>(space, 0, rows), f);
    space.fence();
  } else {
    Kokkos::DefaultHostExecutionSpace const host;
    Kokkos::parallel_for(label, Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace>(host, 0, rows), f);
    host.fence();
  }
}

}  // namespace kokkos_detail

template <KokkosSpace S>
struct KernelImpl<ops::Sample, S> {
  static void run(S const& space, ShapedView<float const, 2> logits, std::span<SamplingParams const> params,
                  std::span<LogitMask const> masks, std::span<SampleKey const> keys, LogitEdits const& edits,
                  std::span<std::uint32_t> out) {
    std::size_t const rows = logits.extent(0), vocab = logits.extent(1);
    kokkos_detail::HostRows<float const, S> lg(space, logits.data(), rows * vocab, true);  // [rows][vocab]
    kokkos_detail::HostRows<std::uint32_t, S> tok(space, out.data(), rows, false);         // [rows]
    float const* const l = lg.data();
    std::uint32_t* const o = tok.data();
    kokkos_detail::for_each_row(space, "piecrust::sample", rows, [&](std::size_t r) {
      detail::LogitRowScratch scratch;
      o[r] = detail::sample_row(l + r * vocab, vocab, params[r], masks.empty() ? detail::no_mask() : masks[r], keys[r],
                                edits.row(r), scratch);
    });
    tok.write_back(space);
  }
};

template <KokkosSpace S>
struct KernelImpl<ops::ProbeDistribution, S> {
  static void run(S const& space, ShapedView<float const, 2> logits, float temperature, std::span<LogitMask const> masks,
                  ShapedView<std::uint32_t, 2> ids, ShapedView<float, 2> probs) {
    std::size_t const rows = logits.extent(0), vocab = logits.extent(1), kk = ids.extent(1);
    kokkos_detail::HostRows<float const, S> lg(space, logits.data(), rows * vocab, true);  // [rows][vocab]
    kokkos_detail::HostRows<std::uint32_t, S> id(space, ids.data(), rows * kk, false);     // [rows][k']
    kokkos_detail::HostRows<float, S> pr(space, probs.data(), rows * kk, false);           // [rows][k']
    float const* const l = lg.data();
    std::uint32_t* const io = id.data();
    float* const po = pr.data();
    kokkos_detail::for_each_row(space, "piecrust::probe_distribution", rows, [&](std::size_t r) {
      detail::LogitRowScratch scratch;
      detail::distribution_row(l + r * vocab, vocab, temperature, masks.empty() ? detail::no_mask() : masks[r], kk, io + r * kk,
                               po + r * kk, scratch);
    });
    id.write_back(space);
    pr.write_back(space);
  }
};

template <KokkosSpace S>
struct KernelImpl<ops::ProbeLogprobs, S> {
  static void run(S const& space, ShapedView<float const, 2> logits, ShapedView<std::uint32_t const, 2> ids, float temperature,
                  std::span<LogitMask const> masks, ShapedView<float, 2> out) {
    std::size_t const rows = logits.extent(0), vocab = logits.extent(1), n = ids.extent(1);
    kokkos_detail::HostRows<float const, S> lg(space, logits.data(), rows * vocab, true);  // [rows][vocab]
    kokkos_detail::HostRows<float, S> lp(space, out.data(), rows * n, false);              // [rows][n]
    float const* const l = lg.data();
    float* const o = lp.data();
    std::uint32_t const* const want = ids.data();  // [rows][n] host memory (the interface checked it there)
    kokkos_detail::for_each_row(space, "piecrust::probe_logprobs", rows, [&](std::size_t r) {
      detail::LogitRowScratch scratch;
      detail::logprobs_row(l + r * vocab, vocab, temperature, masks.empty() ? detail::no_mask() : masks[r], want + r * n, n,
                           o + r * n, scratch);
    });
    lp.write_back(space);
  }
};

template <KokkosSpace S>
struct KernelImpl<ops::ProbeEntropy, S> {
  static void run(S const& space, ShapedView<float const, 2> logits, float temperature, std::span<LogitMask const> masks,
                  std::span<float> out) {
    std::size_t const rows = logits.extent(0), vocab = logits.extent(1);
    kokkos_detail::HostRows<float const, S> lg(space, logits.data(), rows * vocab, true);  // [rows][vocab]
    kokkos_detail::HostRows<float, S> en(space, out.data(), rows, false);                  // [rows]
    float const* const l = lg.data();
    float* const o = en.data();
    kokkos_detail::for_each_row(space, "piecrust::probe_entropy", rows, [&](std::size_t r) {
      detail::LogitRowScratch scratch;
      o[r] = detail::entropy_row(l + r * vocab, vocab, temperature, masks.empty() ? detail::no_mask() : masks[r], scratch);
    });
    en.write_back(space);
  }
};

}  // namespace piecrust
