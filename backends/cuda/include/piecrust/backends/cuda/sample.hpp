#pragma once
// Cuda implementation of sample: one block of 1024 threads per row, every sampler of SamplingParams,
// after the row's LogitMask, without sorting the vocabulary (pivot search, detail/logit_rows.hpp), and
// with the host's Philox convention: u = uniform_from_key(key) computed on the device from
// (seed, row, step), then the inverse CDF over the kept ids in increasing id order. The kept set is the
// host's exactly, so a row draws the same token as on the host unless u lies within float rounding of
// a CDF boundary (weights are expf on the device, std::exp on the host).
//
// Logit bias and penalties (LogitEdits, computed on the host from token ids only) are uploaded with the
// call; an edited row is copied into a device workspace ([edited rows][vocab]) and edited there by its block.
//
// Arguments: logits is device memory (InvalidArgument otherwise). params, masks and keys are host
// objects, uploaded with the call (one copy). out may be device memory (the call stays asynchronous)
// or host memory (the call then copies the tokens back and waits: the least surprising behaviour for a
// caller that reads them right away).
//
// Floor: one read of the row per pass. Greedy, temperature and min-p make 2-3 passes, top-k 6-7, top-p
// and top-k+top-p 7-12 (4 pivot passes per search); a 128k-vocab f32 row is 0.5 MB, resident in L2
// after the first pass. One block per row is latency-bound for small batches (a single SM streams a
// few hundred GB/s): a 128k row costs on the order of 10-30 us, against the ~0.15 us a whole-GPU read
// of one row would take at 3.35 TB/s.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "piecrust/backends/cuda/detail/logit_rows.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/kernels/philox.hpp"
#include "piecrust/kernels/sample.hpp"

namespace piecrust::gpu::detail {

/// One row's sampler as the device reads it: the host's derived constants precomputed on the host
/// with the host's own functions (1 / temperature, std::log(min_p)), so both sides compare equal values.
struct SampleRow {
  SampleKey key;
  std::uint32_t kind;
  std::uint32_t top_k;
  float top_p;
  float inv_t;
  float log_min;
};

inline SampleRow sample_row_of(SamplingParams const& p, SampleKey const& key) {
  return SampleRow{key,     static_cast<std::uint32_t>(p.kind), p.top_k,
                   p.top_p, 1.0f / p.effective_temperature(),   std::log(p.min_p)};
}

inline void require_device_logits(char const* op, void const* logits, std::size_t size) {
  if (size != 0 && is_host_pointer(logits)) {
    piecrust::detail::fail<InvalidArgument>(
        op, ": logits points to host memory; on the Cuda space logits must be device memory");
  }
  (void)op;
}

#if PIECRUST_DEVICE_COMPILE

/// A template (of nothing) so that the header may be included by any number of translation units.
template <int = 0>
__global__ void __launch_bounds__(row_threads)
    sample_kernel(float const* logits, std::uint32_t vocab, SampleRow const* rows, std::uint32_t const* mask_offsets,
                  std::uint32_t const* mask_words, std::uint32_t const* edit_offsets, LogitEdit const* edits,
                  std::uint32_t const* edit_slots, float* adjusted, std::uint32_t* out) {
  __shared__ RowShared sh;
  std::size_t const r = blockIdx.x;
  float const* l = logits + r * vocab;
  if (edit_offsets != nullptr && edit_offsets[r + 1] > edit_offsets[r]) {
    // The row's logit bias and penalties, applied to its copy in the workspace (ids are distinct: no races;
    // __syncthreads makes the block's global writes visible to the whole block).
    float* const a = adjusted + static_cast<std::size_t>(edit_slots[r]) * vocab;
    for (std::uint32_t i = threadIdx.x; i < vocab; i += blockDim.x) a[i] = l[i];
    __syncthreads();
    for (std::uint32_t j = edit_offsets[r] + threadIdx.x; j < edit_offsets[r + 1]; j += blockDim.x) {
      a[edits[j].id] = apply_logit_edit(edits[j], a[edits[j].id]);
    }
    __syncthreads();
    l = a;
  }
  SampleRow const p = rows[r];
  RowMask const mask = row_mask(mask_offsets, mask_words, r);
  float lmax = 0.0f;
  std::uint32_t arg = 0;
  row_argmax(l, vocab, mask, sh, lmax, arg);
  if (p.kind == static_cast<std::uint32_t>(SamplingKind::greedy)) {
    if (threadIdx.x == 0) out[r] = arg;
    return;
  }
  double const u = uniform_from_key(p.key);
  float const inv_t = p.inv_t;
  auto weight = [&](std::uint32_t i) { return expf((l[i] - lmax) * inv_t); };
  auto allowed = [&](std::uint32_t i) { return mask.allows(i); };
  std::uint32_t token = 0;
  switch (static_cast<SamplingKind>(p.kind)) {
    case SamplingKind::top_k:
    case SamplingKind::top_k_top_p: {
      Cut const kc = pivot_search<false>(l, vocab, allowed, weight, p.top_k, sh);
      auto in_k = [&](std::uint32_t i) { return allowed(i) && kc.keeps(order_key(l[i]), i); };
      if (p.kind == static_cast<std::uint32_t>(SamplingKind::top_k)) {
        token = pick_in_id_order(vocab, in_k, weight, u, sh);
        break;
      }
      unsigned long long part = 0;
      for (std::uint32_t i = threadIdx.x; i < vocab; i += blockDim.x) part += in_k(i) ? to_fixed(weight(i)) : 0ull;
      unsigned long long const total = block_reduce(part, Sum{}, sh.u64);
      unsigned long long need =
          static_cast<unsigned long long>(static_cast<double>(p.top_p) * static_cast<double>(total));
      need = need < 1 ? 1 : need;
      Cut const pc = pivot_search<true>(l, vocab, in_k, weight, need, sh);
      float const log_min = p.log_min;  // min-p on top (-inf for min_p = 0)
      token = pick_in_id_order(
          vocab,
          [&](std::uint32_t i) { return in_k(i) && pc.keeps(order_key(l[i]), i) && (l[i] - lmax) * inv_t >= log_min; },
          weight, u, sh);
      break;
    }
    case SamplingKind::top_p: {
      unsigned long long part = 0;
      for (std::uint32_t i = threadIdx.x; i < vocab; i += blockDim.x) part += allowed(i) ? to_fixed(weight(i)) : 0ull;
      unsigned long long const total = block_reduce(part, Sum{}, sh.u64);
      unsigned long long need =
          static_cast<unsigned long long>(static_cast<double>(p.top_p) * static_cast<double>(total));
      need = need < 1 ? 1 : need;
      Cut const pc = pivot_search<true>(l, vocab, allowed, weight, need, sh);
      token = pick_in_id_order(
          vocab, [&](std::uint32_t i) { return allowed(i) && pc.keeps(order_key(l[i]), i); }, weight, u, sh);
      break;
    }
    case SamplingKind::min_p: {
      float const log_min = p.log_min;  // -inf for min_p = 0: everything kept
      token = pick_in_id_order(
          vocab, [&](std::uint32_t i) { return allowed(i) && (l[i] - lmax) * inv_t >= log_min; }, weight, u, sh);
      break;
    }
    default:
      token = pick_in_id_order(vocab, allowed, weight, u, sh);
      break;  // temperature, multinomial
  }
  if (threadIdx.x == 0) out[r] = token;
}

#endif  // PIECRUST_DEVICE_COMPILE

}  // namespace piecrust::gpu::detail

