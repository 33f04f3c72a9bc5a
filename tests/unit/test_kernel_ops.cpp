// Model ops on the host against the double-precision references: rms_norm, fused_add_rms_norm, rope,
// swiglu, embedding, gemm (every weight type, both gemm paths), append_kv, merge_states.
// Tolerances: f32 kernels 1e-5 relative + 1e-5 absolute (f32 rounding of O(dim) sums);
// quantized gemm is compared with the reference over the same quantized weights (the kernel must
// not add error beyond f32 accumulation: 1e-4 relative on sums of up to 1024 terms).

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "piecrust/backends/host.hpp"
#include "piecrust/kernels.hpp"
#include "piecrust/kernels/reference/attention.hpp"
#include "piecrust/kernels/reference/model_ops.hpp"
#include "test_kernel_support.hpp"

using namespace piecrust;
using piecrust::test::random_floats;
using piecrust::test::tolerance_ratio;

TEST_CASE("rms_norm and fused_add_rms_norm match the reference", "[kernel][rms_norm]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Host const host;
  for (std::size_t dim : {std::size_t{64}, std::size_t{576}, std::size_t{1000}}) {
    std::size_t const rows = 7;
    auto x = random_floats(rng, rows * dim, -3, 3);       // [rows][dim]
    auto const w = random_floats(rng, dim, 0.5f, 1.5f);   // [dim]
    std::vector<float> out(rows * dim);                   // [rows][dim]
    rms_norm(host, ShapedView<float const, 2>(x.data(), rows, dim), ShapedView<float const, 1>(w.data(), dim),
             ShapedView<float, 2>(out.data(), rows, dim), 1e-5f);
    auto const ref = reference::rms_norm(x, w, dim, 1e-5);
    CHECK(tolerance_ratio(out, ref, 1e-5, 1e-5) <= 1.0);

    auto residual = random_floats(rng, rows * dim, -2, 2);  // [rows][dim]
    std::vector<float> summed(rows * dim);
    for (std::size_t i = 0; i < summed.size(); ++i) summed[i] = residual[i] + x[i];
    auto const ref2 = reference::rms_norm(summed, w, dim, 1e-6);
    fused_add_rms_norm(host, ShapedView<float, 2>(x.data(), rows, dim), ShapedView<float, 2>(residual.data(), rows, dim),
                       ShapedView<float const, 1>(w.data(), dim), 1e-6f);
    CHECK(tolerance_ratio(residual, summed, 1e-6, 1e-6) <= 1.0);
    CHECK(tolerance_ratio(x, ref2, 1e-5, 1e-5) <= 1.0);
  }
  std::vector<float> x(8, 1.0f), w(4, 1.0f), out(8);
  REQUIRE_THROWS_WITH(rms_norm(host, ShapedView<float const, 2>(x.data(), 2, 4), ShapedView<float const, 1>(w.data(), 3),
                               ShapedView<float, 2>(out.data(), 2, 4)),
                      Catch::Contains("weight.extent(0) = 3"));
  REQUIRE_THROWS_AS(rms_norm(host, ShapedView<float const, 2>(x.data(), 2, 4), ShapedView<float const, 1>(w.data(), 4),
                             ShapedView<float, 2>(out.data(), 2, 4), -1.0f),
                    InvalidArgument);
}

