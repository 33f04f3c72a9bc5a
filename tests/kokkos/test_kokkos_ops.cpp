// The Kokkos adapter's memory and model ops on Kokkos' default execution space, inputs and outputs in its
// memory, against the double-precision references and the host backend. Tolerances (absolute + relative):
//   copy, zero_fill, KV page ops, add_bias, append_kv: exact (bytes, or one f32 add / one rounding per element);
//   embedding, dequantize: 1e-7 + 1e-6 against the reference decode of the same GGUF bytes (q4_1's d * q + m
//     rounds once in f32), and dequantize equal to embedding bit for bit (one decoder);
//   gemm: 1e-4 + 1e-4 against the reference over the same (quantized) weights: f32 accumulation of up to
//     8192 products of values in [-1, 1];
//   swiglu: 1e-6 + 1e-6 (one f32 exp);
//   merge_states: 1e-5 + 1e-5 (f32 exp and sums over a few states).

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kokkos_test_support.hpp"
#include "piecrust/backends/host.hpp"
#include "piecrust/backends/kokkos/kokkos.hpp"
#include "piecrust/kernels.hpp"
#include "piecrust/kernels/kv_pages.hpp"
#include "piecrust/kernels/reference/model_ops.hpp"
#include "test_kernel_support.hpp"

using namespace piecrust;
using piecrust::kokkos_test::download;
using piecrust::kokkos_test::filled;
using piecrust::kokkos_test::KMem;
using piecrust::kokkos_test::KSpace;
using piecrust::kokkos_test::upload;
using piecrust::test::random_floats;
using piecrust::test::tolerance_ratio;

namespace {
constexpr WeightType all_types[] = {WeightType::f32, WeightType::f16, WeightType::bf16, WeightType::q8_0, WeightType::q4_1};

std::vector<std::byte> random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(1 + rng() % 255);  // never 0, so a zero fill shows
  return v;
}
}  // namespace

TEST_CASE("Kokkos copy and zero_fill move bytes between host and space and within the space", "[kokkos][copy]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  KSpace const ks;
  std::size_t const n = 1000;
  auto const src = random_bytes(rng, n);
  auto dev = upload(ks, src);  // to_space
  REQUIRE(download(ks, dev) == src);  // to_host
  // in_space, disjoint and overlapping both ways: memmove semantics.
  for (auto [to, from, len] : {std::array<std::size_t, 3>{600, 10, 300}, std::array<std::size_t, 3>{100, 50, 400},
                               std::array<std::size_t, 3>{50, 100, 400}, std::array<std::size_t, 3>{7, 7, 20}}) {
    INFO("to " << to << " from " << from << " len " << len);
    auto want = download(ks, dev);
    std::memmove(want.data() + to, want.data() + from, len);
    copy_in_space(ks, std::span<std::byte>(dev.data() + to, len), std::span<std::byte const>(dev.data() + from, len));
    REQUIRE(download(ks, dev) == want);
  }
  auto want = download(ks, dev);
  std::fill(want.begin() + 123, want.begin() + 456, std::byte{0});
  zero_fill(ks, std::span<std::byte>(dev.data() + 123, 333));
  REQUIRE(download(ks, dev) == want);  // only the range, nothing around it
  std::vector<float> f(37);
  REQUIRE_THROWS_AS(copy_to_host(ks, std::span<float>(f), std::span<float const>(reinterpret_cast<float const*>(dev.data()), 36)),
                    InvalidArgument);
}

TEST_CASE("KvCache and the KV page ops work in Kokkos memory", "[kokkos][copy][kv]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  KSpace const ks;
  Host const host;
  KvCache<BFloat16, KMem> kk(ks, 2, 6, 4, 2, 64);
  KvCache<BFloat16> kh(host, 2, 6, 4, 2, 64);
  std::vector<std::byte> all(6 * 2 * kk.page_bytes());
  std::vector<std::uint32_t> const every{0, 1, 2, 3, 4, 5};
  read_kv_pages(ks, kk, every, all);
  REQUIRE(std::all_of(all.begin(), all.end(), [](std::byte b) { return b == std::byte{0}; }));  // zero-filled at construction
  auto const rec = random_bytes(rng, 3 * 2 * kk.page_bytes());  // 3 records of 2 layers
  std::vector<std::uint32_t> const pages{4, 1, 2};
  write_kv_pages(ks, kk, pages, rec);
  write_kv_pages(host, kh, pages, rec);
  std::vector<PageCopy> const copies{{4, 0}, {1, 5}, {2, 2}};
  copy_kv_pages(ks, kk, copies);
  copy_kv_pages(host, kh, copies);
  std::vector<std::byte> got(all.size()), want(all.size());
  read_kv_pages(ks, kk, every, got);
  read_kv_pages(host, kh, every, want);
  REQUIRE(got == want);
  std::vector<std::uint32_t> const bad{6};
  REQUIRE_THROWS_AS(read_kv_pages(ks, kk, bad, std::span<std::byte>(got).first(2 * kk.page_bytes())), OutOfRange);
}

