#pragma once
// add_bias (y[i][j] += bias[j], Qwen2-style q/k/v biases) on any Kokkos space: an MDRange over (row, col).
// y and bias must live in S::memory_space.

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>

#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/kernels/add_bias.hpp"

namespace piecrust {

template <KokkosSpace S>
struct KernelImpl<ops::AddBias, S> {
  static void run(S const& space, ShapedView<float, 2> y, ShapedView<float const, 1> bias) {
    kokkos_detail::Unmanaged2<float, S> const yv(y.data(), y.extent(0), y.extent(1));  // [rows][n]
    kokkos_detail::Unmanaged1<float const, S> const bv(bias.data(), bias.extent(0));   // [n]
    Kokkos::parallel_for(
        "piecrust::add_bias",
        Kokkos::MDRangePolicy<S, Kokkos::Rank<2>>(space, {0, 0},
                                                  {static_cast<std::int64_t>(y.extent(0)), static_cast<std::int64_t>(y.extent(1))}),
        KOKKOS_LAMBDA(std::int64_t i, std::int64_t j) { yv(i, j) += bv(j); });
    space.fence();
  }
};

}  // namespace piecrust
