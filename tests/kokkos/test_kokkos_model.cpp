// The one LlamaModel forward on Kokkos' default execution space against the same forward on the host
// (f32 activations on both: llama.cpp's 8-bit activation rounding is a host-only option), for the Llama and
// the Qwen2 (q/k/v biases, half-split RoPE) variants of the tiny random model, f32 and quantized weights,
// f32 and bf16 KV: a ragged prefill, then a decode and a masked speculative step with page-trim, every
// weight, activation and KV byte in Kokkos memory. This runs every op of the model on Kokkos.
// Tolerance on the logits (magnitudes up to ~75): f32 KV 2e-4 absolute + 2e-4 relative (two layers of f32
// kernels whose sums run in another order than the host's; measured differences <= 3e-5); bf16 KV 1e-2 +
// 1e-3, because a K/V value a few f32 ulps apart may round to the neighbouring bf16 value on one space
// (measured <= 3e-3).

#include <catch2/catch.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "piecrust/backends/host.hpp"
#include "piecrust/backends/kokkos/kokkos.hpp"
#include "piecrust/model/llama_model.hpp"
#include "piecrust/model/tiny_llama.hpp"
#include "test_kernel_support.hpp"

using namespace piecrust;
using piecrust::test::download;
using piecrust::test::filled;
using piecrust::test::tolerance_ratio;
using KSpace = Kokkos::DefaultExecutionSpace;

namespace {

/// One model step's host inputs (ForwardBatch's spans point into them).
struct StepInput {
  std::vector<TokenId> tokens;
  std::vector<std::uint32_t> positions, qo, kvp, idx, last, rows;
  std::vector<AttentionMask> masks;
  std::vector<TrimPlan> trims;
};

/// Runs `steps` on a fresh KV cache of `model` and returns every step's logits (host copies).
template <class Model, class Space>
std::vector<std::vector<float>> run_steps(Model& model, Space const& space, std::vector<StepInput> const& steps) {
  auto kv = model.make_kv_cache(16, 4);
  std::vector<std::vector<float>> all;
  for (StepInput const& s : steps) {
    std::size_t const n = s.rows.size() * model.config().vocab_size;
    ForwardBatch const b{s.tokens, s.positions, {s.qo, s.kvp, s.idx, s.last}, {s.masks, s.trims}, s.rows};
    if constexpr (std::is_same_v<Space, Host>) {
      std::vector<float> out(n);
      model.forward(kv, b, out);
      all.push_back(out);
    } else {
      auto out = filled(space, n, std::numeric_limits<float>::quiet_NaN());
      model.forward(kv, b, std::span<float>(out.data(), n));
      all.push_back(download(space, out));
    }
  }
  return all;
}

std::vector<StepInput> steps_with_trim() {
  // Step 1: request A prefills 13 tokens (pages 0..3 of 4 tokens), request B 6 tokens (pages 4, 5).
  StepInput s1;
  for (TokenId t = 0; t < 19; ++t) s1.tokens.push_back((t * 37 + 11) % 512);
  for (std::uint32_t p = 0; p < 13; ++p) s1.positions.push_back(p);
  for (std::uint32_t p = 0; p < 6; ++p) s1.positions.push_back(p);
  s1.qo = {0, 13, 19};
  s1.kvp = {0, 4, 6};
  s1.idx = {0, 1, 2, 3, 4, 5};
  s1.last = {1, 2};
  s1.rows = {12, 18};
  // Step 2: A decodes one token under a sink + window mask that drops its page 1 (page-trim), B
  // verifies a speculative chain of 3 tokens with a tree mask (token 2 skips token 1).
  StepInput s2;
  s2.tokens = {5, 200, 201, 202};
  s2.positions = {13, 6, 7, 8};
  s2.qo = {0, 1, 4};
  s2.kvp = {0, 4, 7};
  s2.idx = {0, 1, 2, 3, 4, 5, 6};
  s2.last = {2, 1};
  AttentionMask const a = AttentionMask::sink_window(14, 2, 3);  // positions 0, 1 and 11..13
  std::vector<AttentionMask> b_rows{AttentionMask::causal(7), AttentionMask::causal(8),
                                    AttentionMask(Brle().append(false, 7).append(true, 1).append(false, 1))};
  s2.trims.push_back(TrimPlan::compute(4, 13, 1, std::span<AttentionMask const>(&a, 1)));
  s2.trims.push_back(TrimPlan::compute(4, 6, 3, b_rows));
  REQUIRE(s2.trims[0].trims_anything());
  s2.rows = {0, 1, 2, 3};
  return {s1, s2};
}

}  // namespace

TEMPLATE_TEST_CASE("LlamaModel on Kokkos gives the host's logits", "[kokkos][model]", float, BFloat16) {
  KSpace const ks;
  LlamaModelOptions opt;
  opt.llama_cpp_activation_rounding = false;  // f32 activations on both spaces
  opt.interleaved_weights = false;
  auto const steps = steps_with_trim();
  // bf16 KV: a K/V value a few f32 ulps apart on the two spaces can round to neighbouring bf16 values (one
  // bf16 ulp is 2^-8 relative), which moves logits of magnitude ~75 by up to a few 1e-3.
  bool const bf16 = std::is_same_v<TestType, BFloat16>;
  double const atol = bf16 ? 1e-2 : 2e-4, rtol = bf16 ? 1e-3 : 2e-4;
  for (std::string const arch : {"llama", "qwen2"}) {
    for (GgmlType const type : {GgmlType::f32, GgmlType::q8_0, GgmlType::q4_1}) {
      INFO("arch " << arch << " weights " << static_cast<int>(type));
      LlamaModel<Host, TestType> host_model(tiny_llama_weights(5, type, arch), Host{}, opt);
      LlamaModel<KSpace, TestType> kokkos_model(tiny_llama_weights(5, type, arch), ks, opt);
      auto const want = run_steps(host_model, Host{}, steps);
      auto const got = run_steps(kokkos_model, ks, steps);
      REQUIRE(got.size() == want.size());
      for (std::size_t i = 0; i < got.size(); ++i) {
        INFO("step " << i);
        CHECK(tolerance_ratio(got[i], want[i], atol, rtol) <= 1.0);
      }
    }
  }
}
