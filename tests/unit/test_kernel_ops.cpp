// Model and memory ops on the space under test (test_kernel_support.hpp: Host, or the space a build names),
// inputs and outputs in its memory, against the double-precision references and naive host models:
// copy and zero_fill, the KV page ops, rms_norm, fused_add_rms_norm, rope, swiglu, add_bias, embedding,
// dequantize, gemm (every weight type; on the host both quantized paths), linear, append_kv, qkv_rope_append,
// merge_states.
// Tolerances (absolute + relative):
//   copy, zero_fill, KV page ops, add_bias, append_kv, fused_add_rms_norm's residual: exact (bytes, or one
//     f32 add / one rounding per element);
//   rms_norm: 1e-5 + 1e-5 (f32 rounding of O(dim) sums); rope: 2e-6 + 2e-6 (one f32 rotation of each pair, at
//     positions up to 131071); swiglu: 1e-6 + 1e-6 (one f32 exp);
//   embedding, dequantize: every WeightType on random valid blocks, bit for bit equal to quant::dequantize_row
//     on the host (one decoder), and within 1e-7 + 1e-6 of the double reference decode of the same bytes
//     (d * q + m rounds once in f32);
//   gemm, linear: 1e-4 + 1e-4 against the reference over the same (quantized) weights: the kernel must not
//     add error beyond f32 accumulation of up to 8192 products of values in [-1, 1];
//   merge_states: 1e-5 + 1e-5 (f32 exp and sums over a few states).

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <type_traits>
#include <vector>

#include "random_quant_blocks.hpp"
#include "test_kernel_support.hpp"

#include "piecrust/kernels.hpp"
#include "piecrust/kernels/kv_pages.hpp"
#include "piecrust/kernels/quant_blocks.hpp"
#include "piecrust/kernels/reference/attention.hpp"
#include "piecrust/kernels/reference/model_ops.hpp"

using namespace piecrust;
using piecrust::test::download;
using piecrust::test::filled;
using piecrust::test::random_floats;
using piecrust::test::tolerance_ratio;
using piecrust::test::upload;
using Space = piecrust::test::Space;

namespace {
constexpr WeightType all_types[] = {WeightType::f32, WeightType::f16, WeightType::bf16, WeightType::q8_0, WeightType::q4_1};
float const nan_f = std::numeric_limits<float>::quiet_NaN();

std::vector<std::byte> random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(1 + rng() % 255);  // never 0, so a zero fill shows
  return v;
}
}  // namespace

TEST_CASE("copy and zero_fill move bytes between host and space and within the space", "[kernel][copy]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  std::size_t const n = 1000;
  auto const src = random_bytes(rng, n);
  auto dev = upload(space, src);         // to_space
  REQUIRE(download(space, dev) == src);  // to_host
  // in_space, disjoint and overlapping both ways: memmove semantics.
  for (auto [to, from, len] : {std::array<std::size_t, 3>{600, 10, 300}, std::array<std::size_t, 3>{100, 50, 400},
                               std::array<std::size_t, 3>{50, 100, 400}, std::array<std::size_t, 3>{7, 7, 20}}) {
    INFO("to " << to << " from " << from << " len " << len);
    auto want = download(space, dev);
    std::memmove(want.data() + to, want.data() + from, len);
    copy_in_space(space, std::span<std::byte>(dev.data() + to, len), std::span<std::byte const>(dev.data() + from, len));
    REQUIRE(download(space, dev) == want);
  }
  auto want = download(space, dev);
  std::fill(want.begin() + 123, want.begin() + 456, std::byte{0});
  zero_fill(space, std::span<std::byte>(dev.data() + 123, 333));
  REQUIRE(download(space, dev) == want);  // only the range, nothing around it
  std::vector<float> f(37);
  std::span<float const> const short_src(reinterpret_cast<float const*>(dev.data()), 36);
  REQUIRE_THROWS_AS(copy_to_host(space, std::span<float>(f), short_src), InvalidArgument);
}

