#pragma once
// rms_norm and fused_add_rms_norm on any Kokkos space: one team per row, a team reduction for the sum
// of squares (TeamThreadRange), then a team loop for the output. Data must live in S::memory_space.

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstddef>

#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/kernels/rms_norm.hpp"

namespace piecrust {

template <KokkosSpace S>
struct KernelImpl<ops::RmsNorm, S> {
  static void run(S const& space, ShapedView<float const, 2> x, ShapedView<float const, 1> weight, ShapedView<float, 2> out,
                  float eps) {
    int const rows = static_cast<int>(x.extent(0));
    int const dim = static_cast<int>(x.extent(1));
    kokkos_detail::Unmanaged2<float const, S> const xv(x.data(), x.extent(0), x.extent(1));
    kokkos_detail::Unmanaged1<float const, S> const wv(weight.data(), weight.extent(0));
    kokkos_detail::Unmanaged2<float, S> const ov(out.data(), out.extent(0), out.extent(1));
    using Policy = Kokkos::TeamPolicy<S>;
    using Member = typename Policy::member_type;
    Kokkos::parallel_for(
        "piecrust::rms_norm", Policy(space, rows, Kokkos::AUTO), KOKKOS_LAMBDA(Member const& team) {
          int const r = team.league_rank();
          float ss = 0.0f;
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(team, dim), [&](int i, float& acc) { acc += xv(r, i) * xv(r, i); }, ss);
          float const inv = 1.0f / kokkos_detail::sqrt(ss / static_cast<float>(dim) + eps);
          team.team_barrier();  // out may alias x: every read of the row happens before any write
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, dim), [&](int i) { ov(r, i) = xv(r, i) * inv * wv(i); });
        });
    space.fence();
  }
};

template <KokkosSpace S>
struct KernelImpl<ops::FusedAddRmsNorm, S> {
  static void run(S const& space, ShapedView<float, 2> x, ShapedView<float, 2> residual, ShapedView<float const, 1> weight,
                  float eps) {
    int const rows = static_cast<int>(x.extent(0));
    int const dim = static_cast<int>(x.extent(1));
    kokkos_detail::Unmanaged2<float, S> const xv(x.data(), x.extent(0), x.extent(1));
    kokkos_detail::Unmanaged2<float, S> const rv(residual.data(), residual.extent(0), residual.extent(1));
    kokkos_detail::Unmanaged1<float const, S> const wv(weight.data(), weight.extent(0));
    using Policy = Kokkos::TeamPolicy<S>;
    using Member = typename Policy::member_type;
    Kokkos::parallel_for(
        "piecrust::fused_add_rms_norm", Policy(space, rows, Kokkos::AUTO), KOKKOS_LAMBDA(Member const& team) {
          int const r = team.league_rank();
          float ss = 0.0f;
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(team, dim),
              [&](int i, float& acc) {
                float const v = rv(r, i) + xv(r, i);
                rv(r, i) = v;
                acc += v * v;
              },
              ss);
          float const inv = 1.0f / kokkos_detail::sqrt(ss / static_cast<float>(dim) + eps);
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, dim), [&](int i) { xv(r, i) = rv(r, i) * inv * wv(i); });
        });
    space.fence();
  }
};

}  // namespace piecrust
