// GPU paged_attention and merge_states against the host implementation (the semantics oracle), on fresh
// random inputs every run: causal (implicit and as rows), window, sink + window, random BRLE rows, tree
// masks; with and without page-trim; ragged batches mixing prefill and decode rows; GQA 1 / 3 / 4 / 8
// (and 12: two decode head blocks); f32 and bf16 KV; head_dim 64, 128 and 256; soft-cap; split-KV.
//
// Tolerances (values in [-1, 1]):
//  * decode-only batches (CUDA-core kernel, f32 arithmetic, bf16 KV widened exactly): |out - host| and
//    |lse - host| <= 2e-4 (f32 summation order and the host's polynomial exp differ);
//  * batches with prefill rows (tensor cores: q, P and f32 K/V rounded to bf16, 8 mantissa bits):
//    max |out - host| <= 2.5e-2, max |lse - host| <= 2.5e-2 and ||out - host|| / ||host|| <= 1e-2;
//  * a token that sees nothing: out exactly 0 and lse exactly -inf in both. NaN never passes; outputs are
//    poisoned with NaN before each call, so an unwritten element fails.
// Registered with gpu_test.hpp's PIECRUST_GPU_TEST (part of piecrust_gpu_tests). The host emulation runs them
// too (gpu_emulated_tests), on shorter sequences and with the decode tolerance for every batch: it has no
// tensor cores, so every token takes the CUDA-core kernel.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include <piecrust/backends/cuda/attention/merge_states.hpp>
#include <piecrust/backends/cuda/attention/paged_attention.hpp>
#include <piecrust/backends/cuda/copy.hpp>
#include <piecrust/backends/cuda/space.hpp>
#include <piecrust/backends/host/host_space.hpp>
#include <piecrust/backends/host/merge_states.hpp>
#include <piecrust/backends/host/paged_attention.hpp>
#include <piecrust/kernels/attention_plan.hpp>
#include <piecrust/kernels/bfloat16.hpp>

#include "gpu_test.hpp"
#include "test_attention_cases.hpp"

