#pragma once
// paged_attention on any Kokkos space: one team per (query token, query head), streaming the token's
// attended runs (attention_plan.hpp) through team scratch in tiles of `tile` positions with an online
// softmax (Milakov & Gimelshein 2018, "Online normalizer calculation for softmax"; the per-tile rescaling
// of FlashAttention, Dao et al. 2022). Per tile: the team threads split the positions for q . k (scaled,
// then soft-capped), a team max and a team sum update (m, l), then the threads split head_dim to rescale
// and accumulate the V rows. f32 throughout; K/V float or BFloat16. GQA: query head h reads KV head
// h / (num_qo_heads / num_kv_heads). A token that sees nothing gets out = 0 and lse = -inf.
//
// The unplanned call flattens and uploads its selection itself (once per call); a model plans once per
// step (plan_attention) and every layer calls run_planned. q, the pool, out and lse must live in
// S::memory_space; the batch and selection spans are host memory.

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "piecrust/backends/kokkos/attention_plan.hpp"
#include "piecrust/backends/kokkos/space.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/paged_attention.hpp"

namespace piecrust {

template <KokkosSpace S>
struct KernelImpl<ops::PagedAttention, S> {
  using plan_type = kokkos_detail::KokkosAttentionPlan<S>;

  /// Positions per tile: the logits of one tile sit in team scratch next to q and the accumulator.
  static constexpr std::size_t tile = 64;

  template <std::size_t HeadDim, class T>
  static void run(S const& space, ShapedView<float const, 3> q, PagedKv<T const> kv, PagedBatch const& batch,
                  ShapedView<float, 3> out, ShapedView<float, 2> lse, PagedAttentionParams const& params,
                  AttentionSelection const& selection) {
    AttentionProblem const problem{q.extent(0), q.extent(1), HeadDim, kv.num_kv_heads, kv.num_pages, kv.page_size, batch, selection};
    run_planned<HeadDim>(space, q, kv, kokkos_detail::make_attention_plan(space, problem), out, lse, params);
  }

