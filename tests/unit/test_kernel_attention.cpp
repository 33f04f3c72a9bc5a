// paged_attention on the space under test (test_kernel_support.hpp: Host, or the space a build names; q, the
// KV pool, out and lse in its memory) against the double-precision reference: causal, window, sink+window,
// random BRLE rows (with tokens that see nothing: an empty row and an all-masked row), non-causal tree masks,
// GQA ratios 1/3/4/8, head_dim 64, 128 and 256, page sizes 1, 4 and 16, f32 and bf16 KV, ragged batches mixing
// prefill and decode, soft-cap with an explicit scale, the step planned once and read by several layers
// (bit for bit the one-shot call), and page-trim (with the dropped pages poisoned with NaN, so reading one
// would show; on the host bit for bit the untrimmed call). On a space other than Host, also against the
// host backend. Host only: decode rows cut into KV-head slices give the same bits for every thread count;
// every code path the CPU runs (scalar, AVX2, AVX-512, AVX-512 BF16) against the reference and the others.
// Tolerance: 2e-5 absolute + 2e-5 relative on outputs and lse (f32 accumulation over <= 1500 positions
// of values in [-1, 1]; the reference reads the same bf16-rounded K/V, so the KV type adds nothing; where
// the host's path rounds q to bf16 for vdpbf16ps, the reference reads that rounded q); the same against
// the host backend (3e-3 where the host rounds q), and between trimmed and untrimmed calls on other spaces.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "test_kernel_support.hpp"

#include "piecrust/core/trim_plan.hpp"
#include "piecrust/kernels.hpp"
#include "piecrust/kernels/reference/attention.hpp"

using namespace piecrust;
using piecrust::test::download;
using piecrust::test::filled;
using piecrust::test::random_floats;
using piecrust::test::tolerance_ratio;
using piecrust::test::upload;
using Space = piecrust::test::Space;

namespace {

enum class MaskKind { causal_default, window, sink_window, random_rows, tree };

struct Request {
  std::size_t kv_len;
  std::size_t qo_len;
};

/// A ragged batch on a shuffled pool (host memory), K/V random, unused pages NaN.
template <class T>
struct Scenario {
  std::size_t page_size, kv_heads, qo_heads, head_dim;
  std::vector<std::uint32_t> qo_indptr{0}, kv_indptr{0}, kv_indices, last_len;
  std::vector<T> pool;  // [pages][2][page_size][kv_heads][head_dim]
  std::size_t num_pages = 0;
  std::vector<float> q;  // [tokens][qo_heads][head_dim]
  std::vector<AttentionMask> masks;  // [tokens] (empty for causal_default)
  std::vector<std::size_t> blind;    // tokens that see nothing
  std::vector<Request> requests;

