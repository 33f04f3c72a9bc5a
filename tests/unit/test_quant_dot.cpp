// The host's integer matmul for every quantized type (backends/host/detail/quant_gemm.hpp), on fresh random
// blocks (random bytes, f16 scales of magnitude [2^-10, 2^-7): tests/support/random_quant_blocks.hpp) and
// random activations:
//  * every code path this CPU runs gives the scalar path's bits (activations and products);
//  * against a double-precision dot of the dequantized weights (kernels/reference) with the UNquantized
//    activations, within a bound derived from the activation quantization:
//      |x - x_hat| <= amax_b * (1/254 + 2^-10) per element (rounding to the nearest step d = amax_b / 127,
//      plus the f16 rounding of d, at most 2^-11 * d * 127; Q8_K keeps d in f32), so the error is at most
//      sum_c |w_c| * amax_b(c) * (1/254 + 2^-10);
//      Q4_1 / Q5_1 add |m_b| * |s - d_f16 * sum q| <= |m_b| * 2^-10 * 32 * amax_b per block (s and d are
//      f16-rounded separately), and f32 accumulation adds 1e-5 * (sum |w_c x_c| + sum |w_c| amax_b);
//  * the SIMD unpacking of codes equals quant::code;
//  * batch invariance: row i of an m-row product equals the same row computed alone;
//  * odd shapes: one block per row, many blocks, weight rows not a multiple of the row grouping.

#include <catch2/catch.hpp>

#include "random_quant_blocks.hpp"

#include <piecrust/backends/host.hpp>
#include <piecrust/backends/host/detail/quant_gemm.hpp>
#include <piecrust/kernels/quant_blocks.hpp>
#include <piecrust/kernels/reference/model_ops.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <vector>

using namespace piecrust;
using detail::SimdLevel;

namespace {

constexpr WeightType quant_types[] = {WeightType::q4_0, WeightType::q4_1, WeightType::q5_0,   WeightType::q5_1,
                                      WeightType::q8_0, WeightType::q2_k, WeightType::q3_k,   WeightType::q4_k,
                                      WeightType::q5_k, WeightType::q6_k, WeightType::iq4_nl, WeightType::iq4_xs};

std::uint32_t fresh_seed() { return std::random_device{}(); }

/// rows x cols weights of type t: random valid blocks (tests/support/random_quant_blocks.hpp).
std::vector<std::uint8_t> random_weights(std::mt19937& rng, WeightType t, std::size_t rows, std::size_t cols) {
  auto const w = testing::random_weights(t, rows, cols, rng());
  std::vector<std::uint8_t> out(w.bytes.size());  // [rows][cols / block][block bytes]
  std::memcpy(out.data(), w.bytes.data(), out.size());
  return out;
}

std::vector<float> random_activations(std::mt19937& rng, std::size_t n) {
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> x(n);  // [n]
  for (auto& v : x) v = dist(rng);
  return x;
}

detail::QuantizedActivations quantize(std::vector<float> const& x, std::size_t m, std::size_t k, WeightType t,
                                      SimdLevel level) {
  detail::QuantizedActivations a;
  a.quantize(x.data(), m, k, !detail::uses_q8k(t), detail::uses_q8k(t), level);
  return a;
}

/// y [m][w.rows] through quant_gemm_many at `level`, split into tasks of `grain` weight rows.
std::vector<float> product(detail::QuantizedActivations const& a, WeightMatrix const& w, SimdLevel level,
                           std::size_t grain) {
  std::vector<float> y(a.rows * w.rows, 0.0f);  // [m][n]
  auto chunks = [grain](std::size_t n, auto&& f) {
    for (std::size_t b = 0; b < n; b += grain) f(b, std::min(n, b + grain));
  };
  detail::QuantGemmOutput const o{&w, y.data(), 0.0f};
  detail::quant_gemm_many(chunks, a, std::span(&o, 1), level);
  return y;
}

bool same_bits(std::vector<float> const& a, std::vector<float> const& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i])) return false;
  }
  return true;
}

/// The codes of one block as the SIMD path of `level` unpacks them (AVX-512 unpacks the 256-blocks itself;
/// its 32-blocks use the AVX2 unpacking).
template <WeightType T>
void unpack_with(SimdLevel level, std::uint8_t const* blk, std::int8_t* codes) {
#if PIECRUST_HOST_X86
  if constexpr (detail::uses_q8k(T)) {
    if (level == SimdLevel::avx512) return detail::avx512::unpack_block<T>(blk, codes);
  }
  detail::avx2::unpack_block<T>(blk, codes);
#else
  (void)level;
  (void)blk;
  (void)codes;
#endif
}

