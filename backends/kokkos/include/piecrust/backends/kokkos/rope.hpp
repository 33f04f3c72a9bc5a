#pragma once
// rope on any Kokkos space: the frequencies (double, Llama-3 scaling) and the positions are copied into
// S::memory_space, then an MDRange over (token, pair) rotates every head. x must live in S::memory_space.

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/kernels/rope.hpp"

namespace piecrust {

template <KokkosSpace S>
struct KernelImpl<ops::Rope, S> {
  static void run(S const& space, ShapedView<float, 3> x, std::span<std::uint32_t const> positions, RopeParams const& params,
                  std::size_t rotary_dim) {
    std::vector<double> const inv_host = detail::rope_inv_freq(params, rotary_dim);  // [rotary_dim / 2]
    std::size_t const half = rotary_dim / 2;
    std::size_t const tokens = x.extent(0);
    if (tokens == 0 || half == 0) return;
    Kokkos::View<double*, typename S::memory_space> inv("piecrust::rope::inv_freq", half);
    Kokkos::View<std::uint32_t*, typename S::memory_space> pos("piecrust::rope::positions", tokens);
    Kokkos::deep_copy(space, inv, Kokkos::View<double const*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>(inv_host.data(), half));
    Kokkos::deep_copy(space, pos,
                      Kokkos::View<std::uint32_t const*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>(positions.data(), tokens));
    kokkos_detail::Unmanaged3<float, S> const xv(x.data(), x.extent(0), x.extent(1), x.extent(2));
    int const heads = static_cast<int>(x.extent(1));
    bool const adjacent = params.style == RopeStyle::adjacent_pairs;
    Kokkos::parallel_for(
        "piecrust::rope",
        Kokkos::MDRangePolicy<S, Kokkos::Rank<2>>(space, {0, 0}, {static_cast<std::int64_t>(tokens), static_cast<std::int64_t>(half)}),
        KOKKOS_LAMBDA(std::int64_t t, std::int64_t i) {
          double const angle = static_cast<double>(pos(t)) * inv(i);
          float const c = static_cast<float>(kokkos_detail::cos(angle));
          float const s = static_cast<float>(kokkos_detail::sin(angle));
          std::int64_t const a = adjacent ? 2 * i : i;
          std::int64_t const b = adjacent ? 2 * i + 1 : i + static_cast<std::int64_t>(half);
          for (int h = 0; h < heads; ++h) {
            float const x0 = xv(t, h, a);
            float const x1 = xv(t, h, b);
            xv(t, h, a) = x0 * c - x1 * s;
            xv(t, h, b) = x0 * s + x1 * c;
          }
        });
    space.fence();
  }
};

}  // namespace piecrust