TEST_CASE("rope matches the reference for both pairings, partial rotary and Llama-3 scaling", "[kernel][rope]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Host const host;
  std::size_t const tokens = 9, heads = 3, head_dim = 64;
  std::vector<std::uint32_t> positions(tokens);
  std::uniform_int_distribution<std::uint32_t> pos_dist(0, 100000);
  for (auto& p : positions) p = pos_dist(rng);
  positions[0] = 0;
  std::vector<RopeParams> cases;
  cases.push_back({10000.0f, RopeStyle::adjacent_pairs, 0, {}});
  cases.push_back({10000.0f, RopeStyle::half_split, 0, {}});
  cases.push_back({500000.0f, RopeStyle::half_split, 0, {8.0f, 1.0f, 4.0f, 8192}});
  cases.push_back({100000.0f, RopeStyle::adjacent_pairs, 32, {32.0f, 1.0f, 4.0f, 8192}});
  for (RopeParams const& p : cases) {
    auto x = random_floats(rng, tokens * heads * head_dim);  // [tokens][heads][head_dim]
    auto const ref = reference::rope(x, heads, head_dim, positions, p);
    rope(host, ShapedView<float, 3>(x.data(), tokens, heads, head_dim), positions, p);
    CHECK(tolerance_ratio(x, ref, 2e-6, 2e-6) <= 1.0);
  }
  // Position 0 is the identity.
  auto x = random_floats(rng, heads * head_dim);
  auto const before = x;
  std::vector<std::uint32_t> zero{0};
  rope(host, ShapedView<float, 3>(x.data(), 1, heads, head_dim), zero, {});
  CHECK(x == before);
  // Llama-3 scaling matches transformers' values for Llama 3.1 at a few indices (computed in Python).
  RopeParams llama31{500000.0f, RopeStyle::half_split, 0, {8.0f, 1.0f, 4.0f, 8192}};
  auto const inv = detail::rope_inv_freq(llama31, 128);
  CHECK(inv[0] == Approx(1.0).epsilon(1e-12));
  CHECK(inv[63] == Approx(std::pow(500000.0, -126.0 / 128.0) / 8.0).epsilon(1e-12));  // low frequency: / factor
  CHECK(inv[10] == Approx(std::pow(500000.0, -20.0 / 128.0)).epsilon(1e-12));         // high frequency: kept
  // Bad input.
  REQUIRE_THROWS_WITH(rope(host, ShapedView<float, 3>(x.data(), 1, heads, head_dim), positions, {}),
                      Catch::Contains("positions.size() = 9"));
  RopeParams odd{};
  odd.rotary_dim = 7;
  REQUIRE_THROWS_WITH(rope(host, ShapedView<float, 3>(x.data(), 1, heads, head_dim), zero, odd),
                      Catch::Contains("rotary_dim = 7"));
  RopeParams bad_theta{};
  bad_theta.theta = 0;
  REQUIRE_THROWS_AS(rope(host, ShapedView<float, 3>(x.data(), 1, heads, head_dim), zero, bad_theta), InvalidArgument);
}

TEST_CASE("swiglu matches the reference", "[kernel][swiglu]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Host const host;
  std::size_t const rows = 5, dim = 1536;
  auto const gate = random_floats(rng, rows * dim, -8, 8);  // [rows][dim]
  auto const up = random_floats(rng, rows * dim, -2, 2);    // [rows][dim]
  std::vector<float> out(rows * dim);
  swiglu(host, ShapedView<float const, 2>(gate.data(), rows, dim), ShapedView<float const, 2>(up.data(), rows, dim),
         ShapedView<float, 2>(out.data(), rows, dim));
  CHECK(tolerance_ratio(out, reference::swiglu(gate, up), 1e-6, 1e-6) <= 1.0);
  REQUIRE_THROWS_AS(swiglu(host, ShapedView<float const, 2>(gate.data(), rows, dim),
                           ShapedView<float const, 2>(up.data(), rows - 1, dim), ShapedView<float, 2>(out.data(), rows, dim)),
                    InvalidArgument);
}

namespace {
constexpr WeightType all_types[] = {WeightType::f32, WeightType::f16, WeightType::bf16, WeightType::q8_0, WeightType::q4_1};
}

