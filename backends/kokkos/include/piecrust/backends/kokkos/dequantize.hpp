#pragma once
// dequantize (a whole weight matrix to f32) on any Kokkos space: an MDRange over (row, col), each element
// decoded by WeightReader, so it gives exactly the values gemm and embedding use. w's bytes and out must
// live in S::memory_space.

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>

#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/backends/kokkos/weight_reader.hpp"
#include "piecrust/kernels/dequantize.hpp"

namespace piecrust {

template <KokkosSpace S>
struct KernelImpl<ops::Dequantize, S> {
  static void run(S const& space, WeightMatrix const& w, ShapedView<float, 2> out) {
    if (w.rows == 0 || w.cols == 0) return;
    kokkos_detail::Unmanaged2<float, S> const ov(out.data(), w.rows, w.cols);  // [rows][cols]
    kokkos_detail::WeightReader const wr(w);                                  // [rows][cols] GGUF blocks
    Kokkos::parallel_for(
        "piecrust::dequantize",
        Kokkos::MDRangePolicy<S, Kokkos::Rank<2>>(space, {0, 0}, {static_cast<std::int64_t>(w.rows), static_cast<std::int64_t>(w.cols)}),
        KOKKOS_LAMBDA(std::int64_t r, std::int64_t c) {
          ov(r, c) = wr(static_cast<std::size_t>(r), static_cast<std::size_t>(c));
        });
    space.fence();
  }
};

}  // namespace piecrust
