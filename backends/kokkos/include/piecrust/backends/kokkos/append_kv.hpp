#pragma once
// append_kv on any Kokkos space: an MDRange over (token, element of a slot row) writes K and V of token t
// into physical slot slots[t] (rounded to T, float or BFloat16). slots is host memory (the interface
// checks it there) and is staged into the space; k, v and the pool must live in S::memory_space.

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/kernels/append_kv.hpp"

namespace piecrust {

template <KokkosSpace S>
struct KernelImpl<ops::AppendKv, S> {
  template <class T>
  static void run(S const& space, PagedKv<T> kv, ShapedView<float const, 3> k, ShapedView<float const, 3> v,
                  std::span<std::uint32_t const> slots) {
    std::size_t const tokens = slots.size();
    std::size_t const row = kv.slot_stride();  // num_kv_heads * head_dim elements per slot
    if (tokens == 0) return;
    auto const sv = kokkos_detail::stage(space, "piecrust::append_kv::slots", slots);  // [tokens]
    kokkos_detail::Unmanaged2<float const, S> const kin(k.data(), tokens, row);      // [tokens][kv_heads * head_dim]
    kokkos_detail::Unmanaged2<float const, S> const vin(v.data(), tokens, row);      // [tokens][kv_heads * head_dim]
    kokkos_detail::Unmanaged1<T, S> const pool(kv.data, kv.size());  // [num_pages][2][page_size][kv_heads][head_dim]
    std::size_t const page_size = kv.page_size, page_stride = kv.page_stride();
    Kokkos::parallel_for(
        "piecrust::append_kv",
        Kokkos::MDRangePolicy<S, Kokkos::Rank<2>>(space, {0, 0}, {static_cast<std::int64_t>(tokens), static_cast<std::int64_t>(row)}),
        KOKKOS_LAMBDA(std::int64_t t, std::int64_t i) {
          std::size_t const slot = sv(t);
          // K of (page, slot) starts at page * page_stride + (slot % page_size) * row; V page_size rows later.
          std::size_t const at = slot / page_size * page_stride + slot % page_size * row + static_cast<std::size_t>(i);
          pool(at) = from_float<T>(kin(t, i));
          pool(at + page_size * row) = from_float<T>(vin(t, i));
        });
    space.fence();
  }
};

}  // namespace piecrust
