#pragma once
// Whole-page operations on a KV cache, for the runtime's copy-on-write, export and import: compositions of
// the space's copy primitives (kernels/copy.hpp), so every space has them; a backend may specialize
// ops::CopyKvPages for a batched kernel. Every call validates all page ids before it copies anything.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "piecrust/core/error.hpp"
#include "piecrust/core/page_table.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/kernels/copy.hpp"
#include "piecrust/kernels/kv_cache.hpp"

namespace piecrust {
namespace ops {
struct CopyKvPages {};
}  // namespace ops

namespace detail {
template <class T, class Mem>
void check_kv_page(std::string_view op, KvCache<T, Mem> const& kv, std::size_t i, std::uint32_t page) {
  if (page >= kv.num_pages()) fail<OutOfRange>(op, ": page ids[", i, "] = ", page, " >= num_pages = ", kv.num_pages());
}
}  // namespace detail

/// For every copy c and every layer: page c.to := page c.from (all K and V slots). Copies run in order.
template <ExecutionSpace S, class T, class Mem>
void copy_kv_pages(S const& space, KvCache<T, Mem>& kv, std::span<PageCopy const> copies) {
  for (std::size_t i = 0; i < copies.size(); ++i) {
    detail::check_kv_page("copy_kv_pages", kv, i, copies[i].from);
    detail::check_kv_page("copy_kv_pages", kv, i, copies[i].to);
  }
  if (copies.empty()) return;
  if constexpr (HasKernel<ops::CopyKvPages, S>) {
    for (std::size_t l = 0; l < kv.num_layers(); ++l) KernelImpl<ops::CopyKvPages, S>::run(space, kv.layer(l), copies);
  } else {
    std::size_t const n = kv.page_elements();
    for (std::size_t l = 0; l < kv.num_layers(); ++l) {
      T* const base = kv.layer(l).data;
      for (PageCopy const& c : copies) {
        if (c.from == c.to) continue;
        copy_in_space(space, std::span<T>(base + std::size_t{c.to} * n, n), std::span<T const>(base + std::size_t{c.from} * n, n));
      }
    }
  }
}

/// The export layout: out holds pages.size() records of num_layers x page_bytes() bytes, record i being
/// page pages[i] of layer 0, then of layer 1, ... (host memory; complete when it returns).
template <ExecutionSpace S, class T, class Mem>
void read_kv_pages(S const& space, KvCache<T, Mem> const& kv, std::span<std::uint32_t const> pages, std::span<std::byte> out) {
  std::size_t const pb = kv.page_bytes(), record = kv.num_layers() * pb;
  detail::check_extent("read_kv_pages", "out.size()", out.size(), pages.size() * record);
  for (std::size_t i = 0; i < pages.size(); ++i) detail::check_kv_page("read_kv_pages", kv, i, pages[i]);
  for (std::size_t i = 0; i < pages.size(); ++i) {
    for (std::size_t l = 0; l < kv.num_layers(); ++l) {
      auto const* src = reinterpret_cast<std::byte const*>(kv.layer(l).data + std::size_t{pages[i]} * kv.page_elements());
      copy_to_host(space, out.subspan(i * record + l * pb, pb), std::span<std::byte const>(src, pb));
    }
  }
}

/// The inverse of read_kv_pages: page pages[i] of every layer := record i of `in` (host memory, the
/// export layout). Throws before writing anything on a bad page id or size.
template <ExecutionSpace S, class T, class Mem>
void write_kv_pages(S const& space, KvCache<T, Mem>& kv, std::span<std::uint32_t const> pages, std::span<std::byte const> in) {
  std::size_t const pb = kv.page_bytes(), record = kv.num_layers() * pb;
  detail::check_extent("write_kv_pages", "in.size()", in.size(), pages.size() * record);
  for (std::size_t i = 0; i < pages.size(); ++i) detail::check_kv_page("write_kv_pages", kv, i, pages[i]);
  for (std::size_t i = 0; i < pages.size(); ++i) {
    for (std::size_t l = 0; l < kv.num_layers(); ++l) {
      auto* dst = reinterpret_cast<std::byte*>(kv.layer(l).data + std::size_t{pages[i]} * kv.page_elements());
      copy_to_space(space, std::span<std::byte>(dst, pb), in.subspan(i * record + l * pb, pb));
    }
  }
}

}  // namespace piecrust
