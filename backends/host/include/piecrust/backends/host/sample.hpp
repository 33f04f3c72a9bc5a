#pragma once
// Host implementation of sample: rows in parallel, each on one thread with reusable scratch (a row with
// logit edits is adjusted in that scratch).

#include <cstddef>
#include <cstdint>
#include <span>

#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/kernels/detail/logit_rows.hpp"
#include "piecrust/kernels/sample.hpp"

namespace piecrust {

template <>
struct KernelImpl<ops::Sample, Host> {
  static void run(Host const& space, ShapedView<float const, 2> logits, std::span<SamplingParams const> params,
                  std::span<LogitMask const> masks, std::span<SampleKey const> keys, LogitEdits const& edits,
                  std::span<std::uint32_t> out) {
    std::size_t const vocab = logits.extent(1);
    space.parallel_for(logits.extent(0), [&](std::size_t begin, std::size_t end) {
      detail::LogitRowScratch scratch;
      for (std::size_t r = begin; r < end; ++r) {
        LogitMask const& mask = masks.empty() ? detail::no_mask() : masks[r];
        out[r] = detail::sample_row(logits.data() + r * vocab, vocab, params[r], mask, keys[r], edits.row(r), scratch);
      }
    });
  }
};

}  // namespace piecrust