namespace {

using namespace piecrust;
using piecrust::gpu_test::emulated;

/// Shorter sequences under the emulation (every GPU thread runs on one CPU core).
test::CaseSpec emulation_sized(test::CaseSpec spec) {
  if (emulated) {
    spec.batch = std::min<std::size_t>(spec.batch, 3);
    spec.max_prefill = std::min<std::size_t>(spec.max_prefill, 12);
    spec.max_kv_before = std::min<std::size_t>(spec.max_kv_before, 60);
  }
  return spec;
}

struct Stats {
  double max_out = 0, max_lse = 0, sq_err = 0, sq_ref = 0;
  std::string problem;
};

/// Compares GPU results with host results (out [tokens][heads][D], lse [tokens][heads]).
Stats compare(std::vector<float> const& out, std::vector<float> const& lse, std::vector<float> const& ref_out,
              std::vector<float> const& ref_lse, std::size_t head_dim) {
  Stats s;
  for (std::size_t i = 0; i < ref_lse.size(); ++i) {
    bool const empty = std::isinf(ref_lse[i]) && ref_lse[i] < 0;
    if (std::isnan(lse[i])) {
      s.problem = "NaN lse at row " + std::to_string(i);
      return s;
    }
    if (empty != (std::isinf(lse[i]) && lse[i] < 0)) {
      s.problem = "row " + std::to_string(i) + ": lse " + std::to_string(lse[i]) + ", host " + std::to_string(ref_lse[i]);
      return s;
    }
    if (!empty) s.max_lse = std::max(s.max_lse, std::fabs(double{lse[i]} - ref_lse[i]));
    for (std::size_t d = 0; d < head_dim; ++d) {
      float const g = out[i * head_dim + d], r = ref_out[i * head_dim + d];
      if (std::isnan(g)) {
        s.problem = "NaN out at row " + std::to_string(i) + " d " + std::to_string(d);
        return s;
      }
      if (empty && g != 0.0f) {
        s.problem = "row " + std::to_string(i) + " sees nothing but out = " + std::to_string(g);
        return s;
      }
      s.max_out = std::max(s.max_out, std::fabs(double{g} - r));
      s.sq_err += (double{g} - r) * (double{g} - r);
      s.sq_ref += double{r} * r;
    }
  }
  return s;
}

template <class T>
std::vector<T> to_kv(std::vector<float> const& f) {
  std::vector<T> v(f.size());
  for (std::size_t i = 0; i < f.size(); ++i) v[i] = T(f[i]);
  return v;
}

/// The fastest host attention path whose arithmetic is f32 on the exact q.
host::detail::AttentionPath exact_host_attention_path() {
  auto paths = host::detail::attention_paths();
  std::erase(paths, host::detail::AttentionPath::avx512_bf16);
  return paths.back();
}

/// Runs one case on the GPU and the host; "" on success, else what went wrong.
template <class T>
std::string run_case(Cuda const& space, test::Case const& c, std::mt19937_64& rng) {
  test::CaseSpec const& sp = c.spec;
  std::size_t const heads = sp.num_kv_heads * sp.group;
  std::size_t const D = sp.head_dim;
  std::size_t const tokens = c.tokens();
  std::vector<float> const q = test::random_floats(tokens * heads * D, rng);  // [tokens][heads][D]
  std::vector<T> const kv = to_kv<T>(test::random_floats(c.num_pages * 2 * sp.page_size * sp.num_kv_heads * D, rng));
  PagedAttentionParams params;
  params.logits_soft_cap = sp.soft_cap;

  // Host oracle, on its fastest path that keeps q in f32 (the avx512_bf16 path rounds q to bf16, a
  // difference of ~5e-4 that is the host's, not the GPU's).
  std::vector<float> ref_out(tokens * heads * D), ref_lse(tokens * heads);
  PagedKv<T const> const host_kv{kv.data(), c.num_pages, sp.page_size, sp.num_kv_heads, D};
  host::detail::ScopedAttentionPath const exact_host(exact_host_attention_path());
  paged_attention(Host{}, ShapedView<float const, 3>(q.data(), tokens, heads, D), host_kv, c.batch(),
                  ShapedView<float, 3>(ref_out.data(), tokens, heads, D), ShapedView<float, 2>(ref_lse.data(), tokens, heads),
                  params, c.selection());

  // GPU, outputs poisoned with NaN (all bytes 0xff).
  auto const d_q = to_device(space, q);
  auto const d_kv = to_device(space, kv);
  Buffer<float, CudaMemory> d_out(tokens * heads * D, space.memory());
  Buffer<float, CudaMemory> d_lse(tokens * heads, space.memory());
  gpu::memset_async(d_out.data(), 0xff, d_out.size_bytes(), space.stream());
  gpu::memset_async(d_lse.data(), 0xff, d_lse.size_bytes(), space.stream());
  PagedKv<T const> const dev_kv{d_kv.data(), c.num_pages, sp.page_size, sp.num_kv_heads, D};
  paged_attention(space, ShapedView<float const, 3>(d_q.data(), tokens, heads, D), dev_kv, c.batch(),
                  ShapedView<float, 3>(d_out.data(), tokens, heads, D), ShapedView<float, 2>(d_lse.data(), tokens, heads),
                  params, c.selection());
  space.fence();
  std::vector<float> const out = to_host(space, d_out);
  std::vector<float> const lse = to_host(space, d_lse);

  bool decode_only = true;
  for (std::size_t b = 0; b < c.kv_last_page_len.size(); ++b) decode_only = decode_only && c.batch().qo_len(b) == 1;
  Stats const s = compare(out, lse, ref_out, ref_lse, D);
  if (!s.problem.empty()) return s.problem;
  double const tol = decode_only || emulated ? 2e-4 : 2.5e-2;
  double const rel = s.sq_ref > 0 ? std::sqrt(s.sq_err / s.sq_ref) : 0.0;
  if (s.max_out > tol || s.max_lse > tol || (tol > 2e-4 && rel > 1e-2)) {
    return "max|out err| " + std::to_string(s.max_out) + ", max|lse err| " + std::to_string(s.max_lse) + ", rel " +
           std::to_string(rel) + " (tolerance " + std::to_string(tol) + ")";
  }
  return {};
}

/// One plan, many layers: paged_attention over plan_attention's plan gives exactly what the unplanned call
/// gives, on two KV pools (two layers) of the same step, and again after another step's plan replaced the
/// staged one in the space's plan arena (the first plan is staged again). "" on success.
template <class T>
std::string run_planned_layers(Cuda const& space, test::Case const& c, test::Case const& other, std::mt19937_64& rng) {
  test::CaseSpec const& sp = c.spec;
  std::size_t const heads = sp.num_kv_heads * sp.group, D = sp.head_dim, tokens = c.tokens();
  auto problem = [&](test::Case const& k) {
    return AttentionProblem{k.tokens(), heads, D, sp.num_kv_heads, k.num_pages, sp.page_size, k.batch(), k.selection()};
  };
  auto const d_q = to_device(space, test::random_floats(tokens * heads * D, rng));  // [tokens][heads][D]
  std::vector<Buffer<T, CudaMemory>> layers;
  for (int l = 0; l < 2; ++l) layers.push_back(to_device(space, to_kv<T>(test::random_floats(c.num_pages * 2 * sp.page_size * sp.num_kv_heads * D, rng))));
  Buffer<float, CudaMemory> d_out(tokens * heads * D, space.memory()), d_lse(tokens * heads, space.memory());
  auto q3 = ShapedView<float const, 3>(d_q.data(), tokens, heads, D);
  auto out3 = ShapedView<float, 3>(d_out.data(), tokens, heads, D);
  auto lse2 = ShapedView<float, 2>(d_lse.data(), tokens, heads);
  auto kv_of = [&](int l) { return PagedKv<T const>{layers[l].data(), c.num_pages, sp.page_size, sp.num_kv_heads, D}; };
  std::vector<std::vector<float>> want_out, want_lse;
  for (int l = 0; l < 2; ++l) {
    paged_attention(space, q3, kv_of(l), c.batch(), out3, lse2, {}, c.selection());
    want_out.push_back(to_host(space, d_out));
    want_lse.push_back(to_host(space, d_lse));
  }
  auto const plan = plan_attention(space, problem(c));
  for (int round = 0; round < 2; ++round) {
    for (int l = 0; l < 2; ++l) {
      gpu::memset_async(d_out.data(), 0xff, d_out.size_bytes(), space.stream());
      paged_attention(space, q3, kv_of(l), plan, out3, lse2);
      if (to_host(space, d_out) != want_out[l] || to_host(space, d_lse) != want_lse[l]) {
        return "planned layer " + std::to_string(l) + " (round " + std::to_string(round) + ") differs from the unplanned call";
      }
    }
    // Another step's plan takes the arena; the first plan must notice and stage itself again.
    auto const second = plan_attention(space, problem(other));
    std::size_t const t2 = other.tokens();
    Buffer<float, CudaMemory> q2(t2 * heads * D, space.memory()), o2(t2 * heads * D, space.memory()), l2(t2 * heads, space.memory());
    gpu::memset_async(q2.data(), 0, q2.size_bytes(), space.stream());
    Buffer<T, CudaMemory> kv2(other.num_pages * 2 * sp.page_size * sp.num_kv_heads * D, space.memory());
    gpu::memset_async(kv2.data(), 0, kv2.size_bytes(), space.stream());
    paged_attention(space, ShapedView<float const, 3>(q2.data(), t2, heads, D),
                    PagedKv<T const>{kv2.data(), other.num_pages, sp.page_size, sp.num_kv_heads, D}, second,
                    ShapedView<float, 3>(o2.data(), t2, heads, D), ShapedView<float, 2>(l2.data(), t2, heads));
  }
  return {};
}

std::string run_merge(Cuda const& space, std::mt19937_64& rng) {
  std::size_t const tokens = 37, states = 5, heads = 6, D = 128;
  std::vector<float> const v = test::random_floats(tokens * states * heads * D, rng);  // [tokens][states][heads][D]
  std::vector<float> s = test::random_floats(tokens * states * heads, rng);            // [tokens][states][heads]
  for (std::size_t i = 0; i < s.size(); ++i) {
    s[i] *= 8.0f;
    if (i % 7 == 3) s[i] = -INFINITY;  // states that saw nothing
  }
  for (std::size_t k = 0; k < states; ++k) s[(2 * states + k) * heads + 1] = -INFINITY;  // a row that saw nothing
  std::vector<float> ref_v(tokens * heads * D), ref_s(tokens * heads);
  merge_states(Host{}, ShapedView<float const, 4>(v.data(), tokens, states, heads, D),
               ShapedView<float const, 3>(s.data(), tokens, states, heads), ShapedView<float, 3>(ref_v.data(), tokens, heads, D),
               ShapedView<float, 2>(ref_s.data(), tokens, heads));
  auto const d_v = to_device(space, v);
  auto const d_s = to_device(space, s);
  Buffer<float, CudaMemory> d_vo(tokens * heads * D, space.memory()), d_so(tokens * heads, space.memory());
  gpu::memset_async(d_vo.data(), 0xff, d_vo.size_bytes(), space.stream());
  gpu::memset_async(d_so.data(), 0xff, d_so.size_bytes(), space.stream());
  merge_states(space, ShapedView<float const, 4>(d_v.data(), tokens, states, heads, D),
               ShapedView<float const, 3>(d_s.data(), tokens, states, heads), ShapedView<float, 3>(d_vo.data(), tokens, heads, D),
               ShapedView<float, 2>(d_so.data(), tokens, heads));
  Stats const st = compare(to_host(space, d_vo), to_host(space, d_so), ref_v, ref_s, D);
  if (!st.problem.empty()) return st.problem;
  if (st.max_out > 1e-5 || st.max_lse > 1e-5) {
    return "merge_states max|v err| " + std::to_string(st.max_out) + ", max|s err| " + std::to_string(st.max_lse);
  }
  return {};
}

/// Bad input is rejected before any GPU work, with a typed error.
std::string run_errors(Cuda const& space) {
  std::vector<std::uint32_t> const qo{0, 1}, kvp{0, 1}, idx{5}, last{1};
  PagedBatch const batch{qo, kvp, idx, last};
  Buffer<float, CudaMemory> q(1 * 4 * 96, space.memory()), out(1 * 4 * 96, space.memory()), lse(4, space.memory());
  Buffer<BFloat16, CudaMemory> kv(2 * 2 * 16 * 1 * 96, space.memory());
  try {
    paged_attention(space, ShapedView<float const, 3>(q.data(), 1, 4, 96), PagedKv<BFloat16 const>{kv.data(), 2, 16, 1, 96},
                    batch, ShapedView<float, 3>(out.data(), 1, 4, 96), ShapedView<float, 2>(lse.data(), 1, 4));
    return "kv_indices[0] = 5 outside a 2-page pool was accepted";
  } catch (OutOfRange const&) {
  }
  std::vector<std::uint32_t> const idx_ok{1};
  try {
    paged_attention(space, ShapedView<float const, 3>(q.data(), 1, 4, 96), PagedKv<BFloat16 const>{kv.data(), 2, 16, 1, 96},
                    PagedBatch{qo, kvp, idx_ok, last}, ShapedView<float, 3>(out.data(), 1, 4, 96),
                    ShapedView<float, 2>(lse.data(), 1, 4));
    return "head_dim 96 was accepted";
  } catch (Unsupported const&) {
  }
  return {};
}

/// Runs `f` and turns an exception into a failure message.
template <class F>
std::string guarded(F&& f) {
  try {
    return f();
  } catch (std::exception const& e) {
    return std::string("threw: ") + e.what();
  }
}

}  // namespace

