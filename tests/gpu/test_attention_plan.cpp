// Host-only check of the GPU attention TilePlan (no GPU needed): on random ragged batches it replays
// what the kernels will visit (listed tiles and their words, or the causal range; split chunks) and
// compares, token by token, the set of physical (page, slot) positions each token attends with the
// positions the AttentionMask rows (or causal order) select. Also checks that every listed tile is
// attended by some row of its q-tile (all-masked tiles are skipped), that page-trim leaves dropped
// pages out, and that the split bookkeeping (num_splits, part_offset) is consistent.
// Prints "N passed, M failed" and exits non-zero on a failure.

#include <cstdint>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <piecrust/backends/cuda/attention/tile_plan.hpp>

#include "test_attention_cases.hpp"

namespace {

using namespace piecrust;
namespace att = piecrust::cuda::attention;

using Position = std::pair<std::uint32_t, std::uint32_t>;  // (physical page, slot)

std::uint64_t causal_word(std::uint32_t tile, long long lim) {
  long long const n = lim - static_cast<long long>(tile) * att::kv_tile + 1;
  if (n <= 0) return 0;
  return n >= att::kv_tile ? ~std::uint64_t{0} : ((std::uint64_t{1} << n) - 1);
}

/// Replays one item list; adds each token's visible positions to `seen` (fails on a repeat).
bool replay(att::TilePlan const& plan, std::vector<att::WorkItem> const& items, std::size_t ps,
            std::vector<std::multiset<Position>>& seen, std::string& why) {
  for (att::WorkItem const& w : items) {
    att::RequestInfo const& req = plan.requests[w.request];
    if (w.num_splits == 0 || w.split >= w.num_splits) {
      why = "bad split index";
      return false;
    }
    for (std::uint32_t j = 0; j < w.token_count; ++j) {
      std::uint32_t const t = w.token_begin + j;
      std::uint32_t const slots = plan.part_offset[t + 1] - plan.part_offset[t];
      if ((w.num_splits > 1 ? w.num_splits : 0) != slots) {
        why = "part_offset disagrees with num_splits for token " + std::to_string(t);
        return false;
      }
      long long const lim = static_cast<long long>(req.kv_len) - req.qo_len + (t - req.qo_begin);
      for (std::uint32_t e = w.begin; e < w.end; ++e) {
        std::uint32_t tile = e;
        std::uint64_t word = 0;
        if (w.listed != 0) {
          tile = plan.entries[e].tile;
          word = plan.entries[e].bits == att::full_tile ? ~std::uint64_t{0} : plan.words[plan.entries[e].bits + j];
        } else {
          word = causal_word(tile, lim);
        }
        for (std::uint32_t b = 0; b < att::kv_tile; ++b) {
          std::uint32_t const pos = tile * att::kv_tile + b;
          if (((word >> b) & 1u) == 0 || pos >= req.kv_len) continue;
          seen[t].insert({plan.pages[req.page_begin + pos / ps], static_cast<std::uint32_t>(pos % ps)});
        }
      }
    }
    if (w.listed != 0) {  // every listed tile has at least one attended cell in some token row
      for (std::uint32_t e = w.begin; e < w.end; ++e) {
        att::Entry const en = plan.entries[e];
        if (en.bits == att::full_tile) continue;
        std::uint64_t any = 0;
        for (std::uint32_t j = 0; j < w.token_count; ++j) any |= plan.words[en.bits + j];
        if (any == 0) {
          why = "a listed tile has no attended position";
          return false;
        }
      }
    }
  }
  return true;
}

bool check_case(test::Case const& c, att::PlanShape shape, std::string& why) {
  att::TilePlan const plan = att::build_tile_plan(c.batch(), c.selection(), shape);
  std::size_t const ps = c.spec.page_size;
  std::vector<std::multiset<Position>> seen(c.tokens());  // [tokens]
  if (!replay(plan, plan.decode_items, ps, seen, why) || !replay(plan, plan.prefill_items, ps, seen, why)) return false;
  PagedBatch const batch = c.batch();
  for (std::size_t b = 0; b < batch.batch_size(); ++b) {
    std::size_t const kv_len = batch.kv_len(b, ps);
    std::size_t const qo_len = batch.qo_len(b);
    std::set<std::uint32_t> dropped;
    if (!c.trims.empty()) {
      std::set<std::uint32_t> kept(c.trims[b].kept_pages.begin(), c.trims[b].kept_pages.end());
      for (std::uint32_t p = 0; p < batch.num_pages(b); ++p) {
        if (kept.count(p) == 0) dropped.insert(batch.kv_indices[batch.kv_indptr[b] + p]);
      }
    }
    for (std::size_t t = batch.qo_indptr[b]; t < batch.qo_indptr[b + 1]; ++t) {
      std::size_t const i = t - batch.qo_indptr[b];
      std::multiset<Position> want;
      for (std::size_t p = 0; p < kv_len; ++p) {
        bool const ok = c.masks.empty() ? p + qo_len <= kv_len + i : c.masks[t].attends(p);
        if (ok) want.insert({batch.kv_indices[batch.kv_indptr[b] + p / ps], static_cast<std::uint32_t>(p % ps)});
      }
      if (want != seen[t]) {
        why = "token " + std::to_string(t) + " (request " + std::to_string(b) + "): plan visits " +
              std::to_string(seen[t].size()) + " positions, the rows select " + std::to_string(want.size());
        return false;
      }
    }
    for (std::uint32_t const page : dropped) {
      for (std::uint32_t k = plan.requests[b].page_begin;
           k < (b + 1 < plan.requests.size() ? plan.requests[b + 1].page_begin : plan.pages.size()); ++k) {
        if (plan.pages[k] == page) {
          why = "a dropped page is still in the plan";
          return false;
        }
      }
    }
  }
  return true;
}

}  // namespace

