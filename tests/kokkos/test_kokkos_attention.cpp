// The Kokkos paged_attention on Kokkos' default execution space (q, the KV pool, out and lse in its memory)
// against the double-precision reference: causal default, window, sink+window, random BRLE rows (with
// tokens that see nothing: an empty row and an all-masked row), speculative-tree masks; GQA ratios 1, 3, 4;
// head_dim 64 and 128; f32 and bf16 KV; page sizes 1, 4 and 16; soft-cap with an explicit scale; page-trim
// dropping pages (which are poisoned with NaN, so reading one would show); the planned call equal to the
// one-shot call bit for bit; and the host backend's results.
// Tolerance: 2e-5 absolute + 2e-5 relative on out and lse, as the host's test (f32 accumulation over
// <= 300 positions of values in [-1, 1]; the reference reads the same bf16-rounded K/V).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "kokkos_test_support.hpp"
#include "piecrust/backends/host.hpp"
#include "piecrust/backends/kokkos/kokkos.hpp"
#include "piecrust/core/trim_plan.hpp"
#include "piecrust/kernels.hpp"
#include "piecrust/kernels/reference/attention.hpp"
#include "test_kernel_support.hpp"

using namespace piecrust;
using piecrust::kokkos_test::download;
using piecrust::kokkos_test::filled;
using piecrust::kokkos_test::KSpace;
using piecrust::kokkos_test::upload;
using piecrust::test::random_floats;
using piecrust::test::tolerance_ratio;

namespace {

enum class Rows { causal_default, window, sink_window, random, tree };

struct Request {
  std::size_t kv_len;
  std::size_t qo_len;
};

/// A ragged batch over a shuffled pool (pages nobody owns are NaN), K/V and q random in [-1, 1].
template <class T>
struct Step {
  std::size_t page_size, kv_heads, qo_heads, head_dim, num_pages = 0;
  std::vector<Request> requests;
  std::vector<std::uint32_t> qo_indptr{0}, kv_indptr{0}, kv_indices, last_len;
  std::vector<T> pool;               // [num_pages][2][page_size][kv_heads][head_dim]
  std::vector<float> q;              // [tokens][qo_heads][head_dim]
  std::vector<AttentionMask> masks;  // [tokens], empty for causal_default
  std::vector<std::size_t> blind;    // tokens that see nothing

  Step(std::mt19937_64& rng, std::vector<Request> reqs, std::size_t ps, std::size_t kvh, std::size_t group, std::size_t hd, Rows kind)
      : page_size(ps), kv_heads(kvh), qo_heads(kvh * group), head_dim(hd), requests(std::move(reqs)) {
    for (Request const& r : requests) num_pages += (r.kv_len + ps - 1) / ps;
    num_pages += 2;
    std::vector<std::uint32_t> perm(num_pages);
    std::iota(perm.begin(), perm.end(), 0u);
    std::shuffle(perm.begin(), perm.end(), rng);
    pool.assign(PagedKv<T>{nullptr, num_pages, ps, kvh, hd}.size(), from_float<T>(std::numeric_limits<float>::quiet_NaN()));
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::size_t next = 0;
    for (Request const& r : requests) {
      std::size_t const np = (r.kv_len + ps - 1) / ps;
      for (std::size_t p = 0; p < np; ++p) {
        std::uint32_t const phys = perm[next++];
        kv_indices.push_back(phys);
        std::size_t const used = p + 1 == np ? r.kv_len - p * ps : ps;
        for (std::size_t s = 0; s < used; ++s) {
          for (std::size_t kvi = 0; kvi < 2; ++kvi) {
            T* slot = pool.data() + ((phys * 2 + kvi) * ps + s) * kvh * hd;
            for (std::size_t i = 0; i < kvh * hd; ++i) slot[i] = from_float<T>(dist(rng) + 1e-3f);
          }
        }
      }
      kv_indptr.push_back(static_cast<std::uint32_t>(kv_indices.size()));
      last_len.push_back(np == 0 ? 0 : static_cast<std::uint32_t>(r.kv_len - (np - 1) * ps));
      std::size_t const first = qo_indptr.back();
      qo_indptr.push_back(static_cast<std::uint32_t>(first + r.qo_len));
      if (kind == Rows::causal_default) continue;
      std::size_t const before = r.kv_len - r.qo_len;
      for (std::size_t i = 0; i < r.qo_len; ++i) {
        std::size_t const visible = before + i + 1;
        switch (kind) {
          case Rows::window: masks.push_back(AttentionMask::window(visible, 20)); break;
          case Rows::sink_window: masks.push_back(AttentionMask::sink_window(visible, 4, 19)); break;
          case Rows::random: {
            if (i % 4 == 1) {  // sees nothing: an empty row, or one that masks every position
              masks.push_back(i % 8 == 1 ? AttentionMask{} : AttentionMask(Brle().append(true, r.kv_len)));
              blind.push_back(first + i);
              break;
            }
            Brle bits;
            std::size_t const len = std::uniform_int_distribution<std::size_t>(0, r.kv_len)(rng);
            bool masked = rng() % 2 == 1;
            for (std::size_t at = 0; at < len;) {
              std::size_t const run = std::min(len - at, std::uniform_int_distribution<std::size_t>(1, 40)(rng));
              bits.append(masked, run);
              masked = !masked;
              at += run;
            }
            masks.emplace_back(std::move(bits));
            break;
          }
          case Rows::tree: {  // a speculative tree: the prefix, the token's ancestors and itself
            std::vector<bool> attend(r.kv_len, false);
            std::fill(attend.begin(), attend.begin() + static_cast<std::ptrdiff_t>(before), true);
            for (std::size_t j = i;; j = std::uniform_int_distribution<std::size_t>(0, j - 1)(rng)) {
              attend[before + j] = true;
              if (j == 0) break;
            }
            Brle bits;
            for (bool a : attend) bits.append(!a);
            masks.emplace_back(std::move(bits));
            break;
          }
          case Rows::causal_default: break;
        }
      }
    }
    q = random_floats(rng, qo_indptr.back() * qo_heads * hd);
  }