TEST_CASE("embedding gathers dequantized rows of every weight type", "[kernel][embedding]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Host const host;
  std::size_t const vocab = 50, dim = 96;
  auto const table_f32 = random_floats(rng, vocab * dim);  // [vocab][dim]
  std::vector<std::uint32_t> ids{3, 49, 0, 3, 17};
  for (WeightType type : all_types) {
    INFO("type " << weight_type_name(type));
    auto const bytes = test::quantize(type, table_f32, vocab, dim);
    WeightMatrix const table{type, bytes.data(), vocab, dim};
    std::vector<float> out(ids.size() * dim);  // [tokens][dim]
    embedding(host, table, ids, ShapedView<float, 2>(out.data(), ids.size(), dim));
    std::vector<double> ref;
    for (auto id : ids) {
      auto const row = reference::dequantize_row(table, id);
      ref.insert(ref.end(), row.begin(), row.end());
    }
    CHECK(tolerance_ratio(out, ref, 1e-7, 1e-6) <= 1.0);
    // Quantization error itself stays within the format's resolution.
    double const quant_tol = type == WeightType::q4_1 ? 0.07 : type == WeightType::q8_0 ? 0.005 : 0.004;
    for (std::size_t t = 0; t < ids.size(); ++t) {
      for (std::size_t c = 0; c < dim; ++c) REQUIRE(std::abs(out[t * dim + c] - table_f32[ids[t] * dim + c]) <= quant_tol);
    }
    std::vector<float> all(vocab * dim);  // [vocab][dim]
    dequantize(host, table, ShapedView<float, 2>(all.data(), vocab, dim));
    for (std::size_t t = 0; t < ids.size(); ++t) {
      for (std::size_t c = 0; c < dim; ++c) REQUIRE(all[ids[t] * dim + c] == out[t * dim + c]);
    }
    REQUIRE_THROWS_AS(dequantize(host, table, ShapedView<float, 2>(all.data(), vocab, dim - 1)), InvalidArgument);
    std::vector<std::uint32_t> bad{1, 50};
    REQUIRE_THROWS_WITH(embedding(host, table, bad, ShapedView<float, 2>(out.data(), 2, dim)),
                        Catch::Contains("ids[1] = 50 >= vocab = 50"));
  }
  WeightMatrix const odd{WeightType::q8_0, table_f32.data(), vocab, 40};
  std::vector<float> out(dim);
  REQUIRE_THROWS_WITH(embedding(host, odd, std::vector<std::uint32_t>{0}, ShapedView<float, 2>(out.data(), 1, 40)),
                      Catch::Contains("cols = 40"));
  WeightMatrix const unknown{static_cast<WeightType>(12), table_f32.data(), vocab, dim};
  REQUIRE_THROWS_AS(embedding(host, unknown, std::vector<std::uint32_t>{0}, ShapedView<float, 2>(out.data(), 1, dim)),
                    Unsupported);
}

TEST_CASE("gemm matches the reference for every weight type, both paths, and beta", "[kernel][gemm]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Host const host;
  std::size_t const n = 72, k = 576;
  auto const w_f32 = random_floats(rng, n * k);  // [n][k]
  for (WeightType type : all_types) {
    auto const bytes = test::quantize(type, w_f32, n, k);
    WeightMatrix const w{type, bytes.data(), n, k};
    for (std::size_t m : {std::size_t{1}, std::size_t{3}, std::size_t{8}, std::size_t{9}, std::size_t{40}}) {
      INFO("type " << weight_type_name(type) << " m " << m);
      auto const x = random_floats(rng, m * k);       // [m][k]
      auto const y0 = random_floats(rng, m * n);      // [m][n]
      std::vector<float> y(m * n, std::numeric_limits<float>::quiet_NaN());  // beta = 0 ignores old contents
      gemm(host, ShapedView<float const, 2>(x.data(), m, k), w, ShapedView<float, 2>(y.data(), m, n));
      CHECK(tolerance_ratio(y, reference::gemm(x, m, w), 1e-4, 1e-4) <= 1.0);
      std::vector<float> y2 = y0;
      gemm(host, ShapedView<float const, 2>(x.data(), m, k), w, ShapedView<float, 2>(y2.data(), m, n), 1.0f);
      CHECK(tolerance_ratio(y2, reference::gemm(x, m, w, y0, 1.0), 1e-4, 1e-4) <= 1.0);
      if (type != WeightType::f32) {  // both quantized paths, whatever the crossover
        std::vector<float> yd(m * n), yp(m * n);
        KernelImpl<ops::Gemm, Host>::direct(host, ShapedView<float const, 2>(x.data(), m, k), w, ShapedView<float, 2>(yd.data(), m, n), 0.0f);
        KernelImpl<ops::Gemm, Host>::panels(host, ShapedView<float const, 2>(x.data(), m, k), w, ShapedView<float, 2>(yp.data(), m, n), 0.0f);
        auto const ref = reference::gemm(x, m, w);
        CHECK(tolerance_ratio(yd, ref, 1e-4, 1e-4) <= 1.0);
        CHECK(tolerance_ratio(yp, ref, 1e-4, 1e-4) <= 1.0);
      }
    }
  }
  std::vector<float> x(k), y(n);
  WeightMatrix const w{WeightType::f32, w_f32.data(), n, k};
  REQUIRE_THROWS_WITH(gemm(host, ShapedView<float const, 2>(x.data(), 1, k - 1), w, ShapedView<float, 2>(y.data(), 1, n)),
                      Catch::Contains("x.extent(1) (k) = 575"));
  REQUIRE_THROWS_WITH(gemm(host, ShapedView<float const, 2>(x.data(), 1, k), w, ShapedView<float, 2>(y.data(), 1, n - 1)),
                      Catch::Contains("y.extent(1) (n) = 71"));
  WeightMatrix const null_w{WeightType::q4_1, nullptr, n, k};
  REQUIRE_THROWS_AS(gemm(host, ShapedView<float const, 2>(x.data(), 1, k), null_w, ShapedView<float, 2>(y.data(), 1, n)),
                    InvalidArgument);
}