void unpack_simd(SimdLevel l, WeightType t, std::uint8_t const* blk, std::int8_t* codes) {
  switch (t) {
    case WeightType::q4_0: return unpack_with<WeightType::q4_0>(l, blk, codes);
    case WeightType::q4_1: return unpack_with<WeightType::q4_1>(l, blk, codes);
    case WeightType::q5_0: return unpack_with<WeightType::q5_0>(l, blk, codes);
    case WeightType::q5_1: return unpack_with<WeightType::q5_1>(l, blk, codes);
    case WeightType::q8_0: return unpack_with<WeightType::q8_0>(l, blk, codes);
    case WeightType::q2_k: return unpack_with<WeightType::q2_k>(l, blk, codes);
    case WeightType::q3_k: return unpack_with<WeightType::q3_k>(l, blk, codes);
    case WeightType::q4_k: return unpack_with<WeightType::q4_k>(l, blk, codes);
    case WeightType::q5_k: return unpack_with<WeightType::q5_k>(l, blk, codes);
    case WeightType::q6_k: return unpack_with<WeightType::q6_k>(l, blk, codes);
    case WeightType::iq4_nl: return unpack_with<WeightType::iq4_nl>(l, blk, codes);
    case WeightType::iq4_xs: return unpack_with<WeightType::iq4_xs>(l, blk, codes);
    default: FAIL("not a quantized type");
  }
}

}  // namespace

TEST_CASE("quant dot: the CPU's levels are detected and scalar is always among them", "[quant_dot]") {
  auto const levels = detail::quant_levels();
  REQUIRE(!levels.empty());
  CHECK(levels.front() == SimdLevel::scalar);
  CHECK(detail::cpu_supports(detail::best_quant_level()));
  CHECK(levels.back() == detail::best_quant_level());
  for (auto l : detail::cpu_simd_levels()) INFO("cpu level " << detail::simd_level_name(l));
  // the environment's cap (PIECRUST_HOST_SIMD) bounds the levels; with none, every level the CPU runs
  CHECK(levels.back() <= detail::simd_level_cap());
  for (SimdLevel l : {SimdLevel::scalar, SimdLevel::avx2, SimdLevel::avx512}) {
    bool const listed = std::find(levels.begin(), levels.end(), l) != levels.end();
    CHECK(listed == (detail::cpu_supports(l) && l <= detail::simd_level_cap()));
  }
  if (!detail::cpu_supports(SimdLevel::avx2)) {
    CHECK_THROWS_AS(detail::quant_rows_fn(WeightType::q4_0, SimdLevel::avx2), Unsupported);
  }
  if (!detail::cpu_supports(SimdLevel::avx512)) {
    CHECK_THROWS_AS(detail::quant_rows_fn(WeightType::q4_0, SimdLevel::avx512), Unsupported);
  }
  CHECK_THROWS_AS(detail::quant_rows_fn(WeightType::f16, SimdLevel::scalar), InvalidArgument);
}