  [[nodiscard]] std::size_t tokens() const { return qo_indptr.back(); }
  [[nodiscard]] PagedBatch batch() const { return {qo_indptr, kv_indptr, kv_indices, last_len}; }
  [[nodiscard]] PagedKv<T const> host_kv() const { return {pool.data(), num_pages, page_size, kv_heads, head_dim}; }

  /// Page-trim plans of every request from its mask rows (nothing dropped for causal attention).
  [[nodiscard]] std::vector<TrimPlan> trims() const {
    std::vector<TrimPlan> plans;
    for (std::size_t b = 0; b < requests.size(); ++b) {
      std::span<AttentionMask const> rows;
      if (!masks.empty()) rows = std::span<AttentionMask const>(masks).subspan(qo_indptr[b], requests[b].qo_len);
      plans.push_back(TrimPlan::compute(static_cast<std::uint32_t>(page_size), requests[b].kv_len - requests[b].qo_len,
                                        requests[b].qo_len, rows));
    }
    return plans;
  }
  /// Fills every page a plan drops with NaN; returns how many pages that was.
  std::size_t poison_dropped(std::vector<TrimPlan> const& plans) {
    std::size_t dropped = 0;
    std::size_t const stride = PagedKv<T>{nullptr, num_pages, page_size, kv_heads, head_dim}.page_stride();
    for (std::size_t b = 0; b < plans.size(); ++b) {
      for (std::size_t p = 0; p < plans[b].num_pages; ++p) {
        if (std::find(plans[b].kept_pages.begin(), plans[b].kept_pages.end(), p) != plans[b].kept_pages.end()) continue;
        std::size_t const phys = kv_indices[kv_indptr[b] + p];
        std::fill(pool.begin() + static_cast<std::ptrdiff_t>(phys * stride), pool.begin() + static_cast<std::ptrdiff_t>((phys + 1) * stride),
                  from_float<T>(std::numeric_limits<float>::quiet_NaN()));
        ++dropped;
      }
    }
    return dropped;
  }
};

struct Result {
  std::vector<float> out;  // [tokens][qo_heads][head_dim]
  std::vector<float> lse;  // [tokens][qo_heads]
};

/// The Kokkos attention over `step` (one-shot, and planned once as a model does for every layer, which
/// must give the same bits).
template <class T>
Result run_kokkos(Step<T> const& step, PagedAttentionParams const& params, AttentionSelection const& sel) {
  KSpace const ks;
  std::size_t const tokens = step.tokens(), h = step.qo_heads, d = step.head_dim;
  auto const qd = upload(ks, step.q);
  auto const pool = upload(ks, step.pool);
  PagedKv<T const> const kv{pool.data(), step.num_pages, step.page_size, step.kv_heads, d};
  float const nan = std::numeric_limits<float>::quiet_NaN();  // every output must be written
  auto od = filled(ks, tokens * h * d, nan), ld = filled(ks, tokens * h, nan);
  ShapedView<float const, 3> const qv(qd.data(), tokens, h, d);
  PagedBatch const batch = step.batch();
  paged_attention(ks, qv, kv, batch, ShapedView<float, 3>(od.data(), tokens, h, d), ShapedView<float, 2>(ld.data(), tokens, h), params, sel);
  Result res{download(ks, od), download(ks, ld)};
  auto const plan = plan_attention(ks, AttentionProblem{tokens, h, d, step.kv_heads, step.num_pages, step.page_size, batch, sel});
  auto od2 = filled(ks, tokens * h * d, nan), ld2 = filled(ks, tokens * h, nan);
  for (int layer = 0; layer < 2; ++layer) {
    paged_attention(ks, qv, kv, plan, ShapedView<float, 3>(od2.data(), tokens, h, d), ShapedView<float, 2>(ld2.data(), tokens, h), params);
  }
  CHECK(download(ks, od2) == res.out);
  auto const lse2 = download(ks, ld2);
  for (std::size_t i = 0; i < lse2.size(); ++i) REQUIRE((lse2[i] == res.lse[i] || (std::isinf(lse2[i]) && std::isinf(res.lse[i]))));
  return res;
}

template <class T>
void check_against_reference(Step<T> const& step, PagedAttentionParams const& params, AttentionSelection const& sel) {
  Result const got = run_kokkos(step, params, sel);
  double const scale = params.sm_scale == 0 ? 1.0 / std::sqrt(double(step.head_dim)) : params.sm_scale;
  auto const ref = reference::paged_attention<T>(step.q, step.qo_heads, step.host_kv(), step.batch(), scale, params.logits_soft_cap, step.masks);
  CHECK(tolerance_ratio(got.out, ref.out, 2e-5, 2e-5) <= 1.0);
  CHECK(tolerance_ratio(got.lse, ref.lse, 2e-5, 2e-5) <= 1.0);
  for (std::size_t t : step.blind) {  // a token that sees nothing: out = 0 and lse = -inf
    for (std::size_t h = 0; h < step.qo_heads; ++h) {
      REQUIRE(got.lse[t * step.qo_heads + h] == -std::numeric_limits<float>::infinity());
      for (std::size_t d = 0; d < step.head_dim; ++d) REQUIRE(got.out[(t * step.qo_heads + h) * step.head_dim + d] == 0.0f);
    }
  }
}

// A full prefill, a decode, a chunked prefill after a cached prefix, an empty request, a short decode, and
// a longer two-token step.
std::vector<Request> const ragged{{37, 37}, {150, 1}, {70, 9}, {0, 0}, {16, 1}, {300, 2}};

}  // namespace