TEST_CASE("KvCache and the KV page ops match a naive model of the pages", "[kernel][copy][kv]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  std::size_t const layers = 2, pages = 6;
  KvCache<BFloat16, Space::memory_space> kv(space, layers, pages, 4, 2, 64);
  std::size_t const pb = kv.page_bytes();
  // The model: the bytes of page p of layer l, [layers][pages][page_bytes], zero at construction.
  std::vector<std::vector<std::byte>> model(layers * pages, std::vector<std::byte>(pb, std::byte{0}));
  auto exported = [&](std::span<std::uint32_t const> ids) {  // read_kv_pages' layout from the model
    std::vector<std::byte> out;
    for (auto p : ids) {
      for (std::size_t l = 0; l < layers; ++l) out.insert(out.end(), model[l * pages + p].begin(), model[l * pages + p].end());
    }
    return out;
  };
  std::vector<std::uint32_t> const every{0, 1, 2, 3, 4, 5};
  std::vector<std::byte> got(pages * layers * pb);
  read_kv_pages(space, kv, every, got);
  REQUIRE(std::all_of(got.begin(), got.end(), [](std::byte b) { return b == std::byte{0}; }));  // zero-filled at construction
  auto const rec = random_bytes(rng, 3 * layers * pb);  // 3 records of 2 layers
  std::vector<std::uint32_t> const ids{4, 1, 2};
  write_kv_pages(space, kv, ids, rec);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    for (std::size_t l = 0; l < layers; ++l) {
      auto const at = rec.begin() + static_cast<std::ptrdiff_t>((i * layers + l) * pb);
      std::copy(at, at + static_cast<std::ptrdiff_t>(pb), model[l * pages + ids[i]].begin());
    }
  }
  read_kv_pages(space, kv, every, got);
  REQUIRE(got == exported(every));
  std::vector<PageCopy> const copies{{4, 0}, {1, 5}, {2, 2}, {0, 3}};  // in order: page 3 gets page 4's bytes
  copy_kv_pages(space, kv, copies);
  for (PageCopy const& c : copies) {
    for (std::size_t l = 0; l < layers; ++l) model[l * pages + c.to] = model[l * pages + c.from];
  }
  read_kv_pages(space, kv, every, got);
  REQUIRE(got == exported(every));
  std::vector<std::uint32_t> const some{5, 3};
  std::vector<std::byte> part(some.size() * layers * pb);
  read_kv_pages(space, kv, some, part);
  REQUIRE(part == exported(some));
  std::vector<std::uint32_t> const bad{6};
  REQUIRE_THROWS_AS(read_kv_pages(space, kv, bad, std::span<std::byte>(got).first(layers * pb)), OutOfRange);
  std::vector<std::uint32_t> const half_bad{1, 6};
  REQUIRE_THROWS_AS(write_kv_pages(space, kv, half_bad, std::span<std::byte const>(rec).first(2 * layers * pb)), OutOfRange);
  read_kv_pages(space, kv, every, got);
  REQUIRE(got == exported(every));  // the refused write changed nothing
}

TEST_CASE("rms_norm and fused_add_rms_norm match the reference", "[kernel][rms_norm]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  for (std::size_t dim : {std::size_t{64}, std::size_t{576}, std::size_t{1000}}) {
    std::size_t const rows = 7;
    auto const x = random_floats(rng, rows * dim, -3, 3);  // [rows][dim]
    auto const w = random_floats(rng, dim, 0.5f, 1.5f);    // [dim]
    auto xd = upload(space, x);
    auto const wd = upload(space, w);
    auto outd = filled(space, rows * dim, nan_f);  // [rows][dim]
    rms_norm(space, xd.view(rows, dim), wd.view(dim), outd.view(rows, dim), 1e-5f);
    CHECK(tolerance_ratio(download(space, outd), reference::rms_norm(x, w, dim, 1e-5), 1e-5, 1e-5) <= 1.0);

    auto const residual = random_floats(rng, rows * dim, -2, 2);  // [rows][dim]
    std::vector<float> summed(rows * dim);
    for (std::size_t i = 0; i < summed.size(); ++i) summed[i] = residual[i] + x[i];
    auto const ref2 = reference::rms_norm(summed, w, dim, 1e-6);
    auto rd = upload(space, residual);
    fused_add_rms_norm(space, xd.view(rows, dim), rd.view(rows, dim), wd.view(dim), 1e-6f);
    CHECK(download(space, rd) == summed);  // one f32 add per element: exact
    CHECK(tolerance_ratio(download(space, xd), ref2, 1e-5, 1e-5) <= 1.0);
  }
  auto const x = filled(space, 8, 1.0f), w = filled(space, 4, 1.0f);
  auto out = filled(space, 8, 0.0f);
  REQUIRE_THROWS_WITH(rms_norm(space, x.view(2, 4), w.view(3), out.view(2, 4)), Catch::Contains("weight.extent(0) = 3"));
  REQUIRE_THROWS_AS(rms_norm(space, x.view(2, 4), w.view(4), out.view(2, 4), -1.0f), InvalidArgument);
}