TEMPLATE_TEST_CASE("append_kv writes the new rows into their slots and nothing else", "[kernel][append_kv]", float, BFloat16) {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Host const host;
  std::size_t const pages = 6, ps = 16, kvh = 2, hd = 64;
  PagedKv<TestType> const shape{nullptr, pages, ps, kvh, hd};
  std::vector<TestType> pool(shape.size(), from_float<TestType>(7.0f));  // [pages][2][ps][kvh][hd]
  PagedKv<TestType> kv{pool.data(), pages, ps, kvh, hd};
  // Two requests: pages {4, 1} (positions 14..17 new) and {2} (positions 0..2 new).
  std::vector<std::uint32_t> kv_indptr{0, 2, 3}, kv_indices{4, 1, 2};
  std::vector<std::uint32_t> batch_idx{0, 0, 0, 0, 1, 1, 1}, pos{14, 15, 16, 17, 0, 1, 2};
  auto const slots = append_kv_slots(ps, batch_idx, pos, kv_indptr, kv_indices);
  REQUIRE(slots == std::vector<std::uint32_t>{4 * 16 + 14, 4 * 16 + 15, 16, 17, 32, 33, 34});
  std::size_t const n = slots.size();
  auto const k = random_floats(rng, n * kvh * hd);  // [n][kvh][hd]
  auto const v = random_floats(rng, n * kvh * hd);
  append_kv(host, kv, ShapedView<float const, 3>(k.data(), n, kvh, hd), ShapedView<float const, 3>(v.data(), n, kvh, hd), slots);
  std::size_t written = 0;
  for (std::size_t p = 0; p < pages; ++p) {
    for (std::size_t s = 0; s < ps; ++s) {
      std::size_t t = n;
      for (std::size_t i = 0; i < n; ++i) {
        if (slots[i] == p * ps + s) t = i;
      }
      for (std::size_t h = 0; h < kvh; ++h) {
        for (std::size_t d = 0; d < hd; ++d) {
          float const kk = to_float(kv.at(p, 0, s, h)[d]);
          float const vv = to_float(kv.at(p, 1, s, h)[d]);
          if (t == n) {
            REQUIRE(kk == 7.0f);
            REQUIRE(vv == 7.0f);
          } else {
            ++written;
            REQUIRE(kk == to_float(from_float<TestType>(k[(t * kvh + h) * hd + d])));
            REQUIRE(vv == to_float(from_float<TestType>(v[(t * kvh + h) * hd + d])));
          }
        }
      }
    }
  }
  REQUIRE(written == n * kvh * hd);
  std::vector<std::uint32_t> bad{0, 96};
  REQUIRE_THROWS_WITH(append_kv(host, kv, ShapedView<float const, 3>(k.data(), 2, kvh, hd),
                                ShapedView<float const, 3>(v.data(), 2, kvh, hd), bad),
                      Catch::Contains("slots[1] = 96 >= num_pages * page_size = 96"));
  std::vector<std::uint32_t> dup{5, 5};
  REQUIRE_THROWS_WITH(append_kv(host, kv, ShapedView<float const, 3>(k.data(), 2, kvh, hd),
                                ShapedView<float const, 3>(v.data(), 2, kvh, hd), dup),
                      Catch::Contains("appears twice"));
  REQUIRE(to_float(kv.at(0, 0, 0, 0)[0]) == 7.0f);  // nothing half-applied
  std::vector<std::uint32_t> far{40};
  REQUIRE_THROWS_AS(append_kv_slots(ps, std::vector<std::uint32_t>{1}, far, kv_indptr, kv_indices), OutOfRange);
}