TEMPLATE_TEST_CASE("Kokkos paged_attention matches the reference for every kind of rows, GQA ratio, head_dim and page size",
                   "[kokkos][attention]", float, BFloat16) {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (Rows kind : {Rows::causal_default, Rows::window, Rows::sink_window, Rows::random, Rows::tree}) {
    for (std::size_t ps : {std::size_t{16}, std::size_t{1}}) {
      for (std::size_t group : {std::size_t{1}, std::size_t{4}}) {
        for (std::size_t hd : {std::size_t{64}, std::size_t{128}}) {
          if (hd == 128 && group == 4 && kind != Rows::random) continue;  // keep the suite fast
          INFO("rows " << static_cast<int>(kind) << " page size " << ps << " group " << group << " head_dim " << hd);
          Step<TestType> const step(rng, ragged, ps, 2, group, hd, kind);
          if (kind == Rows::random) REQUIRE(!step.blind.empty());
          check_against_reference(step, {}, {step.masks, {}});
        }
      }
    }
  }
  // Soft-cap with an explicit scale, GQA 3, page size 4.
  Step<TestType> const capped(rng, ragged, 4, 1, 3, 64, Rows::random);
  check_against_reference(capped, {0.5f, 3.0f}, {capped.masks, {}});
  Step<TestType> const capped_causal(rng, ragged, 16, 2, 2, 128, Rows::causal_default);
  check_against_reference(capped_causal, {0.0f, 1.5f}, {});
}