PIECRUST_GPU_TEST(attention_matches_host_on_random_batches) {
  test::MaskKind const kinds[] = {test::MaskKind::implicit_causal, test::MaskKind::causal_rows, test::MaskKind::window,
                                  test::MaskKind::sink_window,     test::MaskKind::random_brle, test::MaskKind::tree};
  std::size_t const groups[] = {1, 3, 4, 8};
  int n = 0;
  for (test::MaskKind const kind : kinds) {
    for (bool const trim : {false, true}) {
      for (std::size_t const D : {64, 128}) {
        for (bool const bf16 : {false, true}) {
          for (double const decode_share : {1.0, 0.5}) {
            test::CaseSpec spec;
            spec.mask = kind;
            spec.trim = trim;
            spec.head_dim = D;
            spec.group = groups[n % 4];
            spec.num_kv_heads = 1 + n % 3;
            spec.batch = 1 + n % 6;
            spec.decode_share = decode_share;
            spec.page_size = n % 5 == 0 ? 1 : 16;
            spec.soft_cap = n % 7 == 0 ? 5.0f : 0.0f;
            ++n;
            std::string const label = std::string(test::name(kind)) + (trim ? " +trim" : "") + " D" + std::to_string(D) +
                                      (bf16 ? " bf16" : " f32") + " group " + std::to_string(spec.group) +
                                      (decode_share == 1.0 ? " decode" : " mixed") + " page " + std::to_string(spec.page_size);
            std::string const why = guarded([&] {
              test::Case const c = test::make_case(emulation_sized(spec), t.rng());
              return bf16 ? run_case<BFloat16>(t.space(), c, t.rng()) : run_case<float>(t.space(), c, t.rng());
            });
            t.check(why.empty(), label, ": ", why);
          }
        }
      }
    }
  }
}

