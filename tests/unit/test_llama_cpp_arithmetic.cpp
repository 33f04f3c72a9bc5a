// llama.cpp's arithmetic (backends/host/detail/llama_cpp_arithmetic.hpp) against double-precision references on
// fresh random inputs. Bit-for-bit agreement with llama.cpp itself is checked by
// test_model_llama_cpp.cpp on the real model; here each piece must also be an accurate computation:
//  * expf_lane: relative error <= 3 ulp (2^-23 * 3) on [-87, 88]; exact specials (0 -> 1, -inf -> 0);
//  * vec_dot_f32 / tinyblas_dot_f32: |error| <= 1e-5 * sum |x_i y_i| (f32 accumulation over <= 512 terms);
//  * swiglu: relative error <= 1e-6;
//  * rope: |error| <= 1e-3 * |x| at positions < 4096 (angles p * s^i accumulated in f32, as llama.cpp);
//  * attention: 2e-5 absolute + 2e-5 relative, causal and masked, GQA 3, head_dim 64 and 128,
//    one-token and multi-token steps, ragged batches;
//  * LlamaModel with llama_cpp_attention on an f32 tiny model: logits within 2e-4 of the kernels' path.

#include <catch2/catch.hpp>

#include <piecrust/backends/host.hpp>
#include <piecrust/kernels/reference/attention.hpp>
#include <piecrust/model.hpp>
#include <piecrust/backends/host/detail/llama_cpp_arithmetic.hpp>
#include <piecrust/model/detail/sequence_runner.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

using namespace piecrust;
namespace lc = piecrust::detail::llama_cpp;

namespace {
std::mt19937_64 make_rng() { return std::mt19937_64(Catch::rngSeed() * 7919u + 11u); }
}  // namespace

