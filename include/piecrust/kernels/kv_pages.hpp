#pragma once
// Whole-page operations on a KV cache, for the runtime's copy-on-write, export and import: compositions of
// the space's copy primitives (kernels/copy.hpp), so every space has them; a backend may specialize
// ops::CopyKvPages for a batched kernel. Every call validates all page ids before it copies anything.
// Window layers (KvCache::is_window_layer) are addressed by the pages' window page ids (PagePool's window
// store); a page whose window page is gone (no_window_page) has no K/V in those layers.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

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
template <class T, class Mem>
void check_window_page(std::string_view op, KvCache<T, Mem> const& kv, std::size_t i, WindowPageId page) {
  if (page != no_window_page && page >= kv.num_window_pages()) {
    fail<OutOfRange>(op, ": window page ids[", i, "] = ", page, " >= num_window_pages = ", kv.num_window_pages());
  }
}
/// The window pages of `pages` for a cache with window layers: `window` itself, checked; empty without.
template <class T, class Mem>
void check_window_pages(std::string_view op, KvCache<T, Mem> const& kv, std::size_t pages,
                        std::span<WindowPageId const> window) {
  if (kv.num_window_pages() == 0) return;
  check_extent(op, "window_pages.size()", window.size(), pages);
  for (std::size_t i = 0; i < window.size(); ++i) check_window_page(op, kv, i, window[i]);
}
}  // namespace detail

/// For every copy c and every layer: page c.to := page c.from (all K and V slots); in window layers the
/// window pages c.window_to := c.window_from. Copies run in order.
template <ExecutionSpace S, class T, class Mem>
void copy_kv_pages(S const& space, KvCache<T, Mem>& kv, std::span<PageCopy const> copies) {
  for (std::size_t i = 0; i < copies.size(); ++i) {
    detail::check_kv_page("copy_kv_pages", kv, i, copies[i].from);
    detail::check_kv_page("copy_kv_pages", kv, i, copies[i].to);
    if (kv.num_window_pages() > 0) {
      detail::check_window_page("copy_kv_pages", kv, i, copies[i].window_from);
      detail::check_window_page("copy_kv_pages", kv, i, copies[i].window_to);
    }
  }
  if (copies.empty()) return;
  std::vector<PageCopy> window;  // [copies with both window pages] as plain page copies of the window pools
  if (kv.num_window_pages() > 0) {
    for (PageCopy const& c : copies) {
      if (c.window_from != no_window_page && c.window_to != no_window_page) window.push_back(PageCopy{c.window_from, c.window_to});
    }
  }
  for (std::size_t l = 0; l < kv.num_layers(); ++l) {
    std::span<PageCopy const> const mine = kv.is_window_layer(l) ? std::span<PageCopy const>(window) : copies;
    if (mine.empty()) continue;
    if constexpr (HasKernel<ops::CopyKvPages, S>) {
      KernelImpl<ops::CopyKvPages, S>::run(space, kv.layer(l), mine);
    } else {
      std::size_t const n = kv.page_elements();
      T* const base = kv.layer(l).data;
      for (PageCopy const& c : mine) {
        if (c.from == c.to) continue;
        copy_in_space(space, std::span<T>(base + std::size_t{c.to} * n, n), std::span<T const>(base + std::size_t{c.from} * n, n));
      }
    }
  }
}

/// The export layout: out holds pages.size() records of num_layers x page_bytes() bytes, record i being
/// page pages[i] of layer 0, then of layer 1, ... (host memory; complete when it returns). A window layer's
/// part comes from window_pages[i] (one per page when the cache has window layers), zeros for no_window_page.
template <ExecutionSpace S, class T, class Mem>
void read_kv_pages(S const& space, KvCache<T, Mem> const& kv, std::span<std::uint32_t const> pages, std::span<std::byte> out,
                   std::span<WindowPageId const> window_pages = {}) {
  std::size_t const pb = kv.page_bytes(), record = kv.num_layers() * pb;
  detail::check_extent("read_kv_pages", "out.size()", out.size(), pages.size() * record);
  for (std::size_t i = 0; i < pages.size(); ++i) detail::check_kv_page("read_kv_pages", kv, i, pages[i]);
  detail::check_window_pages("read_kv_pages", kv, pages.size(), window_pages);
  for (std::size_t i = 0; i < pages.size(); ++i) {
    for (std::size_t l = 0; l < kv.num_layers(); ++l) {
      std::span<std::byte> const dst = out.subspan(i * record + l * pb, pb);
      std::uint32_t const page = kv.is_window_layer(l) ? window_pages[i] : pages[i];
      if (page == no_window_page) {
        std::fill(dst.begin(), dst.end(), std::byte{0});
        continue;
      }
      auto const* src = reinterpret_cast<std::byte const*>(kv.layer(l).data + std::size_t{page} * kv.page_elements());
      copy_to_host(space, dst, std::span<std::byte const>(src, pb));
    }
  }
}

/// The inverse of read_kv_pages: page pages[i] of every layer := record i of `in` (host memory, the
/// export layout); window layers into window_pages[i] (nothing for no_window_page). Throws before writing
/// anything on a bad page id or size.
template <ExecutionSpace S, class T, class Mem>
void write_kv_pages(S const& space, KvCache<T, Mem>& kv, std::span<std::uint32_t const> pages, std::span<std::byte const> in,
                    std::span<WindowPageId const> window_pages = {}) {
  std::size_t const pb = kv.page_bytes(), record = kv.num_layers() * pb;
  detail::check_extent("write_kv_pages", "in.size()", in.size(), pages.size() * record);
  for (std::size_t i = 0; i < pages.size(); ++i) detail::check_kv_page("write_kv_pages", kv, i, pages[i]);
  detail::check_window_pages("write_kv_pages", kv, pages.size(), window_pages);
  for (std::size_t i = 0; i < pages.size(); ++i) {
    for (std::size_t l = 0; l < kv.num_layers(); ++l) {
      std::uint32_t const page = kv.is_window_layer(l) ? window_pages[i] : pages[i];
      if (page == no_window_page) continue;
      auto* dst = reinterpret_cast<std::byte*>(kv.layer(l).data + std::size_t{page} * kv.page_elements());
      copy_to_space(space, std::span<std::byte>(dst, pb), in.subspan(i * record + l * pb, pb));
    }
  }
}

}  // namespace piecrust