PIECRUST_GPU_TEST(attention_head_dim_256_matches_host) {
  // Gemma 3: 4 query heads on one KV head of 256 (f32 rows take two 16-byte loads per lane in the decode
  // kernel); decode and mixed batches, causal and windowed, trimmed and not, f32 and bf16.
  for (test::MaskKind const kind : {test::MaskKind::implicit_causal, test::MaskKind::window}) {
    for (bool const trim : {false, true}) {
      for (bool const bf16 : {false, true}) {
        for (double const decode_share : {1.0, 0.5}) {
          test::CaseSpec spec;
          spec.mask = kind;
          spec.trim = trim;
          spec.head_dim = 256;
          spec.group = 4;
          spec.num_kv_heads = 1;
          spec.batch = 3;
          spec.decode_share = decode_share;
          spec.page_size = 16;
          std::string const label = std::string(test::name(kind)) + (trim ? " +trim" : "") + " D256" +
                                    (bf16 ? " bf16" : " f32") + (decode_share == 1.0 ? " decode" : " mixed");
          std::string const why = guarded([&] {
            test::Case const c = test::make_case(emulation_sized(spec), t.rng());
            return bf16 ? run_case<BFloat16>(t.space(), c, t.rng()) : run_case<float>(t.space(), c, t.rng());
          });
          t.check(why.empty(), label, ": ", why);
        }
      }
    }
  }
}

