#pragma once
// geglu (out = gelu(gate) * up) on any Kokkos space: a RangePolicy over the elements, each read and then
// written by one iteration, so out may alias gate or up. All three must live in S::memory_space.

#include <Kokkos_Core.hpp>

#include <cstddef>

#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/kernels/geglu.hpp"

namespace piecrust {

template <KokkosSpace S>
struct KernelImpl<ops::Geglu, S> {
  static void run(S const& space, ShapedView<float const, 2> gate, ShapedView<float const, 2> up, ShapedView<float, 2> out) {
    std::size_t const n = gate.size();
    if (n == 0) return;
    kokkos_detail::Unmanaged1<float const, S> const gv(gate.data(), n);  // [rows * dim], flat
    kokkos_detail::Unmanaged1<float const, S> const uv(up.data(), n);    // [rows * dim]
    kokkos_detail::Unmanaged1<float, S> const ov(out.data(), n);         // [rows * dim], may alias an input
    Kokkos::parallel_for(
        "piecrust::geglu", Kokkos::RangePolicy<S>(space, 0, n), KOKKOS_LAMBDA(std::size_t i) {
          float const g = gv(i);
          ov(i) = g / (1.0f + kokkos_detail::exp(-detail::gelu_sigmoid_arg(g))) * uv(i);
        });
    space.fence();
  }
};

}  // namespace piecrust
