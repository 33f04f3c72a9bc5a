#pragma once
// Cuda implementations of the probes, one block per row (detail/logit_rows.hpp), the host's numerics:
// lmax over the allowed ids, w = expf((l - lmax) / T) summed in double, log Z = log(sum w).
//  * probe_entropy: H = log Z - E[(l - lmax) / T], clamped at 0. Floor: two passes over the row.
//  * probe_logprobs: log p(id) for given ids (-inf for masked ids). Floor: two passes plus the ids.
//  * probe_distribution: the first k tokens of the order (k = 0: the whole vocabulary), then forbidden
//    ids ascending with probability 0. A pivot search selects the k tokens without a sort; only those k
//    are sorted (a bitonic sort of (key, id) pairs in the space's scratch, one block per row), so the
//    cost is ~6 passes over the row plus O(k log^2 k). k = 0 sorts the whole allowed vocabulary: the
//    output itself is then vocab-sized.
//
// Arguments: logits is device memory; masks are host objects; probe_logprobs' ids are a host view (the
// interface reads them on the host to validate them) and are uploaded. Outputs may be device memory
// (asynchronous) or host memory (the call copies back and waits).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "piecrust/backends/cuda/detail/logit_rows.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/sample.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/kernels/probe.hpp"

#if PIECRUST_DEVICE_COMPILE
namespace piecrust {
namespace gpu::detail {

/// A template (of nothing) so that the header may be included by any number of translation units.
template <int = 0>
__global__ void __launch_bounds__(row_threads)
    entropy_kernel(float const* logits, std::uint32_t vocab, float inv_t, std::uint32_t const* mask_offsets,
                   std::uint32_t const* mask_words, float* out) {
  __shared__ RowShared sh;
  std::size_t const r = blockIdx.x;
  Normalizer const n = normalize(logits + r * vocab, vocab, row_mask(mask_offsets, mask_words, r), inv_t, sh);
  if (threadIdx.x == 0) {
    double const h = n.log_z - n.sum_wd / n.sum_w;
    out[r] = static_cast<float>(h > 0.0 ? h : 0.0);
  }
}

/// A template (of nothing) so that the header may be included by any number of translation units.
template <int = 0>
__global__ void __launch_bounds__(row_threads)
    logprobs_kernel(float const* logits, std::uint32_t vocab, float inv_t, std::uint32_t const* mask_offsets,
                    std::uint32_t const* mask_words, std::uint32_t const* ids, std::size_t n_ids, float* out) {
  __shared__ RowShared sh;
  std::size_t const r = blockIdx.x;
  float const* l = logits + r * vocab;
  RowMask const mask = row_mask(mask_offsets, mask_words, r);
  Normalizer const n = normalize(l, vocab, mask, inv_t, sh);
  for (std::size_t j = threadIdx.x; j < n_ids; j += blockDim.x) {
    std::uint32_t const id = ids[r * n_ids + j];
    out[r * n_ids + j] = mask.allows(id) ? static_cast<float>(static_cast<double>((l[id] - n.lmax) * inv_t) - n.log_z)
                                         : -std::numeric_limits<float>::infinity();
  }
}

/// Calls f(i, rank) for the ids with pred(i), rank = how many such ids precede i; in tiles of id order.
template <class Pred, class F>
__device__ void for_each_ranked(std::uint32_t vocab, Pred pred, F f, RowShared& sh) {
  std::uint32_t carry = 0;
  std::uint32_t const tile = blockDim.x * scan_items;
  for (std::uint32_t base = 0; base < vocab; base += tile) {
    std::uint32_t const first = base + threadIdx.x * scan_items;
    std::uint32_t mine = 0;
    for (int k = 0; k < scan_items; ++k) mine += (first + k < vocab && pred(first + k)) ? 1u : 0u;
    std::uint32_t total = 0;
    std::uint32_t rank = carry + block_exclusive_scan(mine, total, sh.u32);
    for (int k = 0; k < scan_items; ++k) {
      if (first + k < vocab && pred(first + k)) f(first + k, rank++);
    }
    carry += total;
  }
}

/// Sorts a[0, cap) ascending (cap a power of two) with the block: a bitonic network in global memory.
__device__ inline void block_bitonic_sort(unsigned long long* a, std::uint32_t cap) {
  for (std::uint32_t size = 2; size <= cap; size <<= 1) {
    for (std::uint32_t stride = size / 2; stride > 0; stride >>= 1) {
      for (std::uint32_t i = threadIdx.x; i < cap / 2; i += blockDim.x) {
        std::uint32_t const lo = 2 * i - (i & (stride - 1));
        std::uint32_t const hi = lo + stride;
        bool const ascending = (lo & size) == 0;
        unsigned long long const x = a[lo];
        unsigned long long const y = a[hi];
        if ((x > y) == ascending) {
          a[lo] = y;
          a[hi] = x;
        }
      }
      __syncthreads();
    }
  }
}

/// A template (of nothing) so that the header may be included by any number of translation units.
template <int = 0>
__global__ void __launch_bounds__(row_threads)
    distribution_kernel(float const* logits, std::uint32_t vocab, float inv_t, std::uint32_t const* mask_offsets,
                        std::uint32_t const* mask_words, std::uint32_t kk, std::uint32_t cap, unsigned long long* work,
                        std::uint32_t* ids, float* probs) {
  __shared__ RowShared sh;
  std::size_t const r = blockIdx.x;
  float const* l = logits + r * vocab;
  RowMask const mask = row_mask(mask_offsets, mask_words, r);
  unsigned long long* a = work + r * cap;  // [cap] sort keys: (~order key) << 32 | id, padding all ones
  std::uint32_t* out_ids = ids + r * kk;
  float* out_probs = probs + r * kk;
  Normalizer const n = normalize(l, vocab, mask, inv_t, sh);
  auto allowed = [&](std::uint32_t i) { return mask.allows(i); };
  unsigned long long part = 0;
  for (std::uint32_t i = threadIdx.x; i < vocab; i += blockDim.x) part += allowed(i) ? 1ull : 0ull;
  std::uint32_t const allowed_count = static_cast<std::uint32_t>(block_reduce(part, Sum{}, sh.u64));
  std::uint32_t const n_kept = kk < allowed_count ? kk : allowed_count;
  Cut const c = pivot_search<false>(
      l, vocab, allowed, [](std::uint32_t) { return 0.0f; }, n_kept, sh);
  for_each_ranked(
      vocab, [&](std::uint32_t i) { return allowed(i) && c.keeps(order_key(l[i]), i); },
      [&](std::uint32_t i, std::uint32_t rank) {
        a[rank] = (static_cast<unsigned long long>(~order_key(l[i])) << 32) | i;
      },
      sh);
  for (std::uint32_t j = n_kept + threadIdx.x; j < cap; j += blockDim.x) a[j] = ~0ull;
  __syncthreads();
  block_bitonic_sort(a, cap);
  for (std::uint32_t j = threadIdx.x; j < n_kept; j += blockDim.x) {
    std::uint32_t const id = static_cast<std::uint32_t>(a[j] & 0xffffffffu);
    out_ids[j] = id;
    out_probs[j] = static_cast<float>(exp(static_cast<double>((l[id] - n.lmax) * inv_t) - n.log_z));
  }
  if (n_kept < kk) {
    for_each_ranked(
        vocab, [&](std::uint32_t i) { return !allowed(i); },
        [&](std::uint32_t i, std::uint32_t rank) {
          if (n_kept + rank < kk) {
            out_ids[n_kept + rank] = i;
            out_probs[n_kept + rank] = 0.0f;
          }
        },
        sh);
  }
}

/// An output that may be host memory: kernels write `device()`; finish() copies back and waits.
template <class T>
struct Output {
  T* user = nullptr;
  std::size_t count = 0;
  bool host = false;
  Staged<T> staged{};