TEST_CASE("rope matches the reference for both pairings, partial rotary and Llama-3 scaling", "[kernel][rope]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  std::size_t const tokens = 9, heads = 3, head_dim = 64;
  std::vector<std::uint32_t> positions(tokens);  // host memory, as the interface says
  std::uniform_int_distribution<std::uint32_t> pos_dist(0, 100000);
  for (auto& p : positions) p = pos_dist(rng);
  positions[0] = 0;
  positions[tokens - 1] = 131071;
  std::vector<RopeParams> cases;
  cases.push_back({10000.0f, RopeStyle::adjacent_pairs, 0, {}});
  cases.push_back({10000.0f, RopeStyle::half_split, 0, {}});
  cases.push_back({500000.0f, RopeStyle::half_split, 0, {8.0f, 1.0f, 4.0f, 8192}});
  cases.push_back({100000.0f, RopeStyle::adjacent_pairs, 32, {32.0f, 1.0f, 4.0f, 8192}});
  cases.push_back({10000.0f, RopeStyle::half_split, 32, {}});
  for (RopeParams const& p : cases) {
    auto const x = random_floats(rng, tokens * heads * head_dim);  // [tokens][heads][head_dim]
    auto const ref = reference::rope(x, heads, head_dim, positions, p);
    auto xd = upload(space, x);
    rope(space, xd.view(tokens, heads, head_dim), positions, p);
    CHECK(tolerance_ratio(download(space, xd), ref, 2e-6, 2e-6) <= 1.0);
  }
  // Position 0 is the identity.
  auto const before = random_floats(rng, heads * head_dim);
  auto xd = upload(space, before);
  std::vector<std::uint32_t> const zero{0};
  rope(space, xd.view(1, heads, head_dim), zero, {});
  CHECK(download(space, xd) == before);
  // Llama-3 scaling matches transformers' values for Llama 3.1 at a few indices (computed in Python).
  RopeParams llama31{500000.0f, RopeStyle::half_split, 0, {8.0f, 1.0f, 4.0f, 8192}};
  auto const inv = detail::rope_inv_freq(llama31, 128);
  CHECK(inv[0] == Approx(1.0).epsilon(1e-12));
  CHECK(inv[63] == Approx(std::pow(500000.0, -126.0 / 128.0) / 8.0).epsilon(1e-12));  // low frequency: / factor
  CHECK(inv[10] == Approx(std::pow(500000.0, -20.0 / 128.0)).epsilon(1e-12));         // high frequency: kept
  // Bad input.
  REQUIRE_THROWS_WITH(rope(space, xd.view(1, heads, head_dim), positions, {}), Catch::Contains("positions.size() = 9"));
  RopeParams odd{};
  odd.rotary_dim = 7;
  REQUIRE_THROWS_WITH(rope(space, xd.view(1, heads, head_dim), zero, odd), Catch::Contains("rotary_dim = 7"));
  RopeParams bad_theta{};
  bad_theta.theta = 0;
  REQUIRE_THROWS_AS(rope(space, xd.view(1, heads, head_dim), zero, bad_theta), InvalidArgument);
  CHECK(download(space, xd) == before);  // the refused calls wrote nothing
}

TEST_CASE("swiglu, geglu and add_bias match the reference, in place too", "[kernel][swiglu]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  std::size_t const rows = 5, dim = 1536;
  // One gated activation: against its reference, in place (out = gate, as the model calls it), and a
  // mismatched shape refused.
  auto check_gated = [&](auto op, auto ref, std::size_t width) {
    auto const gate = random_floats(rng, rows * width, -8, 8);  // [rows][width]
    auto const up = random_floats(rng, rows * width, -2, 2);    // [rows][width]
    auto gd = upload(space, gate);
    auto const ud = upload(space, up);
    auto od = filled(space, rows * width, nan_f);
    op(space, gd.view(rows, width), ud.view(rows, width), od.view(rows, width));
    auto const out = download(space, od);
    CHECK(tolerance_ratio(out, ref(gate, up), 1e-6, 1e-6) <= 1.0);
    op(space, gd.view(rows, width), ud.view(rows, width), gd.view(rows, width));
    CHECK(download(space, gd) == out);
    REQUIRE_THROWS_AS(op(space, gd.view(rows, width), ud.view(rows - 1, width), od.view(rows, width)), InvalidArgument);
  };
  check_gated([](auto const&... a) { swiglu(a...); }, [](auto const&... a) { return reference::swiglu(a...); }, dim);
  // geglu 2048 wide (Gemma 3 270M's FFN), with a tail past the host's vector width.
  check_gated([](auto const&... a) { geglu(a...); }, [](auto const&... a) { return reference::geglu(a...); }, 2048 + 3);

  auto const y0 = random_floats(rng, rows * dim);
  auto const bias = random_floats(rng, dim);
  auto yd = upload(space, y0);
  auto const bd = upload(space, bias);
  add_bias(space, yd.view(rows, dim), bd.view(dim));
  std::vector<float> want = y0;
  for (std::size_t i = 0; i < rows; ++i) {
    for (std::size_t j = 0; j < dim; ++j) want[i * dim + j] += bias[j];
  }
  CHECK(download(space, yd) == want);
  REQUIRE_THROWS_AS(add_bias(space, yd.view(rows, dim), bd.view(dim - 1)), InvalidArgument);
}