TEST_CASE("Kokkos embedding and dequantize decode every weight type", "[kokkos][embedding]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  KSpace const ks;
  std::size_t const vocab = 50, dim = 96;
  auto const table_f32 = random_floats(rng, vocab * dim);  // [vocab][dim]
  std::vector<std::uint32_t> const ids{3, 49, 0, 3, 17};   // host memory
  for (WeightType type : all_types) {
    INFO("type " << weight_type_name(type));
    auto const bytes = test::quantize(type, table_f32, vocab, dim);
    auto const bytes_d = upload(ks, bytes);
    WeightMatrix const host_table{type, bytes.data(), vocab, dim};
    WeightMatrix const table{type, bytes_d.data(), vocab, dim};
    auto out_d = filled(ks, ids.size() * dim, std::numeric_limits<float>::quiet_NaN());  // [tokens][dim]
    embedding(ks, table, ids, ShapedView<float, 2>(out_d.data(), ids.size(), dim));
    auto const out = download(ks, out_d);
    std::vector<double> ref;
    for (auto id : ids) {
      auto const row = reference::dequantize_row(host_table, id);
      ref.insert(ref.end(), row.begin(), row.end());
    }
    CHECK(tolerance_ratio(out, ref, 1e-7, 1e-6) <= 1.0);
    auto all_d = filled(ks, vocab * dim, std::numeric_limits<float>::quiet_NaN());  // [vocab][dim]
    dequantize(ks, table, ShapedView<float, 2>(all_d.data(), vocab, dim));
    auto const all = download(ks, all_d);
    for (std::size_t t = 0; t < ids.size(); ++t) {
      for (std::size_t c = 0; c < dim; ++c) REQUIRE(all[ids[t] * dim + c] == out[t * dim + c]);
    }
    std::vector<double> ref_all;
    for (std::size_t r = 0; r < vocab; ++r) {
      auto const row = reference::dequantize_row(host_table, r);
      ref_all.insert(ref_all.end(), row.begin(), row.end());
    }
    CHECK(tolerance_ratio(all, ref_all, 1e-7, 1e-6) <= 1.0);
    std::vector<std::uint32_t> const bad{1, 50};
    REQUIRE_THROWS_WITH(embedding(ks, table, bad, ShapedView<float, 2>(out_d.data(), 2, dim)), Catch::Contains("ids[1] = 50 >= vocab = 50"));
    REQUIRE(download(ks, out_d) == out);  // the refused call wrote nothing
  }
}