  Output(Scratch& scratch, T* p, std::size_t n) : user(p), count(n), host(n != 0 && is_host_pointer(p)) {
    staged = scratch.workspace<T>(host ? n : 0);
  }
  [[nodiscard]] T* device(Scratch const& scratch) const { return host ? scratch.get(staged) : user; }
  void finish(Cuda const& space, Scratch const& scratch, bool fence = true) const {
    if (!host) return;
    memcpy_async(user, scratch.get(staged), count * sizeof(T), space.stream());
    if (fence) space.fence();
  }
};

inline void check_probe_vocab(char const* op, std::size_t vocab) {
  if (vocab > max_vocab)
    piecrust::detail::fail<Unsupported>(op, ": vocab = ", vocab, " exceeds the Cuda probes' limit of ", max_vocab);
}

}  // namespace gpu::detail

template <>
struct KernelImpl<ops::ProbeEntropy, Cuda> {
  static void run(Cuda const& space, ShapedView<float const, 2> logits, float temperature,
                  std::span<LogitMask const> masks, std::span<float> out) {
    std::size_t const rows = logits.extent(0);
    std::size_t const vocab = logits.extent(1);
    gpu::detail::check_probe_vocab("probe_entropy", vocab);
    if (rows == 0) return;
    gpu::detail::require_device_logits("probe_entropy", logits.data(), logits.size());
    gpu::DeviceGuard guard(space.device());
    gpu::Scratch& scratch = space.scratch();
    scratch.begin();
    gpu::detail::MaskBits const mb = gpu::detail::stage_masks(scratch, rows, vocab, masks);
    gpu::detail::Output<float> const o(scratch, out.data(), rows);
    scratch.commit();
    PIECRUST_GPU_LAUNCH(gpu::detail::entropy_kernel<>, static_cast<unsigned>(rows), gpu::detail::row_threads, 0,
                        space.stream(), logits.data(), static_cast<std::uint32_t>(vocab), 1.0f / temperature,
                        scratch.get(mb.offsets), scratch.get(mb.words), o.device(scratch));
    gpu::check_launch("entropy_kernel");
    o.finish(space, scratch);
  }
};

template <>
struct KernelImpl<ops::ProbeLogprobs, Cuda> {
  static void run(Cuda const& space, ShapedView<float const, 2> logits, ShapedView<std::uint32_t const, 2> ids,
                  float temperature, std::span<LogitMask const> masks, ShapedView<float, 2> out) {
    std::size_t const rows = logits.extent(0);
    std::size_t const vocab = logits.extent(1);
    gpu::detail::check_probe_vocab("probe_logprobs", vocab);
    if (rows == 0 || ids.extent(1) == 0) return;
    gpu::detail::require_device_logits("probe_logprobs", logits.data(), logits.size());
    gpu::DeviceGuard guard(space.device());
    gpu::Scratch& scratch = space.scratch();
    scratch.begin();
    gpu::detail::MaskBits const mb = gpu::detail::stage_masks(scratch, rows, vocab, masks);
    auto const d_ids = scratch.upload(ids.flat());
    gpu::detail::Output<float> const o(scratch, out.data(), out.size());
    scratch.commit();
    PIECRUST_GPU_LAUNCH(gpu::detail::logprobs_kernel<>, static_cast<unsigned>(rows), gpu::detail::row_threads, 0,
                        space.stream(), logits.data(), static_cast<std::uint32_t>(vocab), 1.0f / temperature,
                        scratch.get(mb.offsets), scratch.get(mb.words), scratch.get(d_ids), ids.extent(1),
                        o.device(scratch));
    gpu::check_launch("logprobs_kernel");
    o.finish(space, scratch);
  }
};

template <>
struct KernelImpl<ops::ProbeDistribution, Cuda> {
  static void run(Cuda const& space, ShapedView<float const, 2> logits, float temperature,
                  std::span<LogitMask const> masks, ShapedView<std::uint32_t, 2> ids, ShapedView<float, 2> probs) {
    std::size_t const rows = logits.extent(0);
    std::size_t const vocab = logits.extent(1);
    std::size_t const kk = ids.extent(1);
    gpu::detail::check_probe_vocab("probe_distribution", vocab);
    if (rows == 0 || kk == 0) return;
    gpu::detail::require_device_logits("probe_distribution", logits.data(), logits.size());
    std::uint32_t cap = 1;
    while (cap < kk) cap <<= 1;  // kk <= vocab <= 2^23
    gpu::DeviceGuard guard(space.device());
    gpu::Scratch& scratch = space.scratch();
    scratch.begin();
    gpu::detail::MaskBits const mb = gpu::detail::stage_masks(scratch, rows, vocab, masks);
    auto const work = scratch.workspace<unsigned long long>(rows * cap);  // [rows][cap]
    gpu::detail::Output<std::uint32_t> const oi(scratch, ids.data(), ids.size());
    gpu::detail::Output<float> const op(scratch, probs.data(), probs.size());
    scratch.commit();
    PIECRUST_GPU_LAUNCH(gpu::detail::distribution_kernel<>, static_cast<unsigned>(rows), gpu::detail::row_threads, 0,
                        space.stream(), logits.data(), static_cast<std::uint32_t>(vocab), 1.0f / temperature,
                        scratch.get(mb.offsets), scratch.get(mb.words), static_cast<std::uint32_t>(kk), cap,
                        scratch.get(work), oi.device(scratch), op.device(scratch));
    gpu::check_launch("distribution_kernel");
    oi.finish(space, scratch, false);
    op.finish(space, scratch);
  }
};

}  // namespace piecrust
#endif