TEST_CASE("embedding and dequantize decode every weight type", "[kernel][embedding]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  std::size_t const vocab = 40, dim = 512;                 // dim: two 256-weight blocks of the K-quants
  std::vector<std::uint32_t> const ids{3, 39, 0, 3, 17};  // host memory
  // Every WeightType: random valid blocks (random bytes, finite f16 scales), decoded on the space bit for bit
  // as quant::dequantize_row decodes them on the host (one definition of each layout).
  for (WeightType type : all_weight_types) {
    INFO("type " << weight_type_name(type));
    auto const w = testing::random_weights(type, vocab, dim, rng());
    auto const& bytes = w.bytes;  // [vocab][row_bytes]
    std::vector<float> want(vocab * dim);  // [vocab][dim]
    for (std::size_t r = 0; r < vocab; ++r) {
      quant::dequantize_row(type, reinterpret_cast<std::uint8_t const*>(w.matrix.row(r)), want.data() + r * dim, dim);
    }
    auto const bytes_d = upload(space, bytes);
    WeightMatrix const table{type, bytes_d.data(), vocab, dim};
    auto out_d = filled(space, ids.size() * dim, nan_f);  // [tokens][dim]
    embedding(space, table, ids, out_d.view(ids.size(), dim));
    auto const out = download(space, out_d);
    std::size_t bad = 0;
    for (std::size_t t = 0; t < ids.size(); ++t) {
      for (std::size_t c = 0; c < dim; ++c) {
        bad += std::bit_cast<std::uint32_t>(out[t * dim + c]) != std::bit_cast<std::uint32_t>(want[ids[t] * dim + c]);
      }
    }
    CHECK(bad == 0);
    auto all_d = filled(space, vocab * dim, nan_f);  // [vocab][dim]
    dequantize(space, table, all_d.view(vocab, dim));
    auto const all = download(space, all_d);
    bad = 0;
    for (std::size_t i = 0; i < all.size(); ++i) bad += std::bit_cast<std::uint32_t>(all[i]) != std::bit_cast<std::uint32_t>(want[i]);
    CHECK(bad == 0);
    // The values are real weights, not a degenerate fill: finite, and not all of one value.
    CHECK(std::all_of(want.begin(), want.end(), [](float v) { return std::isfinite(v); }));
    CHECK(std::count(want.begin(), want.end(), want[0]) < static_cast<std::ptrdiff_t>(want.size() / 4));
    // The double reference decodes the same bytes to the same values (one f32 rounding of d * q + m).
    std::vector<double> ref_all;
    for (std::size_t r = 0; r < vocab; ++r) {
      auto const row = reference::dequantize_row(w.matrix, r);
      ref_all.insert(ref_all.end(), row.begin(), row.end());
    }
    CHECK(tolerance_ratio(all, ref_all, 1e-7, 1e-6) <= 1.0);
    REQUIRE_THROWS_AS(dequantize(space, table, all_d.view(vocab, dim - 1)), InvalidArgument);
    std::vector<std::uint32_t> const bad_ids{1, 40};
    REQUIRE_THROWS_WITH(embedding(space, table, bad_ids, out_d.view(2, dim)), Catch::Contains("ids[1] = 40 >= vocab = 40"));
    REQUIRE(download(space, out_d) == out);  // the refused call wrote nothing
    if (is_quantized(type)) {  // a row length that is not a multiple of the block size
      std::size_t const cols = dim - weight_block_size(type) / 2;
      WeightMatrix const odd{type, bytes_d.data(), vocab, cols};
      REQUIRE_THROWS_WITH(embedding(space, odd, std::vector<std::uint32_t>{0}, out_d.view(1, cols)),
                          Catch::Contains("cols = " + std::to_string(cols)));
    }
  }
  // The test quantizer's round trip: decoded values stay within each format's resolution of the floats.
  auto const table_f32 = random_floats(rng, vocab * dim);  // [vocab][dim]
  for (WeightType type : all_types) {
    INFO("type " << weight_type_name(type));
    auto const bytes_d = upload(space, test::quantize(type, table_f32, vocab, dim));
    auto out_d = filled(space, ids.size() * dim, nan_f);  // [tokens][dim]
    embedding(space, WeightMatrix{type, bytes_d.data(), vocab, dim}, ids, out_d.view(ids.size(), dim));
    auto const out = download(space, out_d);
    double const quant_tol = type == WeightType::q4_1 ? 0.07 : type == WeightType::q8_0 ? 0.005 : 0.004;
    for (std::size_t t = 0; t < ids.size(); ++t) {
      for (std::size_t c = 0; c < dim; ++c) REQUIRE(std::abs(out[t * dim + c] - table_f32[ids[t] * dim + c]) <= quant_tol);
    }
    // A scale (Gemma's sqrt(dim)) multiplies each decoded value once, in f32.
    float const scale = std::sqrt(static_cast<float>(dim));
    auto scaled_d = filled(space, ids.size() * dim, nan_f);  // [tokens][dim]
    embedding(space, WeightMatrix{type, bytes_d.data(), vocab, dim}, ids, scaled_d.view(ids.size(), dim), scale);
    auto const scaled = download(space, scaled_d);
    for (std::size_t i = 0; i < scaled.size(); ++i) REQUIRE(scaled[i] == out[i] * scale);
  }
  auto const bytes_d = upload(space, test::quantize(WeightType::f32, table_f32, vocab, dim));
  auto out_d = filled(space, dim, nan_f);          // [1][dim]
  auto all_d = filled(space, vocab * dim, nan_f);  // [vocab][dim]
  for (std::uint32_t id : {9u, 15u, 16u, 24u, 99u}) {  // Q8_1, Q8_K (activations only), IQ2_XXS, I8, unknown
    INFO("id " << id);
    WeightMatrix const unknown{static_cast<WeightType>(id), bytes_d.data(), vocab, dim};
    REQUIRE_THROWS_AS(embedding(space, unknown, std::vector<std::uint32_t>{0}, out_d.view(1, dim)), Unsupported);
    REQUIRE_THROWS_WITH(dequantize(space, unknown, all_d.view(vocab, dim)),
                        Catch::Contains("weight type = " + std::to_string(id)) && Catch::Contains("supported: f32"));
  }
}