TEST_CASE("quant dot: SIMD unpacking of every type equals quant::code", "[quant_dot]") {
  if (!detail::cpu_supports(SimdLevel::avx2)) return;  // no SIMD path on this CPU: nothing to compare
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (WeightType t : quant_types) {
    INFO("type " << weight_type_name(t));
    std::size_t const n = weight_block_size(t);
    auto const w = random_weights(rng, t, 1, 16 * n);  // 16 blocks
    std::vector<std::int8_t> codes(n);                 // [block] one block's codes
    for (SimdLevel l : detail::quant_levels()) {
      if (l == SimdLevel::scalar) continue;
      INFO("level " << detail::simd_level_name(l));
      std::size_t bad = 0;
      for (std::size_t b = 0; b < 16; ++b) {
        std::uint8_t const* blk = w.data() + b * weight_block_bytes(t);
        std::fill(codes.begin(), codes.end(), std::int8_t{99});  // not a code of any type
        unpack_simd(l, t, blk, codes.data());
        for (std::size_t i = 0; i < n; ++i) bad += codes[i] != quant::code(t, blk, i);
      }
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("quant dot: every level gives the scalar bits and stays within the stated bound", "[quant_dot]") {
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  auto const levels = detail::quant_levels();
  for (WeightType t : quant_types) {
    INFO("type " << weight_type_name(t));
    std::size_t const bs = weight_block_size(t);
    // (weight rows, blocks per row, activation rows): one block, many blocks, rows off the groupings
    struct Shape {
      std::size_t n, blocks, m;
    };
    for (Shape const s : {Shape{1, 1, 1}, Shape{3, 1, 2}, Shape{17, 3, 5}, Shape{35, 2, 4}, Shape{5, 40, 3},
                          Shape{2, 9, 7}}) {
      std::size_t const k = s.blocks * bs;
      if (bs == 256 && s.blocks > 10) continue;  // keep the scalar reference quick
      INFO("n " << s.n << " k " << k << " m " << s.m);
      auto const wb = random_weights(rng, t, s.n, k);
      WeightMatrix const w{t, wb.data(), s.n, k};
      auto const x = random_activations(rng, s.m * k);  // [m][k]
      auto const a0 = quantize(x, s.m, k, t, SimdLevel::scalar);
      auto const y0 = product(a0, w, SimdLevel::scalar, 16);
      for (SimdLevel l : levels) {
        INFO("level " << detail::simd_level_name(l));
        auto const a = quantize(x, s.m, k, t, l);
        CHECK(a.q == a0.q);
        CHECK(same_bits(a.d, a0.d));
        CHECK(same_bits(a.s, a0.s));
        CHECK(a.kq == a0.kq);
        CHECK(same_bits(a.kd, a0.kd));
        CHECK(a.kbsums == a0.kbsums);
        CHECK(same_bits(product(a, w, l, 16), y0));
        CHECK(same_bits(product(a, w, l, 1), y0));
      }
      // The double-precision reference and the bound of the header comment.
      std::size_t over = 0;
      double worst = 0;
      for (std::size_t o = 0; o < s.n; ++o) {
        std::vector<double> const wr = reference::dequantize_row(w, o);  // [k]
        for (std::size_t i = 0; i < s.m; ++i) {
          float const* xi = x.data() + i * k;
          double ref = 0, bound = 0, mag = 0;
          std::size_t const ab = detail::uses_q8k(t) ? 256 : 32;  // activation block
          for (std::size_t b0 = 0; b0 < k; b0 += ab) {
            double amax = 0;
            for (std::size_t c = b0; c < b0 + ab; ++c) amax = std::max(amax, std::fabs(double{xi[c]}));
            for (std::size_t c = b0; c < b0 + ab; ++c) {
              ref += wr[c] * xi[c];
              bound += std::fabs(wr[c]) * amax * (1.0 / 254 + std::ldexp(1.0, -10));
              mag += std::fabs(wr[c] * xi[c]) + std::fabs(wr[c]) * amax;
            }
            if (t == WeightType::q4_1 || t == WeightType::q5_1) {
              auto const* blk = wb.data() + o * w.row_bytes() + (b0 / 32) * weight_block_bytes(t);
              bound += std::fabs(double{quant::load_f16(blk + 2)}) * std::ldexp(1.0, -10) * 32 * amax;
            }
          }
          bound += 1e-5 * mag;
          double const err = std::fabs(double{y0[i * s.n + o]} - ref);
          worst = std::max(worst, err / bound);
          over += err > bound;
        }
      }
      INFO("worst error / bound " << worst);
      CHECK(over == 0);
    }
  }
}

TEST_CASE("quant dot: a row's result does not depend on its batch", "[quant_dot]") {
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (WeightType t : quant_types) {
    INFO("type " << weight_type_name(t));
    std::size_t const n = 19, k = 2 * weight_block_size(t);
    auto const wb = random_weights(rng, t, n, k);
    WeightMatrix const w{t, wb.data(), n, k};
    for (SimdLevel l : detail::quant_levels()) {
      INFO("level " << detail::simd_level_name(l));
      for (std::size_t m : {1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u, 9u, 16u, 33u}) {
        INFO("m " << m);
        auto const x = random_activations(rng, m * k);  // [m][k]
        auto const y = product(quantize(x, m, k, t, l), w, l, 7);
        std::size_t differ = 0;
        for (std::size_t i = 0; i < m; ++i) {
          std::vector<float> const xi(x.begin() + static_cast<std::ptrdiff_t>(i * k),
                                      x.begin() + static_cast<std::ptrdiff_t>((i + 1) * k));
          auto const alone = product(quantize(xi, 1, k, t, l), w, l, 16);
          std::vector<float> const row(y.begin() + static_cast<std::ptrdiff_t>(i * n),
                                       y.begin() + static_cast<std::ptrdiff_t>((i + 1) * n));
          differ += !same_bits(alone, row);
        }
        CHECK(differ == 0);
      }
    }
  }
}

TEST_CASE("quant dot: linear_many over mixed types equals one linear per weight, batch-invariant", "[quant_dot]") {
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Host const space{2};
  std::size_t const k = 512, m = 6;
  WeightType const types[] = {WeightType::q4_0, WeightType::q4_k, WeightType::q6_k, WeightType::q8_0};
  std::vector<std::vector<std::uint8_t>> bytes;  // [product] GGUF bytes
  std::vector<LinearWeight<Host>> ws;
  std::vector<std::size_t> rows;
  for (std::size_t p = 0; p < 4; ++p) {
    rows.push_back(9 + 13 * p);
    bytes.push_back(random_weights(rng, types[p], rows[p], k));
  }
  for (std::size_t p = 0; p < 4; ++p) {
    ws.push_back(load_linear(space, WeightMatrix{types[p], bytes[p].data(), rows[p], k}));
    CHECK(ws.back().round_activations);
  }
  auto const x = random_activations(rng, m * k);  // [m][k]
  std::vector<std::vector<float>> many(4), one(4);
  std::vector<LinearProduct<LinearWeight<Host>>> ps;
  for (std::size_t p = 0; p < 4; ++p) {
    many[p].assign(m * rows[p], 1.0f);  // [m][rows]
    one[p].assign(m * rows[p], 1.0f);
    ps.push_back({&ws[p], ShapedView<float, 2>(many[p].data(), m, rows[p]), 0.0f});
  }
  ShapedView<float const, 2> const xv(x.data(), m, k);
  linear_many(space, xv, std::span<LinearProduct<LinearWeight<Host>> const>(ps));
  for (std::size_t p = 0; p < 4; ++p) {
    INFO("type " << weight_type_name(types[p]));
    linear(space, xv, ws[p], ShapedView<float, 2>(one[p].data(), m, rows[p]));
    CHECK(same_bits(many[p], one[p]));
    // the same bits as the detail kernel at the best level, and each row alone
    auto const a = quantize(x, m, k, types[p], detail::best_quant_level());
    CHECK(same_bits(product(a, ws[p].matrix, detail::best_quant_level(), 16), one[p]));
    std::vector<float> alone(rows[p]);  // [rows]
    linear(space, ShapedView<float const, 2>(x.data() + (m - 1) * k, 1, k), ws[p],
           ShapedView<float, 2>(alone.data(), 1, rows[p]));
    CHECK(same_bits(alone, std::vector<float>(one[p].end() - static_cast<std::ptrdiff_t>(rows[p]), one[p].end())));
  }
}

TEST_CASE("quant dot: the interleaved copy of every block-of-32 type gives the row-major bits", "[quant_dot]") {
  if (!detail::interleaved_quant_available(detail::best_quant_level())) return;  // no interleaved code here
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Host const space{2};
  for (WeightType t : {WeightType::q4_0, WeightType::q4_1, WeightType::q5_0, WeightType::q5_1, WeightType::q8_0,
                       WeightType::iq4_nl}) {
    INFO("type " << weight_type_name(t));
    for (std::size_t n : {1u, 8u, 19u}) {
      for (std::size_t blocks : {1u, 9u}) {
        std::size_t const k = 32 * blocks;
        INFO("n " << n << " k " << k);
        auto const wb = random_weights(rng, t, n, k);
        WeightMatrix const w{t, wb.data(), n, k};
        auto const packed = detail::InterleavedQuant::from(w);
        LinearOptions plain;
        plain.interleave = false;
        auto const lw_packed = load_linear(space, w), lw_plain = load_linear(space, w, plain);
        CHECK(lw_packed.packed.groups == (n + 7) / 8);
        CHECK(lw_plain.packed.groups == 0);
        for (std::size_t m : {1u, 2u, 3u, 5u, 67u}) {  // 67: more rows than one kernel call takes
          INFO("m " << m);
          auto const x = random_activations(rng, m * k);  // [m][k]
          auto const a = quantize(x, m, k, t, SimdLevel::scalar);
          auto const want = product(a, w, SimdLevel::scalar, 16);
          std::vector<float> got(m * n, 0.0f);  // [m][n]
          detail::InterleavedQuantOutput const o{&packed, got.data(), 0.0f};
          auto chunks = [](std::size_t cnt, auto&& f) {
            for (std::size_t b = 0; b < cnt; ++b) f(b, b + 1);
          };
          for (SimdLevel l : detail::quant_levels()) {
            if (!detail::interleaved_quant_available(l)) continue;
            INFO("level " << detail::simd_level_name(l));
            std::fill(got.begin(), got.end(), -1.0f);
            detail::interleaved_quant_gemm_many(chunks, a, std::span(&o, 1), l);
            CHECK(same_bits(got, want));
          }
          std::vector<float> y1(m * n), y2(m * n);  // [m][n]
          ShapedView<float const, 2> const xv(x.data(), m, k);
          linear(space, xv, lw_packed, ShapedView<float, 2>(y1.data(), m, n));
          linear(space, xv, lw_plain, ShapedView<float, 2>(y2.data(), m, n));
          CHECK(same_bits(y1, want));
          CHECK(same_bits(y2, want));
        }
      }
    }
  }
  REQUIRE_THROWS_AS(detail::InterleavedQuant::from(WeightMatrix{WeightType::q4_k, nullptr, 8, 256}), InvalidArgument);
}

TEST_CASE("quant dot: 8-bit activation blocks round ties to even on every level, zero blocks give zeros",
          "[quant_dot]") {
  std::mt19937 rng(Catch::rngSeed());
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::size_t const m = 5, k = 192;  // [5][192]: 30 blocks of 32, magnitudes 1e-3 .. 1e3 across blocks
  std::vector<float> x(m * k);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = dist(rng) * std::pow(10.0f, static_cast<float>(i / 32 % 7) - 3.0f);
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // an all-zero block: d = 0, q = 0
  // Exact ties: amax 127 makes id 1, so k + 0.5 must round to even (nearest-even, as ggml's AVX2 path).
  x[128] = 127.0f;
  for (int j = 1; j < 32; ++j) x[128 + j] = static_cast<float>(j) - 15.5f;
  detail::QuantizedActivations slow;
  slow.quantize(x.data(), m, k, true, false, SimdLevel::scalar);
  CHECK(slow.q[129] == -14);  // -14.5 -> -14 (even)
  CHECK(slow.q[130] == -14);  // -13.5 -> -14 (even)
  CHECK(std::all_of(slow.q.begin() + 64, slow.q.begin() + 96, [](std::int8_t v) { return v == 0; }));
  CHECK(slow.d[2] == 0.0f);
  for (SimdLevel level : detail::quant_levels()) {
    INFO("level " << detail::simd_level_name(level));
    detail::QuantizedActivations fast;
    fast.quantize(x.data(), m, k, true, false, level);
    CHECK(fast.q == slow.q);
    CHECK(fast.d == slow.d);
    CHECK(fast.s == slow.s);
  }
}

TEST_CASE("quant dot: activations of another width are refused before any output is written", "[quant_dot]") {
  std::mt19937 rng(Catch::rngSeed());
  auto const wb = random_weights(rng, WeightType::q4_1, 16, 128);
  WeightMatrix const w{WeightType::q4_1, wb.data(), 16, 128};  // [16][128]
  auto const x = random_activations(rng, 2 * 64);              // [2][64]
  auto const a = quantize(x, 2, 64, WeightType::q4_1, SimdLevel::scalar);
  auto serial = [](std::size_t len, auto&& f) { f(std::size_t{0}, len); };
  std::vector<float> y(2 * 16, 7.0f);  // [2][16]
  detail::QuantGemmOutput const o{&w, y.data(), 0.0f};
  REQUIRE_THROWS_AS(detail::quant_gemm_many(serial, a, std::span(&o, 1)), InvalidArgument);
  CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 7.0f; }));
  if (detail::interleaved_quant_available(detail::best_quant_level())) {
    auto const packed = detail::InterleavedQuant::from(w);
    detail::InterleavedQuantOutput const io{&packed, y.data(), 0.0f};
    REQUIRE_THROWS_AS(detail::interleaved_quant_gemm_many(serial, a, std::span(&io, 1)), InvalidArgument);
    CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 7.0f; }));
  }
}

TEST_CASE("quant dot: beta scales the old output before the product is added", "[quant_dot]") {
  auto const seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (WeightType t : {WeightType::q4_1, WeightType::q6_k}) {
    INFO("type " << weight_type_name(t));
    std::size_t const m = 3, n = 19, k = 512;
    auto const wb = random_weights(rng, t, n, k);
    WeightMatrix const w{t, wb.data(), n, k};                 // [19][512]
    auto const a = quantize(random_activations(rng, m * k), m, k, t, detail::best_quant_level());
    auto const plain = product(a, w, detail::best_quant_level(), 16);  // beta = 0: [m][n]
    auto const y0 = random_activations(rng, m * n);                    // [m][n]
    for (float beta : {1.0f, 0.5f}) {
      INFO("beta " << beta);
      std::vector<float> y = y0, want(m * n);  // [m][n]
      for (std::size_t i = 0; i < want.size(); ++i) want[i] = beta * y0[i] + plain[i];
      auto serial = [](std::size_t len, auto&& f) { f(std::size_t{0}, len); };
      detail::QuantGemmOutput const o{&w, y.data(), beta};
      detail::quant_gemm_many(serial, a, std::span(&o, 1));
      CHECK(same_bits(y, want));
    }
  }
}
