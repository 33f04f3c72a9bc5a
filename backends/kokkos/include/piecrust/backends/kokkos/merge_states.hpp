#pragma once
// merge_states on any Kokkos space: one team per (token, head). Every thread of the team computes the
// states' maximum lse and the weights e^{s_k - max} (a few states: cheaper than a reduction), then the team
// threads split head_dim for the weighted sum. FlashInfer's merge (cascade.cuh) in natural log; a state
// with lse = -inf weighs 0, and if every state has lse = -inf the output is 0 with lse -inf. All views
// must live in S::memory_space.

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <limits>

#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/kernels/merge_states.hpp"

namespace piecrust {

template <KokkosSpace S>
struct KernelImpl<ops::MergeStates, S> {
  static void run(S const& space, ShapedView<float const, 4> v, ShapedView<float const, 3> s, ShapedView<float, 3> v_out,
                  ShapedView<float, 2> s_out) {
    std::size_t const tokens = v.extent(0), states = v.extent(1), heads = v.extent(2), hd = v.extent(3);
    if (tokens * heads == 0) return;
    kokkos_detail::Unmanaged4<float const, S> const vv(v.data(), tokens, states, heads, hd);  // [tokens][states][heads][hd]
    kokkos_detail::Unmanaged3<float const, S> const sv(s.data(), tokens, states, heads);      // [tokens][states][heads]
    kokkos_detail::Unmanaged3<float, S> const ov(v_out.data(), tokens, heads, hd);           // [tokens][heads][hd]
    kokkos_detail::Unmanaged2<float, S> const lv(s_out.data(), tokens, heads);               // [tokens][heads]
    float const neg_inf = -std::numeric_limits<float>::infinity();  // captured: no host constant in device code
    using Policy = Kokkos::TeamPolicy<S>;
    using Member = typename Policy::member_type;
    Kokkos::parallel_for(
        "piecrust::merge_states", Policy(space, static_cast<int>(tokens * heads), Kokkos::AUTO), KOKKOS_LAMBDA(Member const& team) {
          std::size_t const t = static_cast<std::size_t>(team.league_rank()) / heads;
          std::size_t const h = static_cast<std::size_t>(team.league_rank()) % heads;
          float mx = neg_inf;
          for (std::size_t k = 0; k < states; ++k) mx = kokkos_detail::fmax(mx, sv(t, k, h));
          float sum = 0.0f;
          if (mx != neg_inf) {
            for (std::size_t k = 0; k < states; ++k) sum += kokkos_detail::exp(sv(t, k, h) - mx);  // 0 for lse = -inf
          }
          float const inv = sum > 0.0f ? 1.0f / sum : 0.0f;
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, hd), [&](std::size_t d) {
            float acc = 0.0f;
            if (mx != neg_inf) {
              for (std::size_t k = 0; k < states; ++k) acc += kokkos_detail::exp(sv(t, k, h) - mx) * vv(t, k, h, d);
            }
            ov(t, h, d) = acc * inv;
          });
          Kokkos::single(Kokkos::PerTeam(team), [&]() { lv(t, h) = mx == neg_inf ? neg_inf : mx + kokkos_detail::log(sum); });
        });
    space.fence();
  }
};

}  // namespace piecrust