TEST_CASE("gemm matches the reference for every weight type, beta 0 / 1 / 0.5, long rows and both host paths", "[kernel][gemm]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  // k = 576: a decoded weight row fits small scratch (Kokkos: level-0 team scratch); k = 8192 (32 KiB) does not.
  // k = 75 (float types only): the 16-wide loop, one step of 8 and a scalar tail of the host's direct path.
  for (auto [n, k] : {std::array<std::size_t, 2>{72, 576}, std::array<std::size_t, 2>{5, 8192},
                      std::array<std::size_t, 2>{9, 75}}) {
    auto const w_f32 = random_floats(rng, n * k);  // [n][k]
    for (WeightType type : all_types) {
      if (k % weight_block_size(type) != 0) continue;
      auto const bytes = test::quantize(type, w_f32, n, k);
      auto const bytes_d = upload(space, bytes);
      WeightMatrix const wh{type, bytes.data(), n, k};
      WeightMatrix const w{type, bytes_d.data(), n, k};
      for (std::size_t m : {std::size_t{1}, std::size_t{3}, std::size_t{8}, std::size_t{9}, std::size_t{40}}) {
        if (k > 1000 && m > 3) continue;  // the reference is slow
        INFO("type " << weight_type_name(type) << " n " << n << " k " << k << " m " << m);
        auto const x = random_floats(rng, m * k);   // [m][k]
        auto const y0 = random_floats(rng, m * n);  // [m][n]
        auto const xd = upload(space, x);
        auto const ref = reference::gemm(x, m, wh);
        auto yd = filled(space, m * n, nan_f);  // beta = 0 ignores old contents
        gemm(space, xd.view(m, k), w, yd.view(m, n));
        CHECK(tolerance_ratio(download(space, yd), ref, 1e-4, 1e-4) <= 1.0);
        for (float beta : {1.0f, 0.5f}) {
          auto y2 = upload(space, y0);
          gemm(space, xd.view(m, k), w, y2.view(m, n), beta);
          CHECK(tolerance_ratio(download(space, y2), reference::gemm(x, m, wh, y0, beta), 1e-4, 1e-4) <= 1.0);
        }
        if constexpr (test::space_is_host) {  // the host's two quantized paths, whatever the crossover
          for (detail::SimdLevel level : detail::cpu_simd_levels()) {  // the direct path on every level
            INFO("level " << detail::simd_level_name(level));
            std::vector<float> yh(m * n, nan_f);
            KernelImpl<ops::Gemm, Host>::direct(Host{}, ShapedView<float const, 2>(x.data(), m, k), wh,
                                                 ShapedView<float, 2>(yh.data(), m, n), 0.0f, level);
            CHECK(tolerance_ratio(yh, ref, 1e-4, 1e-4) <= 1.0);
          }
          if (type != WeightType::f32) {
            std::vector<float> yp(m * n, nan_f);
            KernelImpl<ops::Gemm, Host>::panels(Host{}, ShapedView<float const, 2>(x.data(), m, k), wh,
                                                 ShapedView<float, 2>(yp.data(), m, n), 0.0f);
            CHECK(tolerance_ratio(yp, ref, 1e-4, 1e-4) <= 1.0);
          }
        }
      }
    }
  }
  // linear (load_linear, then the space's matmul) on the space, weights given as host GGUF bytes; f32
  // activations (no llama.cpp 8-bit rounding, which only the host offers), so the reference is exact.
  std::size_t const n = 24, k = 64, m = 2;
  auto const w_f32 = random_floats(rng, n * k);
  auto const bytes = test::quantize(WeightType::q8_0, w_f32, n, k);
  WeightMatrix const wh{WeightType::q8_0, bytes.data(), n, k};
  LinearOptions f32_activations;
  f32_activations.round_activations = false;
  f32_activations.interleave = false;
  auto const lw = load_linear(space, wh, f32_activations);
  auto const x = random_floats(rng, m * k);
  auto const xd = upload(space, x);
  auto yd = filled(space, m * n, nan_f);
  linear(space, xd.view(m, k), lw, yd.view(m, n));
  CHECK(tolerance_ratio(download(space, yd), reference::gemm(x, m, wh), 1e-4, 1e-4) <= 1.0);
  // Bad input.
  REQUIRE_THROWS_WITH(gemm(space, xd.view(m, k - 1), lw.matrix, yd.view(m, n)), Catch::Contains("x.extent(1) (k) = 63"));
  REQUIRE_THROWS_WITH(gemm(space, xd.view(m, k), lw.matrix, yd.view(m, n - 1)), Catch::Contains("y.extent(1) (n) = 23"));
  WeightMatrix const null_w{WeightType::q4_1, nullptr, n, k};
  REQUIRE_THROWS_AS(gemm(space, xd.view(m, k), null_w, yd.view(m, n)), InvalidArgument);
}