#if PIECRUST_DEVICE_COMPILE
namespace piecrust {

template <>
struct KernelImpl<ops::Sample, Cuda> {
  static void run(Cuda const& space, ShapedView<float const, 2> logits, std::span<SamplingParams const> params,
                  std::span<LogitMask const> masks, std::span<SampleKey const> keys, LogitEdits const& edits,
                  std::span<std::uint32_t> out) {
    std::size_t const rows = logits.extent(0);
    std::size_t const vocab = logits.extent(1);
    if (vocab > gpu::detail::max_vocab) {
      detail::fail<Unsupported>("sample: vocab = ", vocab, " exceeds the Cuda sampler's limit of ",
                                gpu::detail::max_vocab);
    }
    if (rows == 0) return;
    gpu::detail::require_device_logits("sample", logits.data(), logits.size());
    bool const host_out = gpu::detail::is_host_pointer(out.data());
    std::vector<gpu::detail::SampleRow> prepared(rows);  // [rows]
    for (std::size_t r = 0; r < rows; ++r) prepared[r] = gpu::detail::sample_row_of(params[r], keys[r]);
    gpu::DeviceGuard guard(space.device());
    gpu::Scratch& scratch = space.scratch();
    scratch.begin();
    auto const d_rows = scratch.upload(std::span<gpu::detail::SampleRow const>(prepared));
    gpu::detail::MaskBits const mb = gpu::detail::stage_masks(scratch, rows, vocab, masks);
    std::vector<std::uint32_t> slots;  // [rows] a row's slot in the adjusted workspace (rows with edits)
    std::size_t edited = 0;
    if (!edits.empty()) {
      slots.resize(rows, 0);
      for (std::size_t r = 0; r < rows; ++r) {
        if (!edits.row(r).empty()) slots[r] = static_cast<std::uint32_t>(edited++);
      }
    }
    auto const d_edit_offsets = scratch.upload(std::span<std::uint32_t const>(edits.offsets));  // [rows + 1] or empty
    auto const d_edits = scratch.upload(std::span<LogitEdit const>(edits.edits));
    auto const d_slots = scratch.upload(std::span<std::uint32_t const>(slots));
    auto const d_adjusted = scratch.workspace<float>(edited * vocab);  // [edited rows][vocab]
    auto const d_out = scratch.workspace<std::uint32_t>(host_out ? rows : 0);  // [rows] when out is host memory
    scratch.commit();
    std::uint32_t* const dst = host_out ? scratch.get(d_out) : out.data();
    PIECRUST_GPU_LAUNCH(gpu::detail::sample_kernel<>, static_cast<unsigned>(rows), gpu::detail::row_threads, 0,
                        space.stream(), logits.data(), static_cast<std::uint32_t>(vocab), scratch.get(d_rows),
                        scratch.get(mb.offsets), scratch.get(mb.words), edits.empty() ? nullptr : scratch.get(d_edit_offsets),
                        scratch.get(d_edits), scratch.get(d_slots), scratch.get(d_adjusted), dst);
    gpu::check_launch("sample_kernel");
    if (host_out) {
      gpu::memcpy_async(out.data(), dst, rows * sizeof(std::uint32_t), space.stream());
      space.fence();
    }
  }
};

}  // namespace piecrust
#endif