TEST_CASE("Kokkos gemm matches the reference for every weight type, beta 0 / 1 / 0.5, and long rows", "[kokkos][gemm]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  KSpace const ks;
  // k = 576: the decoded weight row sits in level-0 team scratch; k = 8192 (32 KiB) takes level 1.
  for (auto [n, k] : {std::array<std::size_t, 2>{72, 576}, std::array<std::size_t, 2>{5, 8192}}) {
    auto const w_f32 = random_floats(rng, n * k);  // [n][k]
    for (WeightType type : all_types) {
      auto const bytes = test::quantize(type, w_f32, n, k);
      auto const bytes_d = upload(ks, bytes);
      WeightMatrix const wh{type, bytes.data(), n, k};
      WeightMatrix const w{type, bytes_d.data(), n, k};
      for (std::size_t m : {std::size_t{1}, std::size_t{3}, std::size_t{9}, std::size_t{40}}) {
        if (k > 1000 && m > 3) continue;  // the reference is slow
        INFO("type " << weight_type_name(type) << " n " << n << " k " << k << " m " << m);
        auto const x = random_floats(rng, m * k);   // [m][k]
        auto const y0 = random_floats(rng, m * n);  // [m][n]
        auto const xd = upload(ks, x);
        ShapedView<float const, 2> const xv(xd.data(), m, k);
        auto yd = filled(ks, m * n, std::numeric_limits<float>::quiet_NaN());  // beta = 0 ignores old contents
        gemm(ks, xv, w, ShapedView<float, 2>(yd.data(), m, n));
        CHECK(tolerance_ratio(download(ks, yd), reference::gemm(x, m, wh), 1e-4, 1e-4) <= 1.0);
        for (float beta : {1.0f, 0.5f}) {
          auto y2 = upload(ks, y0);
          gemm(ks, xv, w, ShapedView<float, 2>(y2.data(), m, n), beta);
          CHECK(tolerance_ratio(download(ks, y2), reference::gemm(x, m, wh, y0, beta), 1e-4, 1e-4) <= 1.0);
        }
      }
    }
  }
  // The generic linear (load_linear then gemm) on the Kokkos space, weights given as host GGUF bytes.
  std::size_t const n = 24, k = 64, m = 2;
  auto const w_f32 = random_floats(rng, n * k);
  auto const bytes = test::quantize(WeightType::q8_0, w_f32, n, k);
  WeightMatrix const wh{WeightType::q8_0, bytes.data(), n, k};
  auto const lw = load_linear(ks, wh);
  auto const x = random_floats(rng, m * k);
  auto const xd = upload(ks, x);
  auto yd = filled(ks, m * n, std::numeric_limits<float>::quiet_NaN());
  linear(ks, ShapedView<float const, 2>(xd.data(), m, k), lw, ShapedView<float, 2>(yd.data(), m, n));
  CHECK(tolerance_ratio(download(ks, yd), reference::gemm(x, m, wh), 1e-4, 1e-4) <= 1.0);
  REQUIRE_THROWS_WITH(gemm(ks, ShapedView<float const, 2>(xd.data(), m, k - 1), lw.matrix, ShapedView<float, 2>(yd.data(), m, n)),
                      Catch::Contains("x.extent(1) (k) = 63"));
}

TEST_CASE("Kokkos swiglu and add_bias match the reference, in place too", "[kokkos][swiglu]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  KSpace const ks;
  std::size_t const rows = 5, dim = 1536;
  auto const gate = random_floats(rng, rows * dim, -8, 8);  // [rows][dim]
  auto const up = random_floats(rng, rows * dim, -2, 2);    // [rows][dim]
  auto gd = upload(ks, gate), ud = upload(ks, up);
  auto od = filled(ks, rows * dim, std::numeric_limits<float>::quiet_NaN());
  swiglu(ks, ShapedView<float const, 2>(gd.data(), rows, dim), ShapedView<float const, 2>(ud.data(), rows, dim),
         ShapedView<float, 2>(od.data(), rows, dim));
  auto const ref = reference::swiglu(gate, up);
  auto const out = download(ks, od);
  CHECK(tolerance_ratio(out, ref, 1e-6, 1e-6) <= 1.0);
  swiglu(ks, ShapedView<float const, 2>(gd.data(), rows, dim), ShapedView<float const, 2>(ud.data(), rows, dim),
         ShapedView<float, 2>(gd.data(), rows, dim));  // out = gate, as the model calls it
  CHECK(download(ks, gd) == out);

  auto const y0 = random_floats(rng, rows * dim);
  auto const bias = random_floats(rng, dim);
  auto yd = upload(ks, y0);
  auto const bd = upload(ks, bias);
  add_bias(ks, ShapedView<float, 2>(yd.data(), rows, dim), ShapedView<float const, 1>(bd.data(), dim));
  std::vector<float> want = y0;
  for (std::size_t i = 0; i < rows; ++i) {
    for (std::size_t j = 0; j < dim; ++j) want[i * dim + j] += bias[j];
  }
  CHECK(download(ks, yd) == want);
  REQUIRE_THROWS_AS(add_bias(ks, ShapedView<float, 2>(yd.data(), rows, dim), ShapedView<float const, 1>(bd.data(), dim - 1)),
                    InvalidArgument);
}