TEMPLATE_TEST_CASE("append_kv writes the new rows into their slots and nothing else", "[kernel][append_kv]", float, BFloat16) {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  std::size_t const pages = 6, ps = 16, kvh = 2, hd = 64;
  PagedKv<TestType> const shape{nullptr, pages, ps, kvh, hd};
  auto pool_d = filled(space, shape.size(), from_float<TestType>(7.0f));  // [pages][2][ps][kvh][hd]
  PagedKv<TestType> const kv{pool_d.data(), pages, ps, kvh, hd};
  // Two requests: pages {4, 1} (positions 14..17 new) and {2} (positions 0..2 new).
  std::vector<std::uint32_t> const kv_indptr{0, 2, 3}, kv_indices{4, 1, 2};
  std::vector<std::uint32_t> const batch_idx{0, 0, 0, 0, 1, 1, 1}, pos{14, 15, 16, 17, 0, 1, 2};
  auto const slots = append_kv_slots(ps, batch_idx, pos, kv_indptr, kv_indices);  // host memory
  REQUIRE(slots == std::vector<std::uint32_t>{4 * 16 + 14, 4 * 16 + 15, 16, 17, 32, 33, 34});
  std::size_t const n = slots.size();
  auto const k = random_floats(rng, n * kvh * hd);  // [n][kvh][hd]
  auto const v = random_floats(rng, n * kvh * hd);
  auto const kd = upload(space, k), vd = upload(space, v);
  append_kv(space, kv, kd.view(n, kvh, hd), vd.view(n, kvh, hd), slots);
  auto const pool = download(space, pool_d);
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
  std::vector<std::uint32_t> const bad{0, 96};
  REQUIRE_THROWS_WITH(append_kv(space, kv, kd.view(2, kvh, hd), vd.view(2, kvh, hd), bad),
                      Catch::Contains("slots[1] = 96 >= num_pages * page_size = 96"));
  std::vector<std::uint32_t> const dup{5, 5};
  REQUIRE_THROWS_WITH(append_kv(space, kv, kd.view(2, kvh, hd), vd.view(2, kvh, hd), dup), Catch::Contains("appears twice"));
  REQUIRE(download(space, pool_d) == pool);  // nothing half-applied
  std::vector<std::uint32_t> const far{40};
  REQUIRE_THROWS_AS(append_kv_slots(ps, std::vector<std::uint32_t>{1}, far, kv_indptr, kv_indices), OutOfRange);
}