int main() {
  std::mt19937_64 rng(std::random_device{}());
  int passed = 0, failed = 0;
  test::MaskKind const kinds[] = {test::MaskKind::implicit_causal, test::MaskKind::causal_rows, test::MaskKind::window,
                                  test::MaskKind::sink_window,     test::MaskKind::random_brle, test::MaskKind::tree};
  std::size_t const page_sizes[] = {1, 3, 16, 64};
  std::size_t const groups[] = {1, 3, 4, 8};
  for (int round = 0; round < 8; ++round) {
    for (test::MaskKind const kind : kinds) {
      for (bool const trim : {false, true}) {
        for (bool const hip_path : {false, true}) {
          test::CaseSpec spec;
          spec.mask = kind;
          spec.trim = trim;
          spec.batch = std::uniform_int_distribution<std::size_t>(1, 7)(rng);
          spec.page_size = page_sizes[round % 4];
          spec.group = groups[(round / 2) % 4];
          spec.max_prefill = round % 3 == 0 ? 300 : 90;
          test::Case const c = test::make_case(spec, rng);
          att::PlanShape shape;
          shape.page_size = spec.page_size;
          shape.tokens_per_qtile = hip_path ? 0 : 64 / spec.group;
          shape.decode_ctas_per_item = spec.num_kv_heads;
          shape.prefill_ctas_per_item = spec.num_kv_heads;
          shape.decode_capacity = round % 2 == 0 ? 1 : 528;  // 528: force splits on small batches
          shape.prefill_capacity = round % 2 == 0 ? 1 : 264;
          shape.min_chunk_tiles = 1 + static_cast<std::size_t>(round % 3);
          std::string why;
          bool ok = false;
          try {
            ok = check_case(c, shape, why);
          } catch (std::exception const& e) {
            why = std::string("threw: ") + e.what();
          }
          if (ok) {
            ++passed;
          } else {
            ++failed;
            std::printf("FAIL plan: %s%s page %zu group %zu %s: %s\n", test::name(kind), trim ? " +trim" : "",
                        spec.page_size, spec.group, hip_path ? "decode-only" : "", why.c_str());
          }
        }
      }
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
