#pragma once
// embedding on any Kokkos space: one team per token, its threads decoding table row ids[t] (WeightReader,
// every WeightType). ids is host memory (the interface checks it there) and is staged into the space; the
// table bytes and out must live in S::memory_space.

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/backends/kokkos/weight_reader.hpp"
#include "piecrust/kernels/embedding.hpp"

namespace piecrust {

template <KokkosSpace S>
struct KernelImpl<ops::Embedding, S> {
  static void run(S const& space, WeightMatrix const& table, std::span<std::uint32_t const> ids, ShapedView<float, 2> out,
                  float scale) {
    std::size_t const tokens = ids.size(), dim = table.cols;
    if (tokens == 0 || dim == 0) return;
    auto const idv = kokkos_detail::stage(space, "piecrust::embedding::ids", ids);  // [tokens]
    kokkos_detail::Unmanaged2<float, S> const ov(out.data(), tokens, dim);         // [tokens][dim]
    kokkos_detail::WeightReader const wr(table);                                   // [vocab][dim] GGUF blocks
    using Policy = Kokkos::TeamPolicy<S>;
    using Member = typename Policy::member_type;
    Kokkos::parallel_for(
        "piecrust::embedding", Policy(space, static_cast<int>(tokens), Kokkos::AUTO), KOKKOS_LAMBDA(Member const& team) {
          std::size_t const t = static_cast<std::size_t>(team.league_rank());
          std::size_t const row = idv(t);
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, dim), [&](std::size_t c) {
            float const v = wr(row, c);
            ov(t, c) = scale == 1.0f ? v : v * scale;
          });
        });
    space.fence();
  }
};

}  // namespace piecrust