// qkv_rope_append against the reference built from its definition: q, k, v plus bias (one f32 add), q and k
// rotated in double, k and v rounded into the pool. q and the pool within rope's tolerance (2e-6 + 2e-6; bf16
// pools within one bf16 rounding, 2e-6 + 2^-8); slots not written keep their bytes; v exact after rounding.
TEMPLATE_TEST_CASE("qkv_rope_append equals bias, rope and append_kv by their references", "[kernel][qkv_rope_append]",
                   float, BFloat16) {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
  std::size_t const T = 5, H = 4, KH = 2, D = 64, pages = 3, ps = 4;
  std::vector<std::uint32_t> positions{3, 0, 131071, 77, 4096};  // host memory
  std::vector<std::uint32_t> const slots{9, 0, 5, 11, 6};         // host memory, distinct
  for (bool with_bias : {false, true}) {
    for (RopeParams const& p : {RopeParams{10000.0f, RopeStyle::adjacent_pairs, 0, {}},
                                RopeParams{500000.0f, RopeStyle::half_split, 32, {8.0f, 1.0f, 4.0f, 8192}}}) {
      auto const q = random_floats(rng, T * H * D), k = random_floats(rng, T * KH * D), v = random_floats(rng, T * KH * D);
      auto const bq = random_floats(rng, H * D), bk = random_floats(rng, KH * D), bv = random_floats(rng, KH * D);
      auto biased = [&](std::vector<float> x, std::vector<float> const& b, std::size_t width) {
        if (with_bias) {
          for (std::size_t i = 0; i < x.size(); ++i) x[i] += b[i % width];
        }
        return x;
      };
      auto const want_q = reference::rope(biased(q, bq, H * D), H, D, positions, p);
      auto const want_k = reference::rope(biased(k, bk, KH * D), KH, D, positions, p);
      auto const want_v = biased(v, bv, KH * D);
      PagedKv<TestType> const shape{nullptr, pages, ps, KH, D};
      auto pool_d = filled(space, shape.size(), from_float<TestType>(7.0f));  // [pages][2][ps][KH][D]
      auto qd = upload(space, q), kd = upload(space, k), vd = upload(space, v);
      auto const bqd = upload(space, bq), bkd = upload(space, bk), bvd = upload(space, bv);
      QkvBias const bias = with_bias ? QkvBias{bqd.view(H * D), bkd.view(KH * D), bvd.view(KH * D)} : QkvBias{};
      PagedKv<TestType> const kv{pool_d.data(), pages, ps, KH, D};
      qkv_rope_append(space, qd.view(T, H, D), kd.view(T, KH, D), vd.view(T, KH, D), bias, positions, p, kv, slots);
      CHECK(tolerance_ratio(download(space, qd), want_q, 2e-6, 2e-6) <= 1.0);
      auto const pool = download(space, pool_d);
      PagedKv<TestType const> const got{pool.data(), pages, ps, KH, D};
      double const rtol = std::is_same_v<TestType, float> ? 2e-6 : 1.0 / 256;
      std::vector<double> got_k, ref_k;
      for (std::size_t s = 0; s < pages * ps; ++s) {
        auto const it = std::find(slots.begin(), slots.end(), s);
        for (std::size_t h = 0; h < KH; ++h) {
          for (std::size_t d = 0; d < D; ++d) {
            float const kk = to_float(got.at(s / ps, 0, s % ps, h)[d]);
            float const vv = to_float(got.at(s / ps, 1, s % ps, h)[d]);
            if (it == slots.end()) {
              REQUIRE(kk == 7.0f);
              REQUIRE(vv == 7.0f);
              continue;
            }
            std::size_t const t = static_cast<std::size_t>(it - slots.begin());
            got_k.push_back(kk);
            ref_k.push_back(want_k[(t * KH + h) * D + d]);
            REQUIRE(vv == to_float(from_float<TestType>(want_v[(t * KH + h) * D + d])));
          }
        }
      }
      CHECK(tolerance_ratio(got_k, ref_k, 2e-6, rtol) <= 1.0);
    }
  }
  // Bad input is refused before anything is written.
  PagedKv<TestType> const shape{nullptr, pages, ps, KH, D};
  auto pool_d = filled(space, shape.size(), from_float<TestType>(7.0f));
  PagedKv<TestType> const kv{pool_d.data(), pages, ps, KH, D};
  auto qd = upload(space, random_floats(rng, T * H * D)), kd = upload(space, random_floats(rng, T * KH * D));
  auto vd = upload(space, random_floats(rng, T * KH * D));
  auto const q_before = download(space, qd);
  std::vector<std::uint32_t> const dup{1, 2, 3, 2, 4};
  REQUIRE_THROWS_WITH(qkv_rope_append(space, qd.view(T, H, D), kd.view(T, KH, D), vd.view(T, KH, D), QkvBias{}, positions,
                                      RopeParams{}, kv, dup),
                      Catch::Contains("qkv_rope_append: slots[3] = 2 appears twice"));
  auto const short_bias = upload(space, random_floats(rng, H * D - 1));
  auto const kb = upload(space, random_floats(rng, KH * D));
  REQUIRE_THROWS_WITH(qkv_rope_append(space, qd.view(T, H, D), kd.view(T, KH, D), vd.view(T, KH, D),
                                      QkvBias{short_bias.view(H * D - 1), kb.view(KH * D), kb.view(KH * D)}, positions,
                                      RopeParams{}, kv, slots),
                      Catch::Contains("bias.q.extent(0)"));
  REQUIRE_THROWS_WITH(qkv_rope_append(space, qd.view(T, H, D), kd.view(T, KH, D), vd.view(T, KH, D),
                                      QkvBias{{}, kb.view(KH * D), {}}, positions, RopeParams{}, kv, slots),
                      Catch::Contains("give all three or none"));
  std::vector<std::uint32_t> const few{1, 2};
  REQUIRE_THROWS_WITH(qkv_rope_append(space, qd.view(T, H, D), kd.view(T, KH, D), vd.view(T, KH, D), QkvBias{}, few,
                                      RopeParams{}, kv, slots),
                      Catch::Contains("positions.size() = 2"));
  REQUIRE(download(space, qd) == q_before);
  REQUIRE(download(space, pool_d) == std::vector<TestType>(shape.size(), from_float<TestType>(7.0f)));
}