PIECRUST_GPU_TEST(attention_split_kv_and_wide_groups_match_host) {
  {  // One long decode request: its KV tiles are split over several CTAs and merged.
    test::CaseSpec spec;
    spec.batch = 1;
    spec.decode_share = 1.0;
    spec.max_kv_before = emulated ? 2000 : 20000;
    spec.group = 8;
    std::string const why = guarded([&] { return run_case<BFloat16>(t.space(), test::make_case(spec, t.rng()), t.rng()); });
    t.check(why.empty(), "split-KV decode B=1 L<=20000 bf16 D128 group 8: ", why);
  }
  {  // One long prefill request with sink + window rows: split prefill items.
    test::CaseSpec spec;
    spec.batch = 1;
    spec.decode_share = 0.0;
    spec.max_prefill = emulated ? 32 : 1000;
    spec.max_kv_before = emulated ? 300 : 2000;
    spec.mask = test::MaskKind::sink_window;
    std::string const why = guarded([&] { return run_case<BFloat16>(t.space(), test::make_case(spec, t.rng()), t.rng()); });
    t.check(why.empty(), "split-KV prefill sink+window bf16 D128 group 4: ", why);
  }
  {  // Group 12: two decode head blocks per KV head; 5 prefill tokens per tile.
    test::CaseSpec spec;
    spec.group = 12;
    spec.head_dim = 64;
    spec.decode_share = 0.5;
    std::string const why = guarded([&] { return run_case<float>(t.space(), test::make_case(emulation_sized(spec), t.rng()), t.rng()); });
    t.check(why.empty(), "group 12 mixed f32 D64: ", why);
  }
}

PIECRUST_GPU_TEST(attention_planned_once_per_step_matches_unplanned) {
  test::CaseSpec spec;
  spec.mask = test::MaskKind::sink_window;
  spec.trim = true;
  test::CaseSpec other = spec;
  other.batch = 2;
  other.mask = test::MaskKind::implicit_causal;
  std::string const why = guarded([&] {
    test::Case const c = test::make_case(emulation_sized(spec), t.rng());
    other.num_kv_heads = c.spec.num_kv_heads;
    test::Case const o = test::make_case(emulation_sized(other), t.rng());
    std::string const f = run_planned_layers<float>(t.space(), c, o, t.rng());
    return f.empty() ? run_planned_layers<BFloat16>(t.space(), c, o, t.rng()) : f;
  });
  t.check(why.empty(), why);
}

PIECRUST_GPU_TEST(attention_merge_states_matches_host) {
  std::string const why = guarded([&] { return run_merge(t.space(), t.rng()); });
  t.check(why.empty(), why);
}

PIECRUST_GPU_TEST(attention_bad_input_rejected_before_launch) {
  std::string const why = guarded([&] { return run_errors(t.space()); });
  t.check(why.empty(), why);
}