TEST_CASE("llama.cpp arithmetic: expf_lane is an accurate exp with exact special cases", "[model][llama_cpp]") {
  auto rng = make_rng();
  std::uniform_real_distribution<float> dist(-87.0f, 88.0f);
  double worst = 0;
  for (int i = 0; i < 20000; ++i) {
    float const x = dist(rng);
    double const ref = std::exp(double{x});
    worst = std::max(worst, std::fabs(double{lc::expf_lane(x)} - ref) / ref);
  }
  INFO("max relative error " << worst);
  CHECK(worst <= 3.0 * std::ldexp(1.0, -23));
  CHECK(lc::expf_lane(0.0f) == 1.0f);
  CHECK(lc::expf_lane(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(lc::expf_lane(-200.0f) == 0.0f);
  CHECK(std::isinf(lc::expf_lane(200.0f)));
}

TEST_CASE("llama.cpp arithmetic: dot products and swiglu against double", "[model][llama_cpp]") {
  auto rng = make_rng();
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  for (std::size_t n : {1u, 7u, 31u, 64u, 100u, 128u, 512u}) {
    INFO("n = " << n);
    std::vector<float> x(2 * n), y(n);  // x with stride 2
    for (auto& v : x) v = dist(rng);
    for (auto& v : y) v = dist(rng);
    double ref = 0, mag = 0;
    for (std::size_t i = 0; i < n; ++i) {
      ref += double{x[2 * i]} * y[i];
      mag += std::fabs(double{x[2 * i]} * y[i]);
    }
    CHECK(std::fabs(lc::vec_dot_f32(n, x.data(), 2, y.data()) - ref) <= 1e-5 * mag);
    CHECK(std::fabs(lc::tinyblas_dot_f32(n, x.data(), 2, y.data()) - ref) <= 1e-5 * mag);
  }
  std::vector<float> g(1536), u(1536), out(1536);
  for (auto& v : g) v = dist(rng) * 4.0f;
  for (auto& v : u) v = dist(rng);
  lc::swiglu(g, u, out);
  for (std::size_t i = 0; i < g.size(); ++i) {
    double const ref = double{g[i]} / (1.0 + std::exp(-double{g[i]})) * u[i];
    CHECK(std::fabs(out[i] - ref) <= 1e-6 * std::fabs(ref) + 1e-12);
  }
}

TEST_CASE("llama.cpp arithmetic: rope against double-precision angles", "[model][llama_cpp]") {
  auto rng = make_rng();
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (RopeStyle style : {RopeStyle::adjacent_pairs, RopeStyle::half_split}) {
    std::size_t const T = 6, H = 3, D = 64;
    std::vector<std::uint32_t> pos{0, 1, 2, 17, 1000, 4095};
    std::vector<float> x(T * H * D);
    for (auto& v : x) v = dist(rng);
    std::vector<float> got = x;
    RopeParams p;
    p.theta = 100000.0f;
    p.style = style;
    lc::rope(ShapedView<float, 3>(got.data(), T, H, D), pos, p);
    double worst = 0;
    for (std::size_t t = 0; t < T; ++t) {
      for (std::size_t h = 0; h < H; ++h) {
        for (std::size_t i = 0; i < D / 2; ++i) {
          std::size_t const a = style == RopeStyle::adjacent_pairs ? 2 * i : i;
          std::size_t const b = style == RopeStyle::adjacent_pairs ? 2 * i + 1 : i + D / 2;
          double const ang = pos[t] * std::pow(100000.0, -2.0 * double(i) / double(D));
          float const* v = x.data() + (t * H + h) * D;
          double const r0 = v[a] * std::cos(ang) - v[b] * std::sin(ang);
          double const r1 = v[a] * std::sin(ang) + v[b] * std::cos(ang);
          float const* o = got.data() + (t * H + h) * D;
          worst = std::max({worst, std::fabs(o[a] - r0), std::fabs(o[b] - r1)});
        }
      }
    }
    INFO("max abs error " << worst);
    CHECK(worst <= 1e-3);
  }
}

TEST_CASE("llama.cpp arithmetic: attention against the double-precision reference", "[model][llama_cpp]") {
  auto rng = make_rng();
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (std::size_t D : {64u, 128u}) {
    for (bool masked : {false, true}) {
      for (std::size_t step_tokens : {1u, 5u}) {
        INFO("D = " << D << " masked = " << masked << " qo_len = " << step_tokens);
        std::size_t const ps = 16, KH = 2, H = 6;
        std::vector<std::size_t> kv_lens{step_tokens + 37, step_tokens + 3};
        std::vector<std::uint32_t> qo_indptr{0}, kv_indptr{0}, kv_indices, last;
        std::size_t pages = 0;
        for (std::size_t L : kv_lens) {
          std::size_t const np = (L + ps - 1) / ps;
          for (std::size_t p = 0; p < np; ++p) kv_indices.push_back(static_cast<std::uint32_t>(pages + np - 1 - p));
          pages += np;
          kv_indptr.push_back(static_cast<std::uint32_t>(kv_indices.size()));
          last.push_back(static_cast<std::uint32_t>(L - (np - 1) * ps));
          qo_indptr.push_back(static_cast<std::uint32_t>(qo_indptr.back() + step_tokens));
        }
        std::size_t const T = qo_indptr.back();
        std::vector<float> pool(pages * 2 * ps * KH * D), q(T * H * D), out(T * H * D, -7.0f);
        for (auto& v : pool) v = dist(rng);
        for (auto& v : q) v = dist(rng) * 3.0f;
        std::vector<AttentionMask> masks;
        if (masked) {
          for (std::size_t b = 0; b < kv_lens.size(); ++b) {
            for (std::size_t i = 0; i < step_tokens; ++i) {
              std::size_t const visible = kv_lens[b] - step_tokens + i + 1;
              masks.push_back(i % 2 == 0 ? AttentionMask::sink_window(visible, 2, 5) : AttentionMask::window(visible, 9));
            }
          }
        }
        PagedKv<float const> const kv{pool.data(), pages, ps, KH, D};
        PagedBatch const batch{qo_indptr, kv_indptr, kv_indices, last};
        auto serial = [](std::size_t n, auto&& f) { f(std::size_t{0}, n); };
        lc::attention(serial, ShapedView<float const, 3>(q.data(), T, H, D), kv, batch, AttentionSelection{masks, {}},
                      ShapedView<float, 3>(out.data(), T, H, D));
        auto const ref = reference::paged_attention<float>(q, H, kv, batch, 1.0 / std::sqrt(double(D)), 0.0, masks);
        double worst = 0;
        for (std::size_t i = 0; i < out.size(); ++i) {
          worst = std::max(worst, std::fabs(out[i] - ref.out[i]) / (2e-5 + 2e-5 * std::fabs(ref.out[i])));
        }
        CHECK(worst <= 1.0);
      }
    }
  }
}

TEST_CASE("llama.cpp arithmetic: the model option stays close to piecrust's kernels, f32 KV only", "[model][llama_cpp]") {
  auto weights = [] { return LlamaWeights::random(tiny_llama_config(), 5, GgmlType::f32); };
  LlamaModelOptions exact;
  exact.llama_cpp_attention = true;
  LlamaModel<Host> a(weights(), Host{2}, exact);
  LlamaModel<Host> b(weights(), Host{2});
  detail::SequenceRunner<LlamaModel<Host>> ra(a, 16), rb(b, 16);
  auto const sa = ra.add_sequence();
  auto const sb = rb.add_sequence();
  std::vector<TokenId> prompt{5, 17, 3, 99, 42, 7, 7, 250, 1, 64, 12, 33, 80, 2, 9, 101, 44, 3};
  auto la = ra.step(sa, prompt);
  auto lb = rb.step(sb, prompt);
  for (int step = 0; step < 4; ++step) {
    double worst = 0;
    for (std::size_t i = 0; i < la.size(); ++i) worst = std::max(worst, double(std::fabs(la[i] - lb[i])));
    INFO("step " << step << " max |logit difference| " << worst);
    CHECK(worst < 2e-4);
    TokenId const next = static_cast<TokenId>(step * 31 + 4);
    la = ra.step(sa, std::span(&next, 1));
    lb = rb.step(sb, std::span(&next, 1));
  }
  CHECK_THROWS_AS((LlamaModel<Host, BFloat16>(weights(), Host{1}, exact)), Unsupported);
}