TEST_CASE("merge_states of split KV equals attention over the whole KV", "[kernel][merge_states]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Space const space = test::make_space();
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
  auto const vd = upload(space, v), sd = upload(space, s);
  auto od = filled(space, tokens * heads * hd, nan_f);
  auto ld = filled(space, tokens * heads, nan_f);
  merge_states(space, vd.view(tokens, states, heads, hd), sd.view(tokens, states, heads), od.view(tokens, heads, hd),
               ld.view(tokens, heads));
  CHECK(tolerance_ratio(download(space, od), want, 1e-5, 1e-5) <= 1.0);
  CHECK(tolerance_ratio(download(space, ld), want_lse, 1e-5, 1e-5) <= 1.0);
  // Every state empty: zeros and -inf.
  auto const s_empty = filled(space, states * heads, neg_inf);
  merge_states(space, vd.view(1, states, heads, hd), s_empty.view(1, states, heads), od.view(1, heads, hd), ld.view(1, heads));
  auto const o = download(space, od);
  auto const l = download(space, ld);
  for (std::size_t i = 0; i < heads * hd; ++i) REQUIRE(o[i] == 0.0f);
  for (std::size_t h = 0; h < heads; ++h) REQUIRE(l[h] == neg_inf);
  REQUIRE_THROWS_AS(merge_states(space, vd.view(tokens, states, heads, hd), sd.view(tokens, states, heads - 1),
                                 od.view(tokens, heads, hd), ld.view(tokens, heads)),
                    InvalidArgument);
}
