// What only the Kokkos adapter claims, on Kokkos' default execution space (Serial in Debian's build): its
// spaces satisfy the concepts and have every op; rms_norm, fused_add_rms_norm and rope within 1e-6 of the
// host backend (another reduction order), the residual bit for bit; sample and probes identical to the
// host's (the same per-row code and Philox keys). Inputs and outputs live in the space's memory.
// Every op against the double-precision references: the kernel tests of tests/unit (test_kernel_*.cpp),
// compiled again for this space (ctests kokkos.kernel_ops, kokkos.kernel_attention, kokkos.kernel_sampling).

#include <catch2/catch.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "piecrust/backends/host.hpp"
#include "piecrust/backends/kokkos/kokkos.hpp"
#include "piecrust/kernels.hpp"
#include "test_kernel_support.hpp"

using namespace piecrust;
using piecrust::test::download;
using piecrust::test::filled;
using piecrust::test::random_floats;
using piecrust::test::tolerance_ratio;
using piecrust::test::upload;
using KSpace = Kokkos::DefaultExecutionSpace;

TEST_CASE("Kokkos execution spaces satisfy ExecutionSpace and have every op of the model and runtime", "[kokkos]") {
  using HSpace = Kokkos::DefaultHostExecutionSpace;
  STATIC_REQUIRE(ExecutionSpace<KSpace>);
  STATIC_REQUIRE(ExecutionSpace<HSpace>);
  STATIC_REQUIRE(host_accessible_space<HSpace>);
  // piecrust's own spaces also pass Kokkos' is_execution_space / is_memory_space (both only ask for the
  // self-naming typedef); the adapter must not claim them.
  STATIC_REQUIRE(KokkosSpace<KSpace>);
  STATIC_REQUIRE_FALSE(KokkosSpace<Host>);
  STATIC_REQUIRE(memory_space_is_host_accessible<HostMemory>);
  STATIC_REQUIRE(HasKernel<ops::Copy, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::ZeroFill, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::Embedding, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::Gemm, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::Dequantize, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::RmsNorm, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::FusedAddRmsNorm, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::Rope, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::AddBias, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::Swiglu, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::AppendKv, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::PagedAttention, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::MergeStates, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::Sample, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::ProbeDistribution, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::ProbeLogprobs, KSpace>);
  STATIC_REQUIRE(HasKernel<ops::ProbeEntropy, KSpace>);
  STATIC_REQUIRE(detail::HasAttentionPlan<KSpace>);  // a device plan built once per step
  STATIC_REQUIRE(HasKernel<ops::PagedAttention, HSpace>);
  Buffer<float, HSpace::memory_space> buf(16);  // Kokkos memory spaces work as Buffer memory spaces
  REQUIRE(buf.size() == 16);
  buf.span()[3] = 1.0f;
  REQUIRE(buf[3] == 1.0f);
}

TEST_CASE("Kokkos rms_norm, fused_add_rms_norm and rope agree with the host backend", "[kokkos]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Host const host;
  KSpace const kspace;
  std::size_t const rows = 6, dim = 576;
  auto const x = random_floats(rng, rows * dim, -3, 3);  // [rows][dim]
  auto const w = random_floats(rng, dim, 0.5f, 1.5f);    // [dim]
  auto const xd = upload(kspace, x), wd = upload(kspace, w);
  auto outd = filled(kspace, rows * dim, -9.0f);
  std::vector<float> out_h(rows * dim);
  rms_norm(kspace, xd.view(rows, dim), wd.view(dim), outd.view(rows, dim));
  rms_norm(host, ShapedView<float const, 2>(x.data(), rows, dim), ShapedView<float const, 1>(w.data(), dim),
           ShapedView<float, 2>(out_h.data(), rows, dim));
  CHECK(tolerance_ratio(download(kspace, outd), out_h, 1e-6, 1e-6) <= 1.0);

  auto xh = x;
  auto const r0 = random_floats(rng, rows * dim);
  auto rh = r0;
  auto xk = upload(kspace, x), rk = upload(kspace, r0);
  fused_add_rms_norm(kspace, xk.view(rows, dim), rk.view(rows, dim), wd.view(dim));
  fused_add_rms_norm(host, ShapedView<float, 2>(xh.data(), rows, dim), ShapedView<float, 2>(rh.data(), rows, dim),
                     ShapedView<float const, 1>(w.data(), dim));
  CHECK(download(kspace, rk) == rh);  // one f32 add per element: exact
  CHECK(tolerance_ratio(download(kspace, xk), xh, 1e-6, 1e-6) <= 1.0);

  std::size_t const tokens = 5, heads = 4, hd = 64;
  std::vector<std::uint32_t> positions{0, 1, 17, 4096, 131071};  // host memory, as the interface says
  for (RopeParams const& p : {RopeParams{10000.0f, RopeStyle::adjacent_pairs, 0, {}},
                              RopeParams{500000.0f, RopeStyle::half_split, 0, {8.0f, 1.0f, 4.0f, 8192}},
                              RopeParams{10000.0f, RopeStyle::half_split, 32, {}}}) {
    auto qh = random_floats(rng, tokens * heads * hd);
    auto qk = upload(kspace, qh);
    rope(kspace, qk.view(tokens, heads, hd), positions, p);
    rope(host, ShapedView<float, 3>(qh.data(), tokens, heads, hd), positions, p);
    CHECK(tolerance_ratio(download(kspace, qk), qh, 1e-6, 1e-6) <= 1.0);
  }
}