  Scenario(std::mt19937_64& rng, std::vector<Request> reqs, std::size_t ps, std::size_t kvh, std::size_t group,
           std::size_t hd, MaskKind kind)
      : page_size(ps), kv_heads(kvh), qo_heads(kvh * group), head_dim(hd), requests(reqs) {
    for (Request const& r : reqs) num_pages += (r.kv_len + ps - 1) / ps;
    num_pages += 3;  // pages nobody owns
    std::vector<std::uint32_t> perm(num_pages);
    std::iota(perm.begin(), perm.end(), 0u);
    std::shuffle(perm.begin(), perm.end(), rng);
    PagedKv<T> const shape{nullptr, num_pages, ps, kvh, hd};
    pool.assign(shape.size(), from_float<T>(std::numeric_limits<float>::quiet_NaN()));
    std::size_t next = 0;
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (Request const& r : reqs) {
      std::size_t const np = (r.kv_len + ps - 1) / ps;
      for (std::size_t p = 0; p < np; ++p) {
        std::uint32_t const phys = perm[next++];
        kv_indices.push_back(phys);
        std::size_t const filled = (p + 1 == np) ? r.kv_len - p * ps : ps;
        for (std::size_t s = 0; s < filled; ++s) {
          for (std::size_t kvi = 0; kvi < 2; ++kvi) {
            T* row = pool.data() + ((phys * 2 + kvi) * ps + s) * kvh * hd;
            for (std::size_t i = 0; i < kvh * hd; ++i) row[i] = from_float<T>(dist(rng) + 1e-3f);
          }
        }
      }
      kv_indptr.push_back(static_cast<std::uint32_t>(kv_indices.size()));
      last_len.push_back(np == 0 ? 0 : static_cast<std::uint32_t>(r.kv_len - (np - 1) * ps));
      std::size_t const first = qo_indptr.back();
      qo_indptr.push_back(static_cast<std::uint32_t>(first + r.qo_len));
      if (kind == MaskKind::causal_default) continue;
      std::size_t const before = r.kv_len - r.qo_len;
      std::vector<std::size_t> parent(r.qo_len);
      for (std::size_t i = 0; i < r.qo_len; ++i) {
        parent[i] = i == 0 ? 0 : std::uniform_int_distribution<std::size_t>(0, i - 1)(rng);
      }
      for (std::size_t i = 0; i < r.qo_len; ++i) {
        std::size_t const visible = before + i + 1;
        switch (kind) {
          case MaskKind::window: masks.push_back(AttentionMask::window(visible, 20)); break;
          case MaskKind::sink_window: masks.push_back(AttentionMask::sink_window(visible, 4, 19)); break;
          case MaskKind::random_rows: {
            if (i % 4 == 1) {  // sees nothing: an empty row, or one that masks every position
              masks.push_back(i % 8 == 1 ? AttentionMask{} : AttentionMask(Brle().append(true, r.kv_len)));
              blind.push_back(first + i);
              break;
            }
            Brle bits;
            std::size_t const len = std::uniform_int_distribution<std::size_t>(0, r.kv_len)(rng);
            bool masked = std::uniform_int_distribution<int>(0, 1)(rng) == 1;
            std::size_t pos = 0;
            while (pos < len) {
              std::size_t const run = std::min(len - pos, std::uniform_int_distribution<std::size_t>(1, 40)(rng));
              bits.append(masked, run);
              masked = !masked;
              pos += run;
            }
            masks.emplace_back(std::move(bits));
            break;
          }
          case MaskKind::tree: {  // speculative tree: the prefix plus the token's ancestors (and itself)
            std::vector<bool> attend(r.kv_len, false);
            for (std::size_t p = 0; p < before; ++p) attend[p] = true;
            for (std::size_t j = i;; j = parent[j]) {
              attend[before + j] = true;
              if (j == 0) break;
            }
            Brle bits;
            for (bool a : attend) bits.append(!a);
            masks.emplace_back(std::move(bits));
            break;
          }
          case MaskKind::causal_default: break;
        }
      }
    }
    q = random_floats(rng, qo_indptr.back() * qo_heads * hd);
  }

