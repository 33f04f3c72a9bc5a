// The Kokkos adapter on Kokkos' default execution space (Serial in Debian's build) against the host
// backend: rms_norm, fused_add_rms_norm and rope within 1e-6 (different reduction order); sample and
// probes identical (the same per-row code and Philox keys).

#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <vector>

#include "piecrust/backends/host.hpp"
#include "piecrust/backends/kokkos/kokkos.hpp"
#include "piecrust/kernels.hpp"
#include "piecrust/kernels/reference/model_ops.hpp"
#include "test_kernel_support.hpp"

using namespace piecrust;
using piecrust::test::random_floats;
using piecrust::test::tolerance_ratio;
using KSpace = Kokkos::DefaultHostExecutionSpace;

TEST_CASE("Kokkos execution spaces satisfy ExecutionSpace and have the adapter's ops", "[kokkos]") {
  STATIC_REQUIRE(ExecutionSpace<KSpace>);
  STATIC_REQUIRE(ExecutionSpace<Kokkos::DefaultExecutionSpace>);
  STATIC_REQUIRE(host_accessible_space<KSpace>);
  STATIC_REQUIRE(HasKernel<ops::RmsNorm, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::Rope, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::Sample, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::ProbeEntropy, KSpace>);
  STATIC_REQUIRE_FALSE(HasKernel<ops::PagedAttention, KSpace>);
  Buffer<float, KSpace::memory_space> buf(16);  // Kokkos memory spaces work as Buffer memory spaces
  REQUIRE(buf.size() == 16);
  buf.span()[3] = 1.0f;
  REQUIRE(buf[3] == 1.0f);
}

TEST_CASE("Kokkos rms_norm, fused_add_rms_norm and rope match the host and the reference", "[kokkos]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Host const host;
  KSpace const kspace;
  std::size_t const rows = 6, dim = 576;
  auto const x = random_floats(rng, rows * dim, -3, 3);  // [rows][dim]
  auto const w = random_floats(rng, dim, 0.5f, 1.5f);    // [dim]
  std::vector<float> out_k(rows * dim), out_h(rows * dim);
  rms_norm(kspace, ShapedView<float const, 2>(x.data(), rows, dim), ShapedView<float const, 1>(w.data(), dim),
           ShapedView<float, 2>(out_k.data(), rows, dim));
  rms_norm(host, ShapedView<float const, 2>(x.data(), rows, dim), ShapedView<float const, 1>(w.data(), dim),
           ShapedView<float, 2>(out_h.data(), rows, dim));
  CHECK(tolerance_ratio(out_k, out_h, 1e-6, 1e-6) <= 1.0);
  CHECK(tolerance_ratio(out_k, reference::rms_norm(x, w, dim, 1e-5), 1e-5, 1e-5) <= 1.0);

  auto xk = x, xh = x;
  auto rk = random_floats(rng, rows * dim);
  auto rh = rk;
  fused_add_rms_norm(kspace, ShapedView<float, 2>(xk.data(), rows, dim), ShapedView<float, 2>(rk.data(), rows, dim),
                     ShapedView<float const, 1>(w.data(), dim));
  fused_add_rms_norm(host, ShapedView<float, 2>(xh.data(), rows, dim), ShapedView<float, 2>(rh.data(), rows, dim),
                     ShapedView<float const, 1>(w.data(), dim));
  CHECK(rk == rh);
  CHECK(tolerance_ratio(xk, xh, 1e-6, 1e-6) <= 1.0);

  std::size_t const tokens = 5, heads = 4, hd = 64;
  std::vector<std::uint32_t> positions{0, 1, 17, 4096, 131071};
  for (RopeParams const& p : {RopeParams{10000.0f, RopeStyle::adjacent_pairs, 0, {}},
                              RopeParams{500000.0f, RopeStyle::half_split, 0, {8.0f, 1.0f, 4.0f, 8192}}}) {
    auto qk = random_floats(rng, tokens * heads * hd);
    auto qh = qk;
    auto const ref = reference::rope(qk, heads, hd, positions, p);
    rope(kspace, ShapedView<float, 3>(qk.data(), tokens, heads, hd), positions, p);
    rope(host, ShapedView<float, 3>(qh.data(), tokens, heads, hd), positions, p);
    CHECK(tolerance_ratio(qk, qh, 1e-6, 1e-6) <= 1.0);
    CHECK(tolerance_ratio(qk, ref, 2e-6, 2e-6) <= 1.0);
  }
  // The interface's checks run before any backend.
  REQUIRE_THROWS_AS(rms_norm(kspace, ShapedView<float const, 2>(x.data(), rows, dim), ShapedView<float const, 1>(w.data(), dim - 1),
                             ShapedView<float, 2>(out_k.data(), rows, dim)),
                    InvalidArgument);
}

TEST_CASE("Kokkos sample and probes give the host's results", "[kokkos]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Host const host;
  KSpace const kspace;
  std::size_t const rows = 8, vocab = 2000;
  auto const logits = random_floats(rng, rows * vocab, -5, 5);  // [rows][vocab]
  std::vector<SamplingParams> params{SamplingParams::greedy(),         SamplingParams::multinomial(),
                                     SamplingParams::with_temperature(0.5f), SamplingParams::top_k_of(20),
                                     SamplingParams::top_p_of(0.9f),    SamplingParams::min_p_of(0.05f),
                                     SamplingParams::top_k_top_p_of(40, 0.8f), SamplingParams::top_p_of(0.5f, 2.0f)};
  std::vector<LogitMask> masks(rows);
  masks[3] = LogitMask::allow({5, 77, 1999}, vocab);
  ShapedView<float const, 2> const lv(logits.data(), rows, vocab);
  for (std::uint64_t step = 0; step < 20; ++step) {
    std::vector<SampleKey> keys(rows);
    for (std::size_t r = 0; r < rows; ++r) keys[r] = {seed, r, step};
    std::vector<std::uint32_t> ok(rows), oh(rows);
    sample(kspace, lv, params, masks, keys, ok);
    sample(host, lv, params, masks, keys, oh);
    REQUIRE(ok == oh);
    REQUIRE(masks[3].allows(ok[3]));
  }
  std::size_t const k = 10;
  std::vector<std::uint32_t> ik(rows * k), ih(rows * k);
  std::vector<float> pk(rows * k), ph(rows * k);
  probe_distribution(kspace, lv, k, 0.8f, masks, ShapedView<std::uint32_t, 2>(ik.data(), rows, k), ShapedView<float, 2>(pk.data(), rows, k));
  probe_distribution(host, lv, k, 0.8f, masks, ShapedView<std::uint32_t, 2>(ih.data(), rows, k), ShapedView<float, 2>(ph.data(), rows, k));
  CHECK(ik == ih);
  CHECK(pk == ph);
  std::vector<float> lk(rows * k), lh(rows * k);
  probe_logprobs(kspace, lv, ShapedView<std::uint32_t const, 2>(ik.data(), rows, k), 0.8f, masks, ShapedView<float, 2>(lk.data(), rows, k));
  probe_logprobs(host, lv, ShapedView<std::uint32_t const, 2>(ik.data(), rows, k), 0.8f, masks, ShapedView<float, 2>(lh.data(), rows, k));
  CHECK(lk == lh);
  std::vector<float> ek(rows), eh(rows);
  probe_entropy(kspace, lv, 1.0f, masks, ek);
  probe_entropy(host, lv, 1.0f, masks, eh);
  CHECK(ek == eh);
}