TEST_CASE("Kokkos sample and probes give the host's bits", "[kokkos]") {
  auto const seed = test::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  Host const host;
  KSpace const kspace;
  std::size_t const rows = 8, vocab = 2000;
  auto const logits = random_floats(rng, rows * vocab, -5, 5);  // [rows][vocab]
  auto const logits_d = upload(kspace, logits);
  // Host memory: params, masks, keys (and probe_logprobs' ids) are host inputs of the interfaces.
  std::vector<SamplingParams> params{SamplingParams::greedy(),         SamplingParams::multinomial(),
                                     SamplingParams::with_temperature(Temperature{0.5f}), SamplingParams::top_k_of(TopK{20}),
                                     SamplingParams::top_p_of(TopP{0.9f}),    SamplingParams::min_p_of(MinP{0.05f}),
                                     SamplingParams::top_k_top_p_of(TopK{40}, TopP{0.8f}), SamplingParams::top_p_of(TopP{0.5f}, Temperature{2.0f})};
  std::vector<LogitMask> masks(rows);
  masks[3] = LogitMask::allow({5, 77, 1999}, vocab);
  ShapedView<float const, 2> const lv(logits.data(), rows, vocab);
  ShapedView<float const, 2> const lk(logits_d.data(), rows, vocab);
  auto tokens_d = filled(kspace, rows, std::uint32_t{0xffffffff});
  for (std::uint64_t step = 0; step < 20; ++step) {
    std::vector<SampleKey> keys(rows);
    for (std::size_t r = 0; r < rows; ++r) keys[r] = {seed, r, step};
    std::vector<std::uint32_t> oh(rows);
    sample(kspace, lk, params, masks, keys, std::span<std::uint32_t>(tokens_d.data(), rows));
    sample(host, lv, params, masks, keys, oh);
    auto const ok = download(kspace, tokens_d);
    REQUIRE(ok == oh);
    REQUIRE(masks[3].allows(ok[3]));
  }
  std::size_t const k = 10;
  auto ik = filled(kspace, rows * k, std::uint32_t{0});
  auto pk = filled(kspace, rows * k, -1.0f);
  std::vector<std::uint32_t> ih(rows * k);
  std::vector<float> ph(rows * k);
  probe_distribution(kspace, lk, k, 0.8f, masks, ShapedView<std::uint32_t, 2>(ik.data(), rows, k), ShapedView<float, 2>(pk.data(), rows, k));
  probe_distribution(host, lv, k, 0.8f, masks, ShapedView<std::uint32_t, 2>(ih.data(), rows, k), ShapedView<float, 2>(ph.data(), rows, k));
  CHECK(download(kspace, ik) == ih);
  CHECK(download(kspace, pk) == ph);
  auto lpk = filled(kspace, rows * k, 1.0f);
  std::vector<float> lh(rows * k);
  probe_logprobs(kspace, lk, ShapedView<std::uint32_t const, 2>(ih.data(), rows, k), 0.8f, masks, ShapedView<float, 2>(lpk.data(), rows, k));
  probe_logprobs(host, lv, ShapedView<std::uint32_t const, 2>(ih.data(), rows, k), 0.8f, masks, ShapedView<float, 2>(lh.data(), rows, k));
  CHECK(download(kspace, lpk) == lh);
  auto ek = filled(kspace, rows, -1.0f);
  std::vector<float> eh(rows);
  probe_entropy(kspace, lk, 1.0f, masks, std::span<float>(ek.data(), rows));
  probe_entropy(host, lv, 1.0f, masks, eh);
  CHECK(download(kspace, ek) == eh);
}