TEMPLATE_TEST_CASE("Kokkos paged_attention with page-trim reads only kept pages and matches the reference", "[kokkos][attention][trim]",
                   float, BFloat16) {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  std::vector<Request> const reqs{{200, 1}, {130, 6}, {64, 64}, {90, 3}, {260, 2}};
  for (std::size_t ps : {std::size_t{16}, std::size_t{1}}) {
    for (Rows kind : {Rows::sink_window, Rows::window, Rows::random, Rows::causal_default}) {
      INFO("rows " << static_cast<int>(kind) << " page size " << ps);
      Step<TestType> step(rng, reqs, ps, 2, 4, 64, kind);
      auto const plans = step.trims();
      Result const untrimmed = run_kokkos(step, {}, {step.masks, {}});
      std::size_t const dropped = step.poison_dropped(plans);
      if (kind == Rows::sink_window || kind == Rows::window) REQUIRE(dropped > 0);
      if (kind == Rows::causal_default) REQUIRE(dropped == 0);
      check_against_reference(step, {}, {{}, plans});  // the reference reads only attended (kept) positions
      Result const trimmed = run_kokkos(step, {}, {{}, plans});
      CHECK(tolerance_ratio(trimmed.out, untrimmed.out, 2e-5, 2e-5) <= 1.0);
      CHECK(tolerance_ratio(trimmed.lse, untrimmed.lse, 2e-5, 2e-5) <= 1.0);
    }
  }
}

TEMPLATE_TEST_CASE("Kokkos paged_attention agrees with the host backend", "[kokkos][attention]", float, BFloat16) {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Host const host;
  Step<TestType> const step(rng, ragged, 16, 2, 4, 64, Rows::sink_window);
  std::size_t const tokens = step.tokens(), h = step.qo_heads, d = step.head_dim;
  for (PagedAttentionParams const params : {PagedAttentionParams{}, PagedAttentionParams{0.2f, 2.0f}}) {
    Result const got = run_kokkos(step, params, {step.masks, {}});
    std::vector<float> out(tokens * h * d), lse(tokens * h);
    paged_attention(host, ShapedView<float const, 3>(step.q.data(), tokens, h, d), step.host_kv(), step.batch(),
                    ShapedView<float, 3>(out.data(), tokens, h, d), ShapedView<float, 2>(lse.data(), tokens, h), params,
                    {step.masks, {}});
    CHECK(tolerance_ratio(got.out, out, 2e-5, 2e-5) <= 1.0);
    CHECK(tolerance_ratio(got.lse, lse, 2e-5, 2e-5) <= 1.0);
  }
}

TEST_CASE("Kokkos paged_attention refuses bad input before computing anything", "[kokkos][attention]") {
  std::mt19937_64 rng(test::fresh_seed());
  KSpace const ks;
  Step<float> const step(rng, {{20, 2}, {5, 1}}, 16, 2, 2, 64, Rows::causal_default);
  std::size_t const tokens = step.tokens();
  auto const qd = upload(ks, step.q);
  auto const pool = upload(ks, step.pool);
  auto od = filled(ks, tokens * 4 * 64, 3.0f), ld = filled(ks, tokens * 4, 3.0f);
  auto call = [&](PagedBatch const& batch, std::size_t hd) {
    PagedKv<float const> const kv{pool.data(), step.num_pages, 16, 2, hd};
    paged_attention(ks, ShapedView<float const, 3>(qd.data(), tokens, 4, hd), kv, batch, ShapedView<float, 3>(od.data(), tokens, 4, hd),
                    ShapedView<float, 2>(ld.data(), tokens, 4));
  };
  REQUIRE_THROWS_AS(call(step.batch(), 96), Unsupported);
  auto bad_indices = step.kv_indices;
  bad_indices[0] = static_cast<std::uint32_t>(step.num_pages);
  REQUIRE_THROWS_AS(call({step.qo_indptr, step.kv_indptr, bad_indices, step.last_len}, 64), OutOfRange);
  auto const out = download(ks, od);
  REQUIRE(std::all_of(out.begin(), out.end(), [](float v) { return v == 3.0f; }));  // nothing written
  REQUIRE_NOTHROW(call(step.batch(), 64));
}