  template <std::size_t HeadDim, class T>
  static void run_planned(S const& space, ShapedView<float const, 3> q, PagedKv<T const> kv, plan_type const& plan,
                          ShapedView<float, 3> out, ShapedView<float, 2> lse, PagedAttentionParams const& params) {
    constexpr std::size_t D = HeadDim;
    std::size_t const tokens = q.extent(0), heads = q.extent(1);
    if (tokens * heads == 0) return;
    std::size_t const group = heads / kv.num_kv_heads;
    kokkos_detail::Unmanaged3<float const, S> const qv(q.data(), tokens, heads, D);  // [tokens][qo_heads][D]
    kokkos_detail::Unmanaged3<float, S> const ov(out.data(), tokens, heads, D);      // [tokens][qo_heads][D]
    kokkos_detail::Unmanaged2<float, S> const lv(lse.data(), tokens, heads);         // [tokens][qo_heads]
    kokkos_detail::Unmanaged1<T const, S> const pool(kv.data, kv.size());  // [num_pages][2][page_size][kv_heads][D]
    auto const tab = plan.table;                                           // [words] packed plan
    std::size_t const pages_at = plan.pages_at, runs_at = plan.runs_at;
    std::size_t const page_size = kv.page_size, row = kv.slot_stride(), page_stride = kv.page_stride();
    float const scale = params.sm_scale, cap = params.logits_soft_cap;
    float const neg_inf = -std::numeric_limits<float>::infinity();  // captured: no host constant in device code

    using Policy = Kokkos::TeamPolicy<S>;
    using Member = typename Policy::member_type;
    using FloatScratch = Kokkos::View<float*, typename S::scratch_memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
    using IndexScratch = Kokkos::View<std::size_t*, typename S::scratch_memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
    std::size_t const scratch = FloatScratch::shmem_size(2 * D + tile) + IndexScratch::shmem_size(tile);
    Policy policy(space, static_cast<int>(tokens * heads), Kokkos::AUTO);
    policy.set_scratch_size(0, Kokkos::PerTeam(scratch));
    Kokkos::parallel_for(
        "piecrust::paged_attention", policy, KOKKOS_LAMBDA(Member const& team) {
          std::size_t const t = static_cast<std::size_t>(team.league_rank()) / heads;
          std::size_t const h = static_cast<std::size_t>(team.league_rank()) % heads;
          std::size_t const head_at = h / group * D;  // KV head's first element within a slot row
          FloatScratch buf(team.team_scratch(0), 2 * D + tile);  // [q: D][acc: D][p: tile]
          IndexScratch slot_at(team.team_scratch(0), tile);       // [tile] K element offset of each position
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, D), [&](std::size_t d) {
            buf(d) = qv(t, h, d);
            buf(D + d) = 0.0f;
          });
          team.team_barrier();
          std::size_t const page_base = pages_at + tab(3 * t);
          std::size_t const run_end = tab(3 * t + 2);
          float m = neg_inf;  // running max of the logits seen (identical in every thread)
          float l = 0.0f;     // running sum of e^{logit - m}
          for (std::size_t r = tab(3 * t + 1); r < run_end; ++r) {
            std::size_t const end = tab(runs_at + 2 * r + 1);
            for (std::size_t base = tab(runs_at + 2 * r); base < end; base += tile) {
              std::size_t const n = end - base < tile ? end - base : tile;
              Kokkos::parallel_for(Kokkos::TeamThreadRange(team, n), [&](std::size_t j) {
                std::size_t const pos = base + j;
                std::size_t const at = std::size_t{tab(page_base + pos / page_size)} * page_stride + pos % page_size * row + head_at;
                float s = 0.0f;
                for (std::size_t d = 0; d < D; ++d) s += buf(d) * to_float(pool(at + d));
                s *= scale;
                if (cap > 0.0f) s = cap * kokkos_detail::tanh(s / cap);  // Gemma 2 soft-cap
                slot_at(j) = at;
                buf(2 * D + j) = s;
              });
              team.team_barrier();
              float tile_max = neg_inf;
              Kokkos::parallel_reduce(
                  Kokkos::TeamThreadRange(team, n), [&](std::size_t j, float& mx) { mx = kokkos_detail::fmax(mx, buf(2 * D + j)); },
                  Kokkos::Max<float>(tile_max));
              float const m_new = kokkos_detail::fmax(m, tile_max);
              float const alpha = kokkos_detail::exp(m - m_new);  // 0 on the first tile (m = -inf)
              team.team_barrier();
              float tile_sum = 0.0f;
              Kokkos::parallel_reduce(
                  Kokkos::TeamThreadRange(team, n),
                  [&](std::size_t j, float& acc) {
                    float const e = kokkos_detail::exp(buf(2 * D + j) - m_new);
                    buf(2 * D + j) = e;
                    acc += e;
                  },
                  tile_sum);
              team.team_barrier();
              l = l * alpha + tile_sum;
              m = m_new;
              std::size_t const v_offset = page_size * row;  // V of a slot sits page_size slots after its K
              Kokkos::parallel_for(Kokkos::TeamThreadRange(team, D), [&](std::size_t d) {
                float acc = buf(D + d) * alpha;
                for (std::size_t j = 0; j < n; ++j) acc += buf(2 * D + j) * to_float(pool(slot_at(j) + v_offset + d));
                buf(D + d) = acc;
              });
              team.team_barrier();  // the next tile overwrites p and slot_at
            }
          }
          float const inv = l > 0.0f ? 1.0f / l : 0.0f;
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, D), [&](std::size_t d) { ov(t, h, d) = buf(D + d) * inv; });
          Kokkos::single(Kokkos::PerTeam(team), [&]() { lv(t, h) = l > 0.0f ? m + kokkos_detail::log(l) : neg_inf; });
        });
    space.fence();
  }
};

}  // namespace piecrust
