#pragma once
// gemm (y = beta * y + x W^T) on any Kokkos space, for every WeightType: one team per weight row (output
// feature o). The team decodes row o once into team scratch (WeightReader, so quantized weights are never
// expanded in global memory), then each team thread takes input rows i and its vector lanes reduce
// x[i][:] . w[o][:]. x, y and the weight bytes must live in S::memory_space.

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstddef>

#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/backends/kokkos/weight_reader.hpp"
#include "piecrust/kernels/gemm.hpp"

namespace piecrust {

template <KokkosSpace S>
struct KernelImpl<ops::Gemm, S> {
  static void run(S const& space, ShapedView<float const, 2> x, WeightMatrix const& w, ShapedView<float, 2> y, float beta) {
    std::size_t const m = x.extent(0), n = w.rows, k = w.cols;
    if (m == 0 || n == 0) return;
    kokkos_detail::Unmanaged2<float const, S> const xv(x.data(), m, k);  // [m][k]
    kokkos_detail::Unmanaged2<float, S> const yv(y.data(), m, n);        // [m][n]
    kokkos_detail::WeightReader const wr(w);                             // [n][k] GGUF blocks
    using Policy = Kokkos::TeamPolicy<S>;
    using Member = typename Policy::member_type;
    using Scratch = Kokkos::View<float*, typename S::scratch_memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
    std::size_t const row_bytes = Scratch::shmem_size(k);
    int const level = kokkos_detail::scratch_level(row_bytes);
    // Vector lanes share one dot product; up to 32 (a warp, or a wave's half on HIP) where the backend has them.
    int const lanes = std::min(32, Policy::vector_length_max());
    Policy policy(space, static_cast<int>(n), Kokkos::AUTO, lanes);
    policy.set_scratch_size(level, Kokkos::PerTeam(row_bytes));
    bool const accumulate = beta != 0.0f;  // beta = 0 never reads y (its old contents may be NaN)
    Kokkos::parallel_for(
        "piecrust::gemm", policy, KOKKOS_LAMBDA(Member const& team) {
          std::size_t const o = static_cast<std::size_t>(team.league_rank());
          Scratch wrow(team.team_scratch(level), k);  // [k] row o of W, decoded
          Kokkos::parallel_for(Kokkos::TeamVectorRange(team, k), [&](std::size_t c) { wrow(c) = wr(o, c); });
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, m), [&](std::size_t i) {
            float dot = 0.0f;
            Kokkos::parallel_reduce(
                Kokkos::ThreadVectorRange(team, k), [&](std::size_t c, float& acc) { acc += xv(i, c) * wrow(c); }, dot);
            Kokkos::single(Kokkos::PerThread(team), [&]() { yv(i, o) = accumulate ? beta * yv(i, o) + dot : dot; });
          });
        });
    space.fence();
  }
};

}  // namespace piecrust