  [[nodiscard]] PagedKv<T const> kv() const { return {pool.data(), num_pages, page_size, kv_heads, head_dim}; }
  [[nodiscard]] PagedBatch batch() const { return {qo_indptr, kv_indptr, kv_indices, last_len}; }
  [[nodiscard]] std::size_t tokens() const { return qo_indptr.back(); }

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
    std::size_t const stride = kv().page_stride();
    for (std::size_t b = 0; b < plans.size(); ++b) {
      for (std::size_t p = 0; p < plans[b].num_pages; ++p) {
        if (std::find(plans[b].kept_pages.begin(), plans[b].kept_pages.end(), p) != plans[b].kept_pages.end()) continue;
        std::size_t const phys = kv_indices[kv_indptr[b] + p];
        auto const page = pool.begin() + static_cast<std::ptrdiff_t>(phys * stride);
        std::fill(page, page + static_cast<std::ptrdiff_t>(stride), from_float<T>(std::numeric_limits<float>::quiet_NaN()));
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

/// paged_attention over `sc` on the space under test, one-shot; also planned once for the step and read by
/// two layers (what a model does), which must give the same bits.
template <class T>
Result run_attention(Scenario<T> const& sc, PagedAttentionParams const& params, AttentionSelection const& sel) {
  Space const space = test::make_space();
  std::size_t const tokens = sc.tokens(), h = sc.qo_heads, d = sc.head_dim;
  auto const qd = upload(space, sc.q);
  auto const pool = upload(space, sc.pool);
  PagedKv<T const> const kv{pool.data(), sc.num_pages, sc.page_size, sc.kv_heads, d};
  float const nan = std::numeric_limits<float>::quiet_NaN();  // every output must be written
  auto od = filled(space, tokens * h * d, nan), ld = filled(space, tokens * h, nan);
  PagedBatch const batch = sc.batch();
  paged_attention(space, qd.view(tokens, h, d), kv, batch, od.view(tokens, h, d), ld.view(tokens, h), params, sel);
  Result res{download(space, od), download(space, ld)};
  auto const plan = plan_attention(space, AttentionProblem{tokens, h, d, sc.kv_heads, sc.num_pages, sc.page_size, batch, sel});
  auto od2 = filled(space, tokens * h * d, nan), ld2 = filled(space, tokens * h, nan);
  for (int layer = 0; layer < 2; ++layer) {
    paged_attention(space, qd.view(tokens, h, d), kv, plan, od2.view(tokens, h, d), ld2.view(tokens, h), params);
    CHECK(download(space, od2) == res.out);
    CHECK(download(space, ld2) == res.lse);
  }
  return res;
}

/// Whether the host's chosen path reads q rounded to bf16 (avx512_bf16 on bf16 KV: vdpbf16ps scores).
template <class T>
bool host_rounds_q() {
  return std::is_same_v<T, BFloat16> && host::detail::attention_path() == host::detail::AttentionPath::avx512_bf16;
}

/// q as the space under test reads it: rounded to bf16 where the host's path does (the reference on it
/// keeps the 2e-5 tolerance), else as is.
///   q [tokens][qo_heads][head_dim]
template <class T>
std::vector<float> q_as_read(std::vector<float> const& q) {
  if (!test::space_is_host || !host_rounds_q<T>()) return q;
  std::vector<float> r(q.size());  // [tokens][qo_heads][head_dim]
  for (std::size_t i = 0; i < q.size(); ++i) r[i] = static_cast<float>(BFloat16(q[i]));
  return r;
}

template <class T>
void check_against_reference(Scenario<T> const& sc, PagedAttentionParams const& params, AttentionSelection const& sel) {
  Result const got = run_attention(sc, params, sel);
  double const scale = params.sm_scale == 0 ? 1.0 / std::sqrt(double(sc.head_dim)) : params.sm_scale;
  // The reference reads the positions the mask rows attend; with page-trim those are on kept pages.
  auto const ref = reference::paged_attention<T>(q_as_read<T>(sc.q), sc.qo_heads, sc.kv(), sc.batch(), scale,
                                                 params.logits_soft_cap, sc.masks);
  CHECK(tolerance_ratio(got.out, ref.out, 2e-5, 2e-5) <= 1.0);
  CHECK(tolerance_ratio(got.lse, ref.lse, 2e-5, 2e-5) <= 1.0);
  for (std::size_t t : sc.blind) {  // a token that sees nothing: out = 0 and lse = -inf
    for (std::size_t h = 0; h < sc.qo_heads; ++h) {
      REQUIRE(got.lse[t * sc.qo_heads + h] == -std::numeric_limits<float>::infinity());
      for (std::size_t d = 0; d < sc.head_dim; ++d) REQUIRE(got.out[(t * sc.qo_heads + h) * sc.head_dim + d] == 0.0f);
    }
  }
  if constexpr (!test::space_is_host) {  // and the host backend, on the same host inputs
    std::size_t const tokens = sc.tokens(), h = sc.qo_heads, d = sc.head_dim;
    std::vector<float> out(tokens * h * d), lse(tokens * h);
    paged_attention(Host{}, ShapedView<float const, 3>(sc.q.data(), tokens, h, d), sc.kv(), sc.batch(),
                    ShapedView<float, 3>(out.data(), tokens, h, d), ShapedView<float, 2>(lse.data(), tokens, h), params, sel);
    double const tol = host_rounds_q<T>() ? 3e-3 : 2e-5;  // the host's q rounded to bf16: see the path test
    CHECK(tolerance_ratio(got.out, out, tol, tol) <= 1.0);
    CHECK(tolerance_ratio(got.lse, lse, tol, tol) <= 1.0);
  }
}

// A full prefill, a decode row, a chunked prefill continuing a cached prefix, an empty request, a short
// decode, a long decode split into several KV pieces (split-KV merge) and a two-token step.
std::vector<Request> const ragged{{37, 37}, {150, 1}, {70, 9}, {0, 0}, {16, 1}, {1100, 1}, {300, 2}};

}  // namespace

TEMPLATE_TEST_CASE("paged_attention matches the reference for every mask kind, GQA ratio, head_dim and page size",
                   "[kernel][attention]", float, BFloat16) {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (MaskKind kind : {MaskKind::causal_default, MaskKind::window, MaskKind::sink_window, MaskKind::random_rows, MaskKind::tree}) {
    for (std::size_t ps : {std::size_t{16}, std::size_t{1}}) {
      for (std::size_t group : {std::size_t{1}, std::size_t{3}, std::size_t{4}, std::size_t{8}}) {
        for (std::size_t hd : {std::size_t{64}, std::size_t{128}}) {
          // Keep the suite fast: page size 1 with GQA 1 and 4 only; head_dim 128 with GQA 3 and 8 (and 4 at
          // page size 1) only for random rows.
          if (ps == 1 && (group == 3 || group == 8)) continue;
          if (hd == 128 && kind != MaskKind::random_rows && (group == 3 || group == 8 || (group == 4 && ps == 1))) continue;
          INFO("mask kind " << static_cast<int>(kind) << " page size " << ps << " group " << group << " head_dim " << hd);
          Scenario<TestType> const sc(rng, ragged, ps, 2, group, hd, kind);
          if (kind == MaskKind::random_rows) REQUIRE(!sc.blind.empty());
          check_against_reference(sc, {}, {sc.masks, {}});
        }
      }
    }
  }
  // head_dim 256 (Gemma 3: 4 query heads on one KV head), causal, windowed and random rows.
  for (MaskKind kind : {MaskKind::causal_default, MaskKind::window, MaskKind::random_rows}) {
    INFO("head_dim 256, mask kind " << static_cast<int>(kind));
    Scenario<TestType> const sc(rng, ragged, 16, 1, 4, 256, kind);
    check_against_reference(sc, {}, {sc.masks, {}});
  }
  // Soft-cap and an explicit scale: random rows with GQA 3 on page size 4, sink + window rows, causal attention.
  Scenario<TestType> const capped(rng, ragged, 4, 1, 3, 64, MaskKind::random_rows);
  check_against_reference(capped, {0.5f, 3.0f}, {capped.masks, {}});
  Scenario<TestType> const capped_window(rng, ragged, 16, 2, 4, 64, MaskKind::sink_window);
  check_against_reference(capped_window, {0.2f, 2.0f}, {capped_window.masks, {}});
  Scenario<TestType> const capped_causal(rng, ragged, 16, 2, 2, 128, MaskKind::causal_default);
  check_against_reference(capped_causal, {0.0f, 1.5f}, {});
}

TEMPLATE_TEST_CASE("slot rows of 4 KiB (prefetched in reading order, not address order) match the reference",
                   "[kernel][attention]", float, BFloat16) {
  // The host's AVX2 kernels issue their prefetches in one of two orders depending on a slot row's size
  // (every KV head of one slot); the cases above all have rows under 4 KiB. 8 (f32) or 16 (bf16) KV heads
  // of 128 make 4 KiB rows; a ragged batch with a prefill, a chunked prefill, a decode and a split decode
  // covers the prefetch walk across pages, steps and pieces (on other spaces: one more shape).
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  std::size_t const kvh = std::is_same_v<TestType, float> ? 8 : 16;
  std::vector<Request> const reqs{{37, 37}, {150, 1}, {70, 9}, {1100, 1}};
  for (MaskKind kind : {MaskKind::causal_default, MaskKind::sink_window}) {
    INFO("mask kind " << static_cast<int>(kind));
    Scenario<TestType> const sc(rng, reqs, 16, kvh, 4, 128, kind);
    REQUIRE(sc.kv().slot_stride() * sizeof(TestType) == 4096);
    check_against_reference(sc, {}, {sc.masks, {}});
  }
}

TEMPLATE_TEST_CASE("page-trim gives the same result and never reads dropped pages", "[kernel][attention][trim]", float,
                   BFloat16) {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  std::vector<Request> const reqs{{200, 1}, {130, 6}, {64, 64}, {90, 3}, {1500, 2}, {260, 2}};
  for (std::size_t ps : {std::size_t{16}, std::size_t{1}}) {
    for (MaskKind kind : {MaskKind::sink_window, MaskKind::window, MaskKind::random_rows, MaskKind::causal_default}) {
      INFO("mask kind " << static_cast<int>(kind) << " page size " << ps);
      Scenario<TestType> sc(rng, reqs, ps, 2, 4, 64, kind);
      auto const plans = sc.trims();
      Result const untrimmed = run_attention(sc, {}, {sc.masks, {}});
      // Poison every dropped page: a trimmed run that read one would produce NaN.
      std::size_t const dropped = sc.poison_dropped(plans);
      if (kind == MaskKind::sink_window || kind == MaskKind::window) REQUIRE(dropped > 0);
      if (kind == MaskKind::causal_default) REQUIRE(dropped == 0);
      check_against_reference(sc, {}, {{}, plans});  // the reference reads only attended (kept) positions
      Result const trimmed = run_attention(sc, {}, {{}, plans});
      if constexpr (test::space_is_host) {  // the host: same positions, same chunks, same order: bitwise equal
        CHECK(trimmed.out == untrimmed.out);
        CHECK(trimmed.lse == untrimmed.lse);
      } else {  // other spaces may split the kept KV differently
        CHECK(tolerance_ratio(trimmed.out, untrimmed.out, 2e-5, 2e-5) <= 1.0);
        CHECK(tolerance_ratio(trimmed.lse, untrimmed.lse, 2e-5, 2e-5) <= 1.0);
      }
    }
  }
}

#if !defined(PIECRUST_TEST_SPACE_HEADER)  // the host build only: the host's thread pool
TEMPLATE_TEST_CASE("decode batches cut into KV-head slices: the same bits for every thread count", "[kernel][attention]",
                   float, BFloat16) {
  // One or two decode rows make fewer work items than threads, so the kernel cuts each into slices of
  // KV heads (how many depends on the thread count: 4 for one thread, 8 for two or more here). Heads
  // are independent, so every slicing must give the bits of every other, and the reference's values.
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (std::vector<Request> const& reqs : {std::vector<Request>{{300, 1}}, std::vector<Request>{{1500, 1}, {40, 1}}}) {
    Scenario<TestType> const sc(rng, reqs, 16, 8, 2, 64, MaskKind::sink_window);
    std::size_t const tokens = sc.tokens();
    auto run = [&](std::size_t threads) {
      std::vector<float> out(tokens * sc.qo_heads * sc.head_dim, -5.0f), lse(tokens * sc.qo_heads, -5.0f);
      paged_attention(Host{threads}, ShapedView<float const, 3>(sc.q.data(), tokens, sc.qo_heads, sc.head_dim), sc.kv(),
                      sc.batch(), ShapedView<float, 3>(out.data(), tokens, sc.qo_heads, sc.head_dim),
                      ShapedView<float, 2>(lse.data(), tokens, sc.qo_heads), {}, {sc.masks, {}});
      return std::pair{out, lse};
    };
    auto const one = run(1);
    auto const ref = reference::paged_attention<TestType>(q_as_read<TestType>(sc.q), sc.qo_heads, sc.kv(), sc.batch(),
                                                          1.0 / std::sqrt(double(sc.head_dim)), 0.0, sc.masks);
    CHECK(tolerance_ratio(one.first, ref.out, 2e-5, 2e-5) <= 1.0);
    CHECK(tolerance_ratio(one.second, ref.lse, 2e-5, 2e-5) <= 1.0);
    for (std::size_t threads : {std::size_t{2}, std::size_t{3}, std::size_t{16}}) {
      INFO("threads " << threads);
      auto const other = run(threads);
      CHECK(other.first == one.first);
      CHECK(other.second == one.second);
    }
  }
}

TEMPLATE_TEST_CASE("every host code path (scalar, AVX2, AVX-512, AVX-512 BF16) matches the reference and the others",
                   "[kernel][attention][simd]", float, BFloat16) {
  // The same scenarios on each path this CPU runs (attention_paths: scalar always; AVX2; AVX-512; and
  // AVX-512 with vdpbf16ps scores), chosen for the calls inside the scope. Each path against the
  // reference with 2e-5 absolute + 2e-5 relative, except avx512_bf16 on bf16 KV: its scores read q
  // rounded to bf16 (relative error <= 2^-9 per element), so it is held to 2e-5 against the reference
  // on that rounded q (the products of two bf16 are exact in f32, only summation order differs) and to
  // 3e-3 + 3e-3 against the reference on the f32 q and against the scalar path (a score error of at most
  // 2^-9 * scale * sum |q_i k_i|, ~0.003 for d 128 with values in [-1, 1] in the worst case, times
  // outputs in [-1, 1]). Every path: the same bits for 1 and 2 threads and with and without page-trim.
  using host::detail::AttentionPath;
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  std::vector<AttentionPath> const paths = host::detail::attention_paths();
  REQUIRE(paths.front() == AttentionPath::scalar);
  struct Shape {
    std::size_t page_size, kv_heads, group, head_dim;
    MaskKind kind;
  };
  std::vector<Shape> const shapes{{16, 2, 1, 64, MaskKind::causal_default}, {16, 2, 3, 64, MaskKind::random_rows},
                                  {16, 2, 4, 128, MaskKind::causal_default}, {1, 2, 4, 64, MaskKind::sink_window},
                                  {16, 1, 8, 128, MaskKind::random_rows},    {16, 1, 4, 256, MaskKind::window},
                                  {16, 3, 3, 64, MaskKind::tree}};
  for (Shape const& sh : shapes) {
    INFO("page size " << sh.page_size << " kv heads " << sh.kv_heads << " group " << sh.group << " head_dim "
                      << sh.head_dim << " mask kind " << static_cast<int>(sh.kind));
    Scenario<TestType> sc(rng, ragged, sh.page_size, sh.kv_heads, sh.group, sh.head_dim, sh.kind);
    std::size_t const tokens = sc.tokens(), h = sc.qo_heads, d = sc.head_dim;
    double const scale = 1.0 / std::sqrt(double(d));
    auto const ref = reference::paged_attention<TestType>(sc.q, h, sc.kv(), sc.batch(), scale, 0.0, sc.masks);
    std::vector<float> q_bf16(sc.q.size());  // [tokens][qo_heads][head_dim] q rounded to bf16
    for (std::size_t i = 0; i < q_bf16.size(); ++i) q_bf16[i] = static_cast<float>(BFloat16(sc.q[i]));
    auto const ref_bf16 = reference::paged_attention<TestType>(q_bf16, h, sc.kv(), sc.batch(), scale, 0.0, sc.masks);
    auto run = [&](std::size_t threads, AttentionSelection const& sel) {
      Result r{std::vector<float>(tokens * h * d, -5.0f), std::vector<float>(tokens * h, -5.0f)};
      paged_attention(Host{threads}, ShapedView<float const, 3>(sc.q.data(), tokens, h, d), sc.kv(), sc.batch(),
                      ShapedView<float, 3>(r.out.data(), tokens, h, d), ShapedView<float, 2>(r.lse.data(), tokens, h),
                      {}, sel);
      return r;
    };
    std::vector<Result> got;  // [paths]
    for (AttentionPath const path : paths) {
      INFO("path " << host::detail::attention_path_name(path));
      host::detail::ScopedAttentionPath const scoped(path);
      got.push_back(run(1, {sc.masks, {}}));
      Result const& r = got.back();
      bool const rounded_q = path == AttentionPath::avx512_bf16 && std::is_same_v<TestType, BFloat16>;
      auto const& exact = rounded_q ? ref_bf16 : ref;
      CHECK(tolerance_ratio(r.out, exact.out, 2e-5, 2e-5) <= 1.0);
      CHECK(tolerance_ratio(r.lse, exact.lse, 2e-5, 2e-5) <= 1.0);
      double const tol = rounded_q ? 3e-3 : 2e-5;
      CHECK(tolerance_ratio(r.out, ref.out, tol, tol) <= 1.0);
      CHECK(tolerance_ratio(r.lse, ref.lse, tol, tol) <= 1.0);
      CHECK(tolerance_ratio(r.out, got.front().out, tol, tol) <= 1.0);
      CHECK(tolerance_ratio(r.lse, got.front().lse, tol, tol) <= 1.0);
      Result const two = run(2, {sc.masks, {}});
      CHECK(two.out == r.out);
      CHECK(two.lse == r.lse);
    }
    if (sh.kind == MaskKind::sink_window || sh.kind == MaskKind::window) {
      auto const plans = sc.trims();
      REQUIRE(sc.poison_dropped(plans) > 0);
      for (std::size_t i = 0; i < paths.size(); ++i) {
        INFO("trimmed, path " << host::detail::attention_path_name(paths[i]));
        host::detail::ScopedAttentionPath const scoped(paths[i]);
        Result const trimmed = run(2, {{}, plans});
        CHECK(trimmed.out == got[i].out);
        CHECK(trimmed.lse == got[i].lse);
      }
    }
  }
}

#endif

TEST_CASE("paged_attention rejects bad input before computing anything", "[kernel][attention]") {
  std::mt19937_64 rng(test::fresh_seed());
  Space const space = test::make_space();
  std::vector<Request> const reqs{{20, 2}, {5, 1}};
  Scenario<float> const sc(rng, reqs, 16, 2, 2, 64, MaskKind::causal_default);
  std::size_t const tokens = sc.tokens();
  auto const qd = upload(space, sc.q);
  auto const pool = upload(space, sc.pool);
  auto od = filled(space, tokens * sc.qo_heads * 64, 3.0f), ld = filled(space, tokens * sc.qo_heads, 3.0f);
  auto call = [&](PagedBatch const& batch, AttentionSelection const& sel = {}, std::size_t qo_heads = 4, std::size_t hd = 64) {
    PagedKv<float const> const kv{pool.data(), sc.num_pages, sc.page_size, sc.kv_heads, hd};
    paged_attention(space, ShapedView<float const, 3>(qd.data(), tokens, qo_heads, hd), kv, batch,
                    ShapedView<float, 3>(od.data(), tokens, qo_heads, hd), ShapedView<float, 2>(ld.data(), tokens, qo_heads), {},
                    sel);
  };
  PagedBatch good = sc.batch();
  REQUIRE_NOTHROW(call(good));
  od = filled(space, tokens * sc.qo_heads * 64, 3.0f);
  REQUIRE_THROWS_WITH(call(good, {}, 4, 96), Catch::Contains("head_dim = 96 is not supported"));
  REQUIRE_THROWS_AS(call(good, {}, 4, 96), Unsupported);
  REQUIRE_THROWS_WITH(call(good, {}, 3), Catch::Contains("num_qo_heads = 3"));
  auto bad_indices = sc.kv_indices;
  bad_indices[0] = static_cast<std::uint32_t>(sc.num_pages);
  REQUIRE_THROWS_AS(call({sc.qo_indptr, sc.kv_indptr, bad_indices, sc.last_len}), OutOfRange);
  auto bad_last = sc.last_len;
  bad_last[0] = 17;
  REQUIRE_THROWS_WITH(call({sc.qo_indptr, sc.kv_indptr, sc.kv_indices, bad_last}), Catch::Contains("kv_last_page_len[0] = 17"));
  auto bad_qo = sc.qo_indptr;
  bad_qo[1] = 2;
  bad_qo[2] = 2;
  REQUIRE_THROWS_WITH(call({bad_qo, sc.kv_indptr, sc.kv_indices, sc.last_len}), Catch::Contains("qo_indptr[batch] (tokens) = 2"));
  std::vector<AttentionMask> masks(tokens, AttentionMask::causal(3));
  masks[2] = AttentionMask::causal(6);  // request 1 has 5 positions
  REQUIRE_THROWS_WITH(call(good, {masks, {}}), Catch::Contains("masks[2].size() = 6 > kv length 5"));
  std::vector<AttentionMask> short_masks(2);
  REQUIRE_THROWS_WITH(call(good, {short_masks, {}}), Catch::Contains("masks.size() (tokens) = 2"));
  std::vector<TrimPlan> plans(2);
  REQUIRE_THROWS_WITH(call(good, {{}, plans}), Catch::Contains("trims[0].num_pages = 0"));
  // Causal attention needs the new tokens' K/V first.
  std::vector<std::uint32_t> qo_big{0, 2, 3};
  auto last_short = sc.last_len;
  REQUIRE_NOTHROW(call({qo_big, sc.kv_indptr, sc.kv_indices, last_short}));
  od = filled(space, tokens * sc.qo_heads * 64, 3.0f);
  std::vector<std::uint32_t> kv_indptr_none{0, 0, 1};
  std::vector<std::uint32_t> last_none{0, 5};
  REQUIRE_THROWS_WITH(call({qo_big, kv_indptr_none, sc.kv_indices, last_none}), Catch::Contains("kv length 0 < qo length 2"));
  for (float x : download(space, od)) REQUIRE(x == 3.0f);  // the failed calls wrote nothing
}

TEST_CASE("a planned step refuses inputs of another shape and plans only valid batches", "[kernel][attention][errors]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  Scenario<float> const sc(rng, {{40, 4}, {17, 1}}, 16, 2, 2, 64, MaskKind::causal_default);
  std::size_t const tokens = sc.tokens();
  PagedBatch const batch = sc.batch();
  AttentionProblem const problem{tokens, sc.qo_heads, sc.head_dim, sc.kv_heads, sc.num_pages, sc.page_size, batch, {}};
  auto const plan = plan_attention(space, problem);
  auto const qd = upload(space, sc.q);
  auto const pool = upload(space, sc.pool);
  auto od = filled(space, tokens * sc.qo_heads * sc.head_dim, 3.0f), ld = filled(space, tokens * sc.qo_heads, 3.0f);
  auto run = [&](std::size_t num_pages, std::size_t q_tokens) {
    PagedKv<float const> const kv{pool.data(), num_pages, sc.page_size, sc.kv_heads, sc.head_dim};
    paged_attention(space, ShapedView<float const, 3>(qd.data(), q_tokens, sc.qo_heads, sc.head_dim), kv, plan,
                    ShapedView<float, 3>(od.data(), q_tokens, sc.qo_heads, sc.head_dim),
                    ShapedView<float, 2>(ld.data(), q_tokens, sc.qo_heads));
  };
  CHECK_THROWS_WITH(run(sc.num_pages - 1, tokens), Catch::Contains("kv.num_pages"));
  CHECK_THROWS_WITH(run(sc.num_pages, tokens - 1), Catch::Contains("q.extent(0) (tokens)"));
  auto const out = download(space, od);
  CHECK(std::all_of(out.begin(), out.end(), [](float v) { return v == 3.0f; }));  // nothing written
  AttentionProblem bad = problem;
  bad.num_pages = 1;  // kv_indices point past the pool
  CHECK_THROWS_AS(plan_attention(space, bad), OutOfRange);
  bad = problem;
  bad.head_dim = 96;
  CHECK_THROWS_AS(plan_attention(space, bad), Unsupported);
}
