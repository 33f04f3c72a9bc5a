#pragma once
// append_kv: writes new K and V rows into token slots of (working) KV pages.

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/shaped_view.hpp"
#include "piecrust/kernels/detail/check.hpp"
#include "piecrust/kernels/paged_kv.hpp"

namespace piecrust {
namespace ops {
struct AppendKv {};
}  // namespace ops

namespace detail {
/// Checks append_kv's arguments (k and v as [tokens][num_kv_heads][head_dim] of any element type).
template <class T, class KV, class VV>
void check_append_kv(char const* op, PagedKv<T> const& kv, KV const& k, VV const& v, std::span<std::uint32_t const> slots) {
  kv.validate(op);
  check_extent(op, "slots.size()", slots.size(), k.extent(0));
  check_extent(op, "k.extent(1) (num_kv_heads)", k.extent(1), kv.num_kv_heads);
  check_extent(op, "k.extent(2) (head_dim)", k.extent(2), kv.head_dim);
  for (std::size_t d = 0; d < 3; ++d) check_extent(op, "v.extent(d)", v.extent(d), k.extent(d));
  std::size_t const total = kv.num_pages * kv.page_size;
  std::vector<bool> seen(total, false);
  for (std::size_t t = 0; t < slots.size(); ++t) {
    if (slots[t] >= total) fail<OutOfRange>(op, ": slots[", t, "] = ", slots[t], " >= num_pages * page_size = ", total);
    if (seen[slots[t]]) fail<InvalidArgument>(op, ": slots[", t, "] = ", slots[t], " appears twice");
    seen[slots[t]] = true;
  }
}
}  // namespace detail

/// Writes token t's K and V to physical slot slots[t] = page * page_size + offset of the pool
/// (vLLM's slot_mapping; append_kv_slots below derives it from FlashInfer's page table).
///   k, v  [tokens][num_kv_heads][head_dim]
///   slots [tokens]
/// Throws OutOfRange for a slot past the pool and InvalidArgument for shape mismatches or a slot that
/// appears twice, before writing anything.
template <ExecutionSpace S, class T>
  requires KvElement<T>
void append_kv(S const& space, PagedKv<T> kv, ShapedView<float const, 3> k, ShapedView<float const, 3> v,
               std::span<std::uint32_t const> slots) {
  static_assert(HasKernel<ops::AppendKv, S>,
                "piecrust::append_kv: this execution space does not implement op AppendKv "
                "(no KernelImpl<ops::AppendKv, Space> specialization is visible)");
  if constexpr (HasKernel<ops::AppendKv, S>) {
    detail::check_append_kv("append_kv", kv, k, v, slots);
    KernelImpl<ops::AppendKv, S>::run(space, kv, k, v, slots);
  }
}

/// The physical slot of each new token from FlashInfer's page table: token t belongs to request
/// batch_indices[t] and goes to its logical position positions_in_kv[t] (0-based within that request's
/// KV), i.e. page kv_indices[kv_indptr[b] + pos / page_size], offset pos % page_size.
///   batch_indices [tokens], positions_in_kv [tokens], kv_indptr [batch + 1], kv_indices [kv_indptr[batch]]
[[nodiscard]] inline std::vector<std::uint32_t> append_kv_slots(std::size_t page_size,
                                                                std::span<std::uint32_t const> batch_indices,
                                                                std::span<std::uint32_t const> positions_in_kv,
                                                                std::span<std::uint32_t const> kv_indptr,
                                                                std::span<std::uint32_t const> kv_indices) {
  if (page_size == 0) detail::fail<InvalidArgument>("append_kv_slots: page_size = 0");
  detail::check_extent("append_kv_slots", "positions_in_kv.size()", positions_in_kv.size(), batch_indices.size());
  if (kv_indptr.empty()) detail::fail<InvalidArgument>("append_kv_slots: kv_indptr is empty (needs batch + 1 entries)");
  std::size_t const batch = kv_indptr.size() - 1;
  std::vector<std::uint32_t> slots(batch_indices.size());  // [tokens]
  for (std::size_t t = 0; t < batch_indices.size(); ++t) {
    std::uint32_t const b = batch_indices[t];
    if (b >= batch) detail::fail<OutOfRange>("append_kv_slots: batch_indices[", t, "] = ", b, " >= batch = ", batch);
    std::size_t const page = positions_in_kv[t] / page_size;
    std::size_t const num_pages = kv_indptr[b + 1] - kv_indptr[b];
    if (kv_indptr[b + 1] < kv_indptr[b] || page >= num_pages || kv_indptr[b + 1] > kv_indices.size()) {
      detail::fail<OutOfRange>("append_kv_slots: positions_in_kv[", t, "] = ", positions_in_kv[t], " is in logical page ",
                               page, " but request ", b, " has ", num_pages, " pages");
    }
    slots[t] = static_cast<std::uint32_t>(std::size_t{kv_indices[kv_indptr[b] + page]} * page_size +
                                          positions_in_kv[t] % page_size);
  }
  return slots;
}

}  // namespace piecrust