TEST_CASE("merge_states of split KV equals attention over the whole KV", "[kernel][merge_states]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Host const host;
  std::size_t const tokens = 3, heads = 4, hd = 64, states = 3;
  // States built from random logits over disjoint sets; the merged state must equal the softmax over all.
  std::size_t const per = 5;
  auto const logits = random_floats(rng, tokens * heads * states * per, -4, 4);
  auto const values = random_floats(rng, tokens * heads * states * per * hd);
  std::vector<float> v(tokens * states * heads * hd), s(tokens * states * heads);  // [tokens][states][heads][hd], [tokens][states][heads]
  std::vector<double> want(tokens * heads * hd), want_lse(tokens * heads);
  for (std::size_t t = 0; t < tokens; ++t) {
    for (std::size_t h = 0; h < heads; ++h) {
      double total = 0;
      std::vector<double> acc(hd, 0.0);
      for (std::size_t k = 0; k < states; ++k) {
        bool const empty = (k == 1 && t == 0);  // one state saw nothing: lse = -inf
        double sum = 0;
        std::vector<double> part(hd, 0.0);
        for (std::size_t j = 0; j < per && !empty; ++j) {
          std::size_t const idx = ((t * heads + h) * states + k) * per + j;
          double const e = std::exp(double{logits[idx]});
          sum += e;
          for (std::size_t d = 0; d < hd; ++d) part[d] += e * values[idx * hd + d];
        }
        for (std::size_t d = 0; d < hd; ++d) {
          acc[d] += part[d];
          v[((t * states + k) * heads + h) * hd + d] = empty ? 0.0f : static_cast<float>(part[d] / sum);
        }
        s[(t * states + k) * heads + h] = empty ? -std::numeric_limits<float>::infinity() : static_cast<float>(std::log(sum));
        total += sum;
      }
      for (std::size_t d = 0; d < hd; ++d) want[(t * heads + h) * hd + d] = acc[d] / total;
      want_lse[t * heads + h] = std::log(total);
    }
  }
  std::vector<float> out(tokens * heads * hd), lse(tokens * heads);
  merge_states(host, ShapedView<float const, 4>(v.data(), tokens, states, heads, hd),
               ShapedView<float const, 3>(s.data(), tokens, states, heads), ShapedView<float, 3>(out.data(), tokens, heads, hd),
               ShapedView<float, 2>(lse.data(), tokens, heads));
  CHECK(tolerance_ratio(out, want, 1e-5, 1e-5) <= 1.0);
  CHECK(tolerance_ratio(lse, want_lse, 1e-5, 1e-5) <= 1.0);
  // All states empty: zeros and -inf.
  std::vector<float> s_empty(states * heads, -std::numeric_limits<float>::infinity());
  merge_states(host, ShapedView<float const, 4>(v.data(), 1, states, heads, hd),
               ShapedView<float const, 3>(s_empty.data(), 1, states, heads), ShapedView<float, 3>(out.data(), 1, heads, hd),
               ShapedView<float, 2>(lse.data(), 1, heads));
  CHECK(out[0] == 0.0f);
  CHECK(std::isinf(lse[0]));
  REQUIRE_THROWS_AS(merge_states(host, ShapedView<float const, 4>(v.data(), tokens, states, heads, hd),
                                 ShapedView<float const, 3>(s.data(), tokens, states, heads - 1),
                                 ShapedView<float, 3>(out.data(), tokens, heads, hd), ShapedView<float, 2>(lse.data(), tokens, heads)),
                    InvalidArgument);
}