TEMPLATE_TEST_CASE("Kokkos append_kv writes the new rows into their slots and nothing else", "[kokkos][append_kv]", float, BFloat16) {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  KSpace const ks;
  std::size_t const pages = 6, ps = 16, kvh = 2, hd = 64;
  PagedKv<TestType> const shape{nullptr, pages, ps, kvh, hd};
  auto pool_d = filled(ks, shape.size(), from_float<TestType>(7.0f));  // [pages][2][ps][kvh][hd]
  PagedKv<TestType> const kv{pool_d.data(), pages, ps, kvh, hd};
  std::vector<std::uint32_t> const kv_indptr{0, 2, 3}, kv_indices{4, 1, 2};
  std::vector<std::uint32_t> const batch_idx{0, 0, 0, 0, 1, 1, 1}, pos{14, 15, 16, 17, 0, 1, 2};
  auto const slots = append_kv_slots(ps, batch_idx, pos, kv_indptr, kv_indices);  // host memory
  std::size_t const n = slots.size();
  auto const k = random_floats(rng, n * kvh * hd);  // [n][kvh][hd]
  auto const v = random_floats(rng, n * kvh * hd);
  auto const kd = upload(ks, k), vd = upload(ks, v);
  append_kv(ks, kv, ShapedView<float const, 3>(kd.data(), n, kvh, hd), ShapedView<float const, 3>(vd.data(), n, kvh, hd), slots);
  auto const pool = download(ks, pool_d);
  PagedKv<TestType const> const got{pool.data(), pages, ps, kvh, hd};
  std::size_t written = 0;
  for (std::size_t p = 0; p < pages; ++p) {
    for (std::size_t s = 0; s < ps; ++s) {
      std::size_t t = n;
      for (std::size_t i = 0; i < n; ++i) {
        if (slots[i] == p * ps + s) t = i;
      }
      for (std::size_t h = 0; h < kvh; ++h) {
        for (std::size_t d = 0; d < hd; ++d) {
          float const kk = to_float(got.at(p, 0, s, h)[d]);
          float const vv = to_float(got.at(p, 1, s, h)[d]);
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
  std::vector<std::uint32_t> const dup{5, 5};
  REQUIRE_THROWS_WITH(append_kv(ks, kv, ShapedView<float const, 3>(kd.data(), 2, kvh, hd), ShapedView<float const, 3>(vd.data(), 2, kvh, hd), dup),
                      Catch::Contains("appears twice"));
  REQUIRE(download(ks, pool_d) == pool);  // nothing half-applied
}

TEST_CASE("Kokkos merge_states of split KV equals attention over the whole KV", "[kokkos][merge_states]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  KSpace const ks;
  std::size_t const tokens = 3, heads = 4, hd = 64, states = 3, per = 5;
  // States built from random logits over disjoint sets; the merged state must equal the softmax over all.
  auto const logits = random_floats(rng, tokens * heads * states * per, -4, 4);
  auto const values = random_floats(rng, tokens * heads * states * per * hd);
  std::vector<float> v(tokens * states * heads * hd), s(tokens * states * heads);  // [tokens][states][heads][hd], [tokens][states][heads]
  std::vector<double> want(tokens * heads * hd), want_lse(tokens * heads);
  float const neg_inf = -std::numeric_limits<float>::infinity();
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
        s[(t * states + k) * heads + h] = empty ? neg_inf : static_cast<float>(std::log(sum));
        total += sum;
      }
      for (std::size_t d = 0; d < hd; ++d) want[(t * heads + h) * hd + d] = acc[d] / total;
      want_lse[t * heads + h] = std::log(total);
    }
  }
  auto const vd = upload(ks, v), sd = upload(ks, s);
  auto od = filled(ks, tokens * heads * hd, std::numeric_limits<float>::quiet_NaN());
  auto ld = filled(ks, tokens * heads, std::numeric_limits<float>::quiet_NaN());
  merge_states(ks, ShapedView<float const, 4>(vd.data(), tokens, states, heads, hd), ShapedView<float const, 3>(sd.data(), tokens, states, heads),
               ShapedView<float, 3>(od.data(), tokens, heads, hd), ShapedView<float, 2>(ld.data(), tokens, heads));
  CHECK(tolerance_ratio(download(ks, od), want, 1e-5, 1e-5) <= 1.0);
  CHECK(tolerance_ratio(download(ks, ld), want_lse, 1e-5, 1e-5) <= 1.0);
  // Every state empty: zeros and -inf.
  auto const s_empty = upload(ks, std::vector<float>(states * heads, neg_inf));
  merge_states(ks, ShapedView<float const, 4>(vd.data(), 1, states, heads, hd), ShapedView<float const, 3>(s_empty.data(), 1, states, heads),
               ShapedView<float, 3>(od.data(), 1, heads, hd), ShapedView<float, 2>(ld.data(), 1, heads));
  auto const o = download(ks, od);
  auto const l = download(ks, ld);
  for (std::size_t i = 0; i < heads * hd; ++i) REQUIRE(o[i] == 0.0f);
  for (std::size_t h = 0; h < heads; ++h) REQUIRE(l[h] == neg_inf);
}
