// Every non-attention Cuda kernel against the host implementation (the oracle) on fresh random inputs
// (never zeros). Tolerances are stated per test, with the reason. Samplers: exact agreement with the
// host's token for the same (seed, row, step), chi-square against the exact filtered distribution,
// masks always respected, reproducibility.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include <piecrust/backends/cuda.hpp>
#include <piecrust/backends/host/append_kv.hpp>
#include <piecrust/backends/host/dequantize.hpp>
#include <piecrust/backends/host/embedding.hpp>
#include <piecrust/backends/host/gemm.hpp>
#include <piecrust/backends/host/probe.hpp>
#include <piecrust/backends/host/rms_norm.hpp>
#include <piecrust/backends/host/rope.hpp>
#include <piecrust/backends/host/sample.hpp>
#include <piecrust/backends/host/swiglu.hpp>
#include <piecrust/kernels/reference/sampling.hpp>
#include <piecrust/backends/host.hpp>
#include <piecrust/model/llama_model.hpp>
#include <piecrust/model/tiny_llama.hpp>

#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../support/chi_square.hpp"
#include "gpu_test.hpp"

using namespace piecrust;
using piecrust::gpu_test::tolerance_ratio;

using piecrust::gpu_test::emulated;  // smaller sizes under the host emulation

namespace {

Host const& host_space() {
  static Host const h(2);
  return h;
}

template <class T>
Buffer<T, CudaMemory> dev(Cuda const& space, std::vector<T> const& v) {
  return to_device(space, std::span<T const>(v));
}

/// Random GGUF bytes of a [rows][cols] matrix of `type`: random scales/minimums in a sane range and
/// random quants (every bit pattern of a quant is valid), random f32/f16/bf16 values.
std::vector<std::byte> random_weights(gpu_test::Test& t, WeightType type, std::size_t rows, std::size_t cols) {
  WeightMatrix const shape{type, nullptr, rows, cols};
  std::vector<std::byte> out(shape.size_bytes());
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<float> const vals = t.random_floats(rows * cols);
  auto put16 = [&](std::size_t off, std::uint16_t v) { std::memcpy(out.data() + off, &v, 2); };
  std::vector<float> const scales = t.random_floats(2 * rows * (cols / 32 + 1), 0.002f, 0.05f);
  std::size_t si = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    std::size_t const base = r * shape.row_bytes();
    for (std::size_t c = 0; c < cols; ++c) {
      float const v = vals[r * cols + c];
      switch (type) {
        case WeightType::f32:
          std::memcpy(out.data() + base + 4 * c, &v, 4);
          break;
        case WeightType::f16:
          put16(base + 2 * c, Half::from_float(v));
          break;
        case WeightType::bf16:
          put16(base + 2 * c, BFloat16::from_float(v));
          break;
        default:
          break;
      }
    }
    if (type == WeightType::q8_0) {
      for (std::size_t b = 0; b < cols / 32; ++b) {
        std::size_t const off = base + b * sizeof(BlockQ8_0);
        put16(off, Half::from_float(scales[si++]));
        for (std::size_t i = 0; i < 32; ++i) out[off + 2 + i] = static_cast<std::byte>(byte(t.rng()));
      }
    }
    if (type == WeightType::q4_1) {
      for (std::size_t b = 0; b < cols / 32; ++b) {
        std::size_t const off = base + b * sizeof(BlockQ4_1);
        put16(off, Half::from_float(scales[si++]));
        put16(off + 2, Half::from_float(-scales[si++] * 8.0f));
        for (std::size_t i = 0; i < 16; ++i) out[off + 4 + i] = static_cast<std::byte>(byte(t.rng()));
      }
    }
  }
  return out;
}

constexpr WeightType all_types[] = {WeightType::f32, WeightType::f16, WeightType::bf16, WeightType::q8_0,
                                    WeightType::q4_1};

}  // namespace

// ---- space, memory, copies -----------------------------------------------------------------------

PIECRUST_GPU_TEST(copy_round_trip_and_scratch_reuse) {
  Cuda const& s = t.space();
  for (std::size_t n : {1u, 1000u, 1u << 20}) {
    auto const v = t.random_floats(n);
    auto const d = dev(s, v);
    t.check(to_host(s, d) == v, "round trip of ", n, " floats");
  }
  gpu::Scratch& scratch = s.scratch();
  for (std::size_t n : {10u, 100000u, 5u}) {  // grows, then shrinks: contents of each frame arrive intact
    std::vector<std::uint32_t> ids(n);
    for (auto& x : ids) x = static_cast<std::uint32_t>(t.rng()());
    scratch.begin();
    auto const a = scratch.workspace<float>(3);
    auto const b = scratch.upload(std::span<std::uint32_t const>(ids));
    scratch.commit();
    (void)a;
    std::vector<std::uint32_t> back(n);
    copy_to_host(s, std::span<std::uint32_t>(back), std::span<std::uint32_t const>(scratch.get(b), n));
    t.check(back == ids, "scratch upload of ", n, " ids");
  }
  Buffer<int, CudaMemory> empty;
  t.check(empty.data() == nullptr && empty.size() == 0, "empty device buffer");
  bool threw = false;
  try {
    std::vector<float> small(3);
    auto d = dev(s, t.random_floats(4));
    copy_async(s, std::span<float>(small), device_span(d));
  } catch (InvalidArgument const&) {
    threw = true;
  }
  t.check(threw, "copy_async with mismatched sizes throws InvalidArgument");
}

// ---- model ops ------------------------------------------------------------------------------------

// Tolerance: the sum of squares is reduced in a different order (tree vs sequential): relative error
// of the scale ~ dim * 2^-24 in the worst case; 1e-5 relative covers dim up to ~8k with margin.
PIECRUST_GPU_TEST(rms_norm_matches_host) {
  Cuda const& s = t.space();
  for (std::size_t dim : {576u, 4096u, 100u}) {
    std::size_t const rows = 7;
    auto const x = t.random_floats(rows * dim, -3.0f, 3.0f);
    auto const w = t.random_floats(dim, 0.5f, 1.5f);
    std::vector<float> want(rows * dim);
    rms_norm(host_space(), ShapedView<float const, 2>(x.data(), rows, dim), ShapedView<float const, 1>(w.data(), dim),
             ShapedView<float, 2>(want.data(), rows, dim), 1e-6f);
    auto dx = dev(s, x);
    auto const dw = dev(s, w);
    auto dout = dev(s, t.random_floats(rows * dim));
    rms_norm(s, dx.view(rows, dim), dw.view(dim), dout.view(rows, dim), 1e-6f);
    double const r = tolerance_ratio(to_host(s, dout), want, 1e-6, 1e-5);
    t.check(r <= 1.0, "rms_norm dim ", dim, ": tolerance ratio ", r);
    rms_norm(s, dx.view(rows, dim), dw.view(dim), dx.view(rows, dim), 1e-6f);  // out aliases x
    double const ra = tolerance_ratio(to_host(s, dx), want, 1e-6, 1e-5);
    t.check(ra <= 1.0, "rms_norm in place dim ", dim, ": tolerance ratio ", ra);
  }
}

// Tolerance: the residual is one f32 add on both sides (exact); the normalized output as rms_norm.
PIECRUST_GPU_TEST(fused_add_rms_norm_matches_host) {
  Cuda const& s = t.space();
  std::size_t const rows = 5, dim = 2048;
  auto x = t.random_floats(rows * dim, -2.0f, 2.0f);
  auto res = t.random_floats(rows * dim, -2.0f, 2.0f);
  auto const w = t.random_floats(dim, 0.5f, 1.5f);
  auto dx = dev(s, x);
  auto dres = dev(s, res);
  auto const dw = dev(s, w);
  fused_add_rms_norm(host_space(), ShapedView<float, 2>(x.data(), rows, dim),
                     ShapedView<float, 2>(res.data(), rows, dim), ShapedView<float const, 1>(w.data(), dim));
  fused_add_rms_norm(s, dx.view(rows, dim), dres.view(rows, dim), dw.view(dim));
  t.check(to_host(s, dres) == res, "fused_add_rms_norm: residual differs from the host (expected bit-exact)");
  double const r = tolerance_ratio(to_host(s, dx), x, 1e-6, 1e-5);
  t.check(r <= 1.0, "fused_add_rms_norm: tolerance ratio ", r);
}

// Tolerance: the same double-precision angles and f32 cos/sin, the same separately rounded products:
// equal up to the last bit of cos/sin (1 ulp of f32 on each factor): 1e-6 relative + 1e-6 absolute.
PIECRUST_GPU_TEST(rope_matches_host) {
  Cuda const& s = t.space();
  std::size_t const tokens = 9, heads = 3;
  for (RopeStyle style : {RopeStyle::adjacent_pairs, RopeStyle::half_split}) {
    for (bool llama3 : {false, true}) {
      for (std::size_t head_dim : {64u, 128u}) {
        RopeParams p;
        p.style = style;
        p.theta = llama3 ? 500000.0f : 10000.0f;
        p.rotary_dim = head_dim == 128 ? 96 : 0;
        if (llama3) p.llama3 = {8.0f, 1.0f, 4.0f, 8192};
        auto x = t.random_floats(tokens * heads * head_dim, -2.0f, 2.0f);
        std::vector<std::uint32_t> pos(tokens);
        std::uniform_int_distribution<std::uint32_t> d(0, 1u << 20);
        for (auto& q : pos) q = d(t.rng());
        pos[0] = 0;
        pos[1] = (1u << 24) + 3;  // past f32's integer range: angles stay double
        auto dx = dev(s, x);
        rope(host_space(), ShapedView<float, 3>(x.data(), tokens, heads, head_dim), pos, p);
        rope(s, dx.view(tokens, heads, head_dim), pos, p);
        double const r = tolerance_ratio(to_host(s, dx), x, 1e-6, 1e-6);
        t.check(r <= 1.0, "rope style ", static_cast<int>(style), " llama3 ", llama3, " head_dim ", head_dim,
                ": tolerance ratio ", r);
      }
    }
  }
}

// Tolerance: expf (device, <= 2 ulp) against std::exp (host): 2e-6 relative.
PIECRUST_GPU_TEST(swiglu_matches_host) {
  Cuda const& s = t.space();
  std::size_t const rows = 3, dim = 5000;
  auto const g = t.random_floats(rows * dim, -8.0f, 8.0f);
  auto const u = t.random_floats(rows * dim, -2.0f, 2.0f);
  std::vector<float> want(rows * dim);
  swiglu(host_space(), ShapedView<float const, 2>(g.data(), rows, dim), ShapedView<float const, 2>(u.data(), rows, dim),
         ShapedView<float, 2>(want.data(), rows, dim));
  auto const dg = dev(s, g);
  auto du = dev(s, u);
  auto dout = dev(s, t.random_floats(rows * dim));
  swiglu(s, dg.view(rows, dim), du.view(rows, dim), dout.view(rows, dim));
  double const r = tolerance_ratio(to_host(s, dout), want, 1e-7, 2e-6);
  t.check(r <= 1.0, "swiglu: tolerance ratio ", r);
  swiglu(s, dg.view(rows, dim), du.view(rows, dim), du.view(rows, dim));  // out aliases up
  double const ra = tolerance_ratio(to_host(s, du), want, 1e-7, 2e-6);
  t.check(ra <= 1.0, "swiglu in place: tolerance ratio ", ra);
}

// Exact: the same f32 -> T conversion (BFloat16::from_float) on both sides; untouched slots unchanged.
template <class T>
void append_kv_case(gpu_test::Test& t) {
  Cuda const& s = t.space();
  std::size_t const pages = 6, page_size = 16, heads = 2, head_dim = 64, tokens = 20;
  PagedKv<T> shape{nullptr, pages, page_size, heads, head_dim};
  std::vector<T> pool(shape.size());
  auto const fill = t.random_floats(pool.size());
  for (std::size_t i = 0; i < pool.size(); ++i) pool[i] = from_float<T>(fill[i]);
  std::vector<std::uint32_t> slots(pages * page_size);
  for (std::size_t i = 0; i < slots.size(); ++i) slots[i] = static_cast<std::uint32_t>(i);
  std::shuffle(slots.begin(), slots.end(), t.rng());
  slots.resize(tokens);
  auto const k = t.random_floats(tokens * heads * head_dim);
  auto const v = t.random_floats(tokens * heads * head_dim);
  auto dpool = dev(s, pool);
  auto const dk = dev(s, k);
  auto const dv = dev(s, v);
  PagedKv<T> hkv = shape;
  hkv.data = pool.data();
  append_kv(host_space(), hkv, ShapedView<float const, 3>(k.data(), tokens, heads, head_dim),
            ShapedView<float const, 3>(v.data(), tokens, heads, head_dim), slots);
  PagedKv<T> dkv = shape;
  dkv.data = dpool.data();
  append_kv(s, dkv, dk.view(tokens, heads, head_dim), dv.view(tokens, heads, head_dim), slots);
  auto const got = to_host(s, dpool);
  t.check(std::memcmp(got.data(), pool.data(), pool.size() * sizeof(T)) == 0, "append_kv (",
          sizeof(T) == 4 ? "f32" : "bf16", " pool) differs from the host");
}
PIECRUST_GPU_TEST(append_kv_matches_host) {
  append_kv_case<float>(t);
  append_kv_case<BFloat16>(t);
}

// Exact: the device decode performs the host's operations (d * q, then + m) with no fused rounding.
PIECRUST_GPU_TEST(embedding_and_dequantize_match_host) {
  Cuda const& s = t.space();
  std::size_t const vocab = 300, dim = 256, tokens = 17;
  for (WeightType type : all_types) {
    auto const bytes = random_weights(t, type, vocab, dim);
    auto const dbytes = dev(s, bytes);
    WeightMatrix const hw{type, bytes.data(), vocab, dim};
    WeightMatrix const dw{type, dbytes.data(), vocab, dim};
    std::vector<std::uint32_t> ids(tokens);
    std::uniform_int_distribution<std::uint32_t> d(0, vocab - 1);
    for (auto& i : ids) i = d(t.rng());
    ids[0] = vocab - 1;
    std::vector<float> want(tokens * dim);
    embedding(host_space(), hw, ids, ShapedView<float, 2>(want.data(), tokens, dim));
    auto dout = dev(s, t.random_floats(tokens * dim));
    embedding(s, dw, ids, dout.view(tokens, dim));
    t.check(to_host(s, dout) == want, "embedding ", weight_type_name(type), " differs from the host");

    std::vector<float> full(vocab * dim);
    dequantize(host_space(), hw, ShapedView<float, 2>(full.data(), vocab, dim));
    auto dfull = dev(s, t.random_floats(vocab * dim));
    dequantize(s, dw, dfull.view(vocab, dim));
    t.check(to_host(s, dfull) == full, "dequantize ", weight_type_name(type), " differs from the host");

    Buffer<BFloat16, CudaMemory> dbf(vocab * dim, s.memory());
    gpu::dequantize_to_bf16(s, dw, dbf.data());
    auto const bf = to_host(s, dbf);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < full.size(); ++i) bad += bf[i].bits != BFloat16::from_float(full[i]) ? 1 : 0;
    t.check(bad == 0, "dequantize_to_bf16 ", weight_type_name(type), ": ", bad,
            " elements differ from BFloat16(host f32)");
  }
  bool threw = false;
  try {
    std::vector<std::uint32_t> bad_ids{0, 300};
    auto dout = dev(s, t.random_floats(2 * dim));
    auto const bytes = random_weights(t, WeightType::f32, vocab, dim);
    auto const dbytes = dev(s, bytes);
    embedding(s, WeightMatrix{WeightType::f32, dbytes.data(), vocab, dim}, bad_ids, dout.view(2, dim));
  } catch (OutOfRange const&) {
    threw = true;
  }
  t.check(threw, "embedding with id >= vocab throws OutOfRange");
}

// Tolerances, as |gpu - host| <= tol * sum_k |x_k w_k| + 1e-6 per element (a bound on rounding of a
// dot product): f32 weights (Sgemm) and the quantized GEMV (m <= 8, f32 accumulation of exact decoded
// weights): 2e-5 (different summation orders, k <= 4096). f16/bf16 weights: x rounded to 16 bits
// (relative 2^-11 / 2^-9): 2e-3 / 4e-3. Quantized panels (m > 8): x and W both rounded to bf16: 8e-3.
// Under the host emulation every m takes the direct kernel (no cuBLAS), well inside these bounds.
PIECRUST_GPU_TEST(gemm_matches_host) {
  Cuda const& s = t.space();
  std::size_t const n = emulated ? 96 : 384, k = emulated ? 256 : 512;
  for (WeightType type : all_types) {
    auto const bytes = random_weights(t, type, n, k);
    auto const dbytes = dev(s, bytes);
    WeightMatrix const hw{type, bytes.data(), n, k};
    WeightMatrix const dw{type, dbytes.data(), n, k};
    std::vector<float> wf(n * k);
    dequantize(host_space(), hw, ShapedView<float, 2>(wf.data(), n, k));
    for (std::size_t m : {std::size_t{1}, std::size_t{5}, std::size_t{emulated ? 17 : 40}}) {
      for (float beta : {0.0f, 1.0f}) {
        auto const x = t.random_floats(m * k, -2.0f, 2.0f);
        auto y0 = t.random_floats(m * n);
        if (beta == 0.0f) y0[0] = std::numeric_limits<float>::quiet_NaN();  // beta = 0 ignores old contents
        std::vector<float> want = y0;
        gemm(host_space(), ShapedView<float const, 2>(x.data(), m, k), hw, ShapedView<float, 2>(want.data(), m, n),
             beta);
        auto const dx = dev(s, x);
        auto dy = dev(s, y0);
        gemm(s, dx.view(m, k), dw, dy.view(m, n), beta);
        auto const got = to_host(s, dy);
        bool const quant = type == WeightType::q8_0 || type == WeightType::q4_1;
        double const tol = type == WeightType::f32 || (quant && m <= 8) ? 2e-5
                           : type == WeightType::f16                    ? 2e-3
                           : type == WeightType::bf16                   ? 4e-3
                                                                        : 8e-3;
        double worst = 0;
        for (std::size_t i = 0; i < m; ++i) {
          for (std::size_t o = 0; o < n; ++o) {
            double scale = 0;
            for (std::size_t c = 0; c < k; ++c) scale += std::abs(double{x[i * k + c]} * wf[o * k + c]);
            double const err = std::abs(double{got[i * n + o]} - want[i * n + o]);
            double const r = std::isnan(err) ? INFINITY : err / (tol * scale + 1e-6);
            worst = std::max(worst, r);
          }
        }
        t.check(worst <= 1.0, "gemm ", weight_type_name(type), " m ", m, " beta ", beta, ": tolerance ratio ", worst);
      }
    }
  }
}

// ---- sampling -------------------------------------------------------------------------------------

namespace {

std::vector<SamplingParams> all_samplers() {
  return {SamplingParams::greedy(),
          SamplingParams::multinomial(),
          SamplingParams::with_temperature(Temperature{0.7f}),
          SamplingParams::top_k_of(TopK{7}, Temperature{0.8f}),
          SamplingParams::top_k_of(TopK{1}),
          SamplingParams::top_p_of(TopP{0.8f}, Temperature{1.3f}),
          SamplingParams::top_p_of(TopP{0.999f}),
          SamplingParams::min_p_of(MinP{0.1f}, Temperature{1.0f}),
          SamplingParams::min_p_of(MinP{0.0f}),
          SamplingParams::top_k_top_p_of(TopK{12}, TopP{0.7f}, Temperature{1.1f}),
          SamplingParams::top_k_top_p_of(TopK{200}, TopP{0.95f})};
}

/// A mask allowing each id with probability allow_fraction. With `row` (that row's logits), at least one
/// allowed id has a finite logit: a row whose allowed logits are all -inf has no distribution (probe.hpp).
LogitMask random_mask(gpu_test::Test& t, std::size_t vocab, double allow_fraction, float const* row = nullptr) {
  std::bernoulli_distribution allow(allow_fraction);
  std::vector<bool> a(vocab);
  bool usable = false;
  for (std::size_t i = 0; i < vocab; ++i) {
    a[i] = allow(t.rng());
    usable = usable || (a[i] && (row == nullptr || std::isfinite(row[i])));
  }
  if (!usable) {
    std::size_t i = 0;
    while (row != nullptr && !std::isfinite(row[i])) ++i;
    a[i] = true;
  }
  Brle bits;
  for (bool const b : a) bits.append(b);
  return LogitMask(std::move(bits));
}

/// Logits with structure: distinct values, a run of exact ties at the top, some -inf.
std::vector<float> random_logits(gpu_test::Test& t, std::size_t rows, std::size_t vocab, bool ties) {
  auto l = t.random_floats(rows * vocab, -4.0f, 4.0f);
  if (ties) {
    std::uniform_int_distribution<std::size_t> d(0, vocab - 1);
    for (std::size_t r = 0; r < rows; ++r) {
      for (int j = 0; j < 6; ++j) l[r * vocab + d(t.rng())] = 4.5f;    // tied maxima
      for (int j = 0; j < 20; ++j) l[r * vocab + d(t.rng())] = 1.25f;  // a tie block inside top-k / top-p
      l[r * vocab + d(t.rng())] = -std::numeric_limits<float>::infinity();
    }
  }
  return l;
}

struct SampleRun {
  std::vector<std::uint32_t> host_tokens;
  std::vector<std::uint32_t> gpu_tokens;
};

SampleRun run_both(gpu_test::Test& t, std::vector<float> const& logits, std::size_t rows, std::size_t vocab,
                   std::vector<SamplingParams> const& params, std::vector<LogitMask> const& masks,
                   std::vector<SampleKey> const& keys) {
  SampleRun out{std::vector<std::uint32_t>(rows), std::vector<std::uint32_t>(rows)};
  sample(host_space(), ShapedView<float const, 2>(logits.data(), rows, vocab), params, masks, keys, out.host_tokens);
  auto const dl = dev(t.space(), logits);
  Buffer<std::uint32_t, CudaMemory> dout(rows, t.space().memory());
  sample(t.space(), dl.view(rows, vocab), params, masks, keys, device_span(dout));
  out.gpu_tokens = to_host(t.space(), dout);
  return out;
}

}  // namespace

// The kept set is the host's exactly and the draw uses the same Philox u, so tokens agree except when
// u falls within float rounding of a CDF boundary (device expf vs host std::exp): allowed at most
// 1 in 500 rows for the continuous samplers, none for greedy.
PIECRUST_GPU_TEST(sample_matches_host_token_for_token) {
  std::vector<std::size_t> const vocabs =
      emulated ? std::vector<std::size_t>{50, 3000, 40000} : std::vector<std::size_t>{50, 5000, 128256};
  for (std::size_t vocab : vocabs) {
    for (bool masked : {false, true}) {
      for (SamplingParams const& p : all_samplers()) {
        std::size_t const rows = emulated ? (vocab > 10000 ? 4 : 24) : (vocab > 10000 ? 24 : 96);
        auto const logits = random_logits(t, rows, vocab, true);
        std::vector<SamplingParams> params(rows, p);
        std::vector<LogitMask> masks;
        if (masked) {
          for (std::size_t r = 0; r < rows; ++r) masks.push_back(r % 3 == 2 ? LogitMask{} : random_mask(t, vocab, 0.6, &logits[r * vocab]));
        }
        std::vector<SampleKey> keys(rows);
        for (std::size_t r = 0; r < rows; ++r) keys[r] = {t.rng()(), t.rng()(), r};
        SampleRun const run = run_both(t, logits, rows, vocab, params, masks, keys);
        std::size_t mismatches = 0, forbidden = 0;
        for (std::size_t r = 0; r < rows; ++r) {
          mismatches += run.gpu_tokens[r] != run.host_tokens[r] ? 1 : 0;
          bool const ok = run.gpu_tokens[r] < vocab && (masks.empty() || masks[r].allows(run.gpu_tokens[r]));
          forbidden += ok ? 0 : 1;
        }
        std::size_t const allowed_mismatches = p.kind == SamplingKind::greedy ? 0 : rows / 500;
        t.check(mismatches <= allowed_mismatches, "sample ", sampling_kind_name(p.kind), " vocab ", vocab, " masked ",
                masked, ": ", mismatches, " of ", rows, " rows differ from the host");
        t.check(forbidden == 0, "sample ", sampling_kind_name(p.kind), ": ", forbidden,
                " forbidden or out-of-range tokens");
      }
    }
  }
}

// Chi-square at p = 1e-4 against the reference's exact filtered distribution (8000 draws of one row,
// steps 0..7999), ids outside the support never drawn (as tests/unit/test_kernel_sampling.cpp), and the
// host's token for every one of those keys (at most 1 in 500 may differ, see above). The host emulation
// makes 150 draws and checks the support and the host's tokens only (too few draws for chi-square).
PIECRUST_GPU_TEST(sample_chi_square_every_sampler) {
  std::size_t const vocab = 48, draws = emulated ? 150 : 8000;
  auto const row = t.random_floats(vocab, -3.0f, 3.0f);
  std::vector<float> logits(draws * vocab);  // [draws][vocab] the same row
  for (std::size_t i = 0; i < draws; ++i)
    std::copy(row.begin(), row.end(), logits.begin() + static_cast<std::ptrdiff_t>(i * vocab));
  auto const dl = dev(t.space(), logits);
  for (bool masked : {false, true}) {
    LogitMask const mask = masked ? random_mask(t, vocab, 0.7) : LogitMask{};
    for (SamplingParams const& p : all_samplers()) {
      auto const dist = reference::filtered_distribution(row, p, mask);
      std::vector<SamplingParams> params(draws, p);
      std::vector<LogitMask> masks(masked ? draws : 0, mask);
      std::vector<SampleKey> keys(draws);
      std::uint64_t const seed = t.rng()();
      for (std::size_t i = 0; i < draws; ++i) keys[i] = {seed, 7, i};
      std::vector<std::uint32_t> got(draws);  // host memory: the call copies back and waits
      sample(t.space(), dl.view(draws, vocab), params, masks, keys, got);
      std::vector<std::uint32_t> want(draws);
      sample(host_space(), ShapedView<float const, 2>(logits.data(), draws, vocab), params, masks, keys, want);
      std::size_t mismatches = 0;
      for (std::size_t i = 0; i < draws; ++i) mismatches += got[i] != want[i] ? 1 : 0;
      std::size_t const allowed_mismatches = p.kind == SamplingKind::greedy ? 0 : draws / 500;
      t.check(mismatches <= allowed_mismatches, "sample ", sampling_kind_name(p.kind), " masked ", masked, ": ",
              mismatches, " of ", draws, " draws differ from the host's");
      std::vector<double> counts(vocab, 0.0);
      bool outside = false;
      for (auto id : got) {
        if (id >= vocab) {
          outside = true;
          continue;
        }
        counts[id] += 1;
      }
      test::DrawsFit const f = test::draws_fit(dist, counts, 3.719);  // p = 1e-4
      t.check(!outside && !f.outside, "sample ", sampling_kind_name(p.kind), " masked ", masked,
              ": drew an id outside the filtered support");
      if (!emulated) {
        t.check(f.fits(1e-4), "sample ", sampling_kind_name(p.kind), " masked ", masked, ": chi-square ", f.chi,
                " (critical ", f.critical, ", df ", f.df, "); ids expected ", f.rare_expected, " times in all drawn ",
                f.rare_count, " times (tail ", f.rare_tail, ")");
      }
    }
  }
}

// Same inputs and keys: the same tokens, run after run (fixed-point masses, ordered scans); a row's
// token depends on its key, not on its position in the batch.
PIECRUST_GPU_TEST(sample_is_reproducible) {
  std::size_t const rows = emulated ? 8 : 32, vocab = emulated ? 4000 : 32000;
  auto const logits = random_logits(t, rows, vocab, true);
  auto const dl = dev(t.space(), logits);
  for (SamplingParams const& p : all_samplers()) {
    std::vector<SamplingParams> params(rows, p);
    std::vector<SampleKey> keys(rows);
    for (std::size_t r = 0; r < rows; ++r) keys[r] = {1234, 100 + r, 9};
    std::vector<std::uint32_t> a(rows), b(rows);
    sample(t.space(), dl.view(rows, vocab), params, {}, keys, a);
    sample(t.space(), dl.view(rows, vocab), params, {}, keys, b);
    t.check(a == b, "sample ", sampling_kind_name(p.kind), ": two runs differ");
    // Row 5 alone, at batch position 0, with its key: the same token.
    std::vector<std::uint32_t> one(1);
    sample(t.space(), ShapedView<float const, 2>(dl.data() + 5 * vocab, 1, vocab), std::span(params).subspan(0, 1), {},
           std::span(keys).subspan(5, 1), one);
    t.check(one[0] == a[5], "sample ", sampling_kind_name(p.kind), ": token depends on the batch position");
  }
}

// Logit bias and penalties (LogitEdits applied to a device copy of each edited row): the host's tokens, with
// the same allowance as above. Each row's window holds its largest logits, so the penalties change the draw.
PIECRUST_GPU_TEST(sample_with_penalties_and_bias_matches_host) {
  std::vector<std::size_t> const vocabs = emulated ? std::vector<std::size_t>{50, 3000} : std::vector<std::size_t>{50, 5000, 128256};
  for (std::size_t vocab : vocabs) {
    std::size_t const rows = emulated ? 6 : 64;
    auto const logits = random_logits(t, rows, vocab, true);
    std::vector<std::vector<std::uint32_t>> recent(rows);
    std::vector<std::vector<LogitBias>> bias(rows);
    std::vector<SampleRowInputs> inputs(rows);
    std::uniform_int_distribution<std::uint32_t> any_id(0, static_cast<std::uint32_t>(vocab - 1));
    for (std::size_t r = 0; r < rows; ++r) {
      for (std::uint32_t i = 0; i < vocab; ++i) {
        if (logits[r * vocab + i] >= 3.5f) recent[r].push_back(i);
      }
      for (int j = 0; j < 20; ++j) recent[r].push_back(any_id(t.rng()));
      if (r % 2 == 0) {
        std::uint32_t const a = any_id(t.rng());
        bias[r].push_back({a, 1.5f});
        if (a + 1 < vocab) bias[r].push_back({a + 1, -std::numeric_limits<float>::infinity()});
      }
      inputs[r] = SampleRowInputs{recent[r], bias[r]};
    }
    for (SamplingParams const& base : all_samplers()) {
      std::vector<SamplingParams> params(rows, base.with_penalties(Penalties{1.6f, 0.4f, 0.3f, 64}));
      params[rows - 1] = base;  // one row without penalties (and maybe no bias) in the same call
      std::vector<SampleKey> keys(rows);
      for (std::size_t r = 0; r < rows; ++r) keys[r] = {t.rng()(), t.rng()(), r};
      std::vector<std::uint32_t> want(rows), got(rows);
      sample(host_space(), ShapedView<float const, 2>(logits.data(), rows, vocab), params, {}, keys, inputs, want);
      auto const dl = dev(t.space(), logits);
      sample(t.space(), dl.view(rows, vocab), params, {}, keys, inputs, got);
      std::size_t mismatches = 0;
      for (std::size_t r = 0; r < rows; ++r) mismatches += got[r] != want[r] ? 1 : 0;
      std::size_t const allowed_mismatches = base.kind == SamplingKind::greedy ? 0 : rows / 500;
      t.check(mismatches <= allowed_mismatches, "sample with penalties ", sampling_kind_name(base.kind), " vocab ", vocab, ": ",
              mismatches, " of ", rows, " rows differ from the host");
    }
  }
}

PIECRUST_GPU_TEST(sample_rejects_host_logits_and_bad_params) {
  std::size_t const rows = 2, vocab = 100;
  auto const logits = t.random_floats(rows * vocab);
  std::vector<SamplingParams> params(rows, SamplingParams::top_k_of(TopK{5}));
  std::vector<SampleKey> keys(rows);
  std::vector<std::uint32_t> out(rows);
  bool threw = false;
  try {
    sample(t.space(), ShapedView<float const, 2>(logits.data(), rows, vocab), params, {}, keys, out);
  } catch (InvalidArgument const&) {
    threw = true;
  }
  t.check(threw, "sample with host logits throws InvalidArgument");
  auto const dl = dev(t.space(), logits);
  params[1].top_k = 0;
  threw = false;
  try {
    sample(t.space(), dl.view(rows, vocab), params, {}, keys, out);
  } catch (InvalidArgument const&) {
    threw = true;
  }
  t.check(threw, "sample with top_k = 0 throws InvalidArgument");
}

// ---- probes ---------------------------------------------------------------------------------------

// Ids exact (the token order is deterministic, ties included); probabilities 1e-5 relative + 1e-9
// absolute (expf vs std::exp, double sums in another order); forbidden tail ids exact with p = 0.
PIECRUST_GPU_TEST(probe_distribution_matches_host) {
  Cuda const& s = t.space();
  std::vector<std::size_t> const vocabs =
      emulated ? std::vector<std::size_t>{40, 3000, 9000} : std::vector<std::size_t>{40, 3000, 70000};
  for (std::size_t vocab : vocabs) {
    std::size_t const rows = 4;
    auto const logits = random_logits(t, rows, vocab, true);
    auto const dl = dev(s, logits);
    std::vector<LogitMask> masks;
    for (std::size_t r = 0; r < rows; ++r)
      masks.push_back(r == 0 ? LogitMask{} : random_mask(t, vocab, r == 3 ? 0.01 : 0.5, &logits[r * vocab]));
    for (std::size_t k : {std::size_t{1}, std::size_t{10}, std::size_t{0}}) {
      for (float temp : {1.0f, 0.6f}) {
        std::size_t const kk = k == 0 ? vocab : k;
        std::vector<std::uint32_t> hid(rows * kk);
        std::vector<float> hp(rows * kk);
        probe_distribution(host_space(), ShapedView<float const, 2>(logits.data(), rows, vocab), k, temp, masks,
                           ShapedView<std::uint32_t, 2>(hid.data(), rows, kk),
                           ShapedView<float, 2>(hp.data(), rows, kk));
        Buffer<std::uint32_t, CudaMemory> did(rows * kk, s.memory());
        Buffer<float, CudaMemory> dp(rows * kk, s.memory());
        probe_distribution(s, dl.view(rows, vocab), k, temp, masks, did.view(rows, kk), dp.view(rows, kk));
        t.check(to_host(s, did) == hid, "probe_distribution vocab ", vocab, " k ", k, " T ", temp,
                ": ids differ from the host");
        double const r = tolerance_ratio(to_host(s, dp), hp, 1e-9, 1e-5);
        t.check(r <= 1.0, "probe_distribution vocab ", vocab, " k ", k, ": probability tolerance ratio ", r);
      }
    }
  }
}

// Tolerance: 1e-5 absolute on log-probabilities and entropies (log Z from double sums of f32 weights).
PIECRUST_GPU_TEST(probe_logprobs_and_entropy_match_host) {
  Cuda const& s = t.space();
  std::size_t const rows = 6, vocab = emulated ? 8000 : 50000, n = 9;
  auto const logits = random_logits(t, rows, vocab, true);
  auto const dl = dev(s, logits);
  std::vector<LogitMask> masks;
  for (std::size_t r = 0; r < rows; ++r) masks.push_back(r % 2 == 0 ? LogitMask{} : random_mask(t, vocab, 0.3, &logits[r * vocab]));
  std::vector<std::uint32_t> ids(rows * n);
  std::uniform_int_distribution<std::uint32_t> d(0, vocab - 1);
  for (auto& i : ids) i = d(t.rng());
  for (float temp : {1.0f, 1.7f}) {
    std::vector<float> hl(rows * n), he(rows);
    probe_logprobs(host_space(), ShapedView<float const, 2>(logits.data(), rows, vocab),
                   ShapedView<std::uint32_t const, 2>(ids.data(), rows, n), temp, masks,
                   ShapedView<float, 2>(hl.data(), rows, n));
    probe_entropy(host_space(), ShapedView<float const, 2>(logits.data(), rows, vocab), temp, masks, he);
    Buffer<float, CudaMemory> dlp(rows * n, s.memory());
    probe_logprobs(s, dl.view(rows, vocab), ShapedView<std::uint32_t const, 2>(ids.data(), rows, n), temp, masks,
                   dlp.view(rows, n));
    double const r1 = tolerance_ratio(to_host(s, dlp), hl, 1e-5, 0.0);
    t.check(r1 <= 1.0, "probe_logprobs T ", temp, ": tolerance ratio ", r1);
    std::vector<float> ge(rows);  // host output span: copied back by the call
    probe_entropy(s, dl.view(rows, vocab), temp, masks, ge);
    double const r2 = tolerance_ratio(ge, he, 1e-5, 0.0);
    t.check(r2 <= 1.0, "probe_entropy T ", temp, ": tolerance ratio ", r2);
  }
}

// ---- the Llama forward's own kernels ---------------------------------------------------------------

// The fused bias + RoPE + append kernel against the host's separate ops (bias add, rope on q and k,
// append_kv): the same roundings, so q and an f32 pool agree to 1e-6 relative; a bf16 pool to one bf16
// rounding (2^-8 relative). swiglu over halves: as swiglu (2e-6). Gathered final norm: as rms_norm (1e-5).
template <class KvT>
void fused_qkv_case(gpu_test::Test& t, RopeStyle style, bool bias, std::size_t rotary_dim) {
  Cuda const& s = t.space();
  std::size_t const T = 7, H = 4, KH = 2, D = 64, W = (H + 2 * KH) * D;
  std::size_t const pages = 4, page_size = 16;
  RopeParams p;
  p.style = style;
  p.theta = 500000.0f;
  p.rotary_dim = rotary_dim;
  p.llama3 = {8.0f, 1.0f, 4.0f, 8192};
  auto const qkv = t.random_floats(T * W, -2.0f, 2.0f);                        // [T][W]
  auto const b = bias ? t.random_floats(W, -0.5f, 0.5f) : std::vector<float>{};  // [W]
  std::vector<std::uint32_t> pos(T), slots(pages * page_size);
  std::uniform_int_distribution<std::uint32_t> d(0, 1u << 20);
  for (auto& x : pos) x = d(t.rng());
  pos[1] = (1u << 24) + 3;
  for (std::size_t i = 0; i < slots.size(); ++i) slots[i] = static_cast<std::uint32_t>(i);
  std::shuffle(slots.begin(), slots.end(), t.rng());
  slots.resize(T);
  PagedKv<KvT> shape{nullptr, pages, page_size, KH, D};
  std::vector<KvT> pool(shape.size());
  auto const fill = t.random_floats(pool.size());
  for (std::size_t i = 0; i < pool.size(); ++i) pool[i] = from_float<KvT>(fill[i]);
  // Host: split (+ bias), rope q and k, append.
  std::vector<float> q(T * H * D), k(T * KH * D), v(T * KH * D);
  for (std::size_t tk = 0; tk < T; ++tk) {
    for (std::size_t c = 0; c < W; ++c) {
      float const x = qkv[tk * W + c] + (bias ? b[c] : 0.0f);
      if (c < H * D) q[tk * H * D + c] = x;
      else if (c < (H + KH) * D) k[tk * KH * D + c - H * D] = x;
      else v[tk * KH * D + c - (H + KH) * D] = x;
    }
  }
  rope(host_space(), ShapedView<float, 3>(q.data(), T, H, D), pos, p);
  rope(host_space(), ShapedView<float, 3>(k.data(), T, KH, D), pos, p);
  std::vector<KvT> want_pool = pool;
  PagedKv<KvT> hkv = shape;
  hkv.data = want_pool.data();
  append_kv(host_space(), hkv, ShapedView<float const, 3>(k.data(), T, KH, D), ShapedView<float const, 3>(v.data(), T, KH, D),
            slots);
  // Device: the op (the fused kernel on Cuda) from q, k and v as the projections leave them.
  std::vector<float> q0(T * H * D), k0(T * KH * D), v0(T * KH * D), bq, bk, bv;
  for (std::size_t tk = 0; tk < T; ++tk) {
    for (std::size_t c = 0; c < W; ++c) {
      float const x = qkv[tk * W + c];
      if (c < H * D) q0[tk * H * D + c] = x;
      else if (c < (H + KH) * D) k0[tk * KH * D + c - H * D] = x;
      else v0[tk * KH * D + c - (H + KH) * D] = x;
    }
  }
  if (bias) {
    bq.assign(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(H * D));
    bk.assign(b.begin() + static_cast<std::ptrdiff_t>(H * D), b.begin() + static_cast<std::ptrdiff_t>((H + KH) * D));
    bv.assign(b.begin() + static_cast<std::ptrdiff_t>((H + KH) * D), b.end());
  }
  auto dq = dev(s, q0);
  auto dk = dev(s, k0);
  auto dv = dev(s, v0);
  auto const dbq = dev(s, bq);
  auto const dbk = dev(s, bk);
  auto const dbv = dev(s, bv);
  auto dpool = dev(s, pool);
  PagedKv<KvT> dkv = shape;
  dkv.data = dpool.data();
  QkvBias const qb = bias ? QkvBias{dbq.view(H * D), dbk.view(KH * D), dbv.view(KH * D)} : QkvBias{};
  qkv_rope_append(s, dq.view(T, H, D), dk.view(T, KH, D), dv.view(T, KH, D), qb, pos, p, dkv, slots);
  double const rq = tolerance_ratio(to_host(s, dq), q, 1e-6, 1e-6);
  t.check(rq <= 1.0, "qkv_rope_append q (style ", static_cast<int>(style), ", bias ", bias, ", rotary ", rotary_dim,
          "): tolerance ratio ", rq);
  auto const got_pool = to_host(s, dpool);
  std::vector<float> gp(pool.size()), wp(pool.size());
  for (std::size_t i = 0; i < pool.size(); ++i) {
    gp[i] = to_float(got_pool[i]);
    wp[i] = to_float(want_pool[i]);
  }
  double const rtol = sizeof(KvT) == 4 ? 1e-6 : 1.0 / 256;
  double const rp = tolerance_ratio(gp, wp, 1e-6, rtol);
  t.check(rp <= 1.0, "qkv_rope_append pool (", sizeof(KvT) == 4 ? "f32" : "bf16", ", style ", static_cast<int>(style),
          ", bias ", bias, ", rotary ", rotary_dim, "): tolerance ratio ", rp);
}

PIECRUST_GPU_TEST(qkv_rope_append_matches_host_ops) {
  for (RopeStyle style : {RopeStyle::adjacent_pairs, RopeStyle::half_split}) {
    for (bool bias : {false, true}) {
      fused_qkv_case<float>(t, style, bias, 0);
      fused_qkv_case<BFloat16>(t, style, bias, 48);
    }
  }
}

// ---- the Llama forward pass -----------------------------------------------------------------------

namespace {

struct Sequence {
  std::vector<TokenId> tokens;
  std::vector<std::uint32_t> positions, rows, qo, kvp, idx, last;
  ForwardBatch batch() const { return ForwardBatch{tokens, positions, {qo, kvp, idx, last}, {}, rows}; }
};

/// One request: `n` new tokens at positions [start, start + n) over pages 63, 61, ... (scattered).
Sequence step(std::vector<TokenId> const& all, std::size_t start, std::size_t n, std::uint32_t page_size) {
  Sequence s;
  s.tokens.assign(all.begin() + static_cast<std::ptrdiff_t>(start), all.begin() + static_cast<std::ptrdiff_t>(start + n));
  for (std::size_t i = 0; i < n; ++i) {
    s.positions.push_back(static_cast<std::uint32_t>(start + i));
    s.rows.push_back(static_cast<std::uint32_t>(i));
  }
  std::size_t const len = start + n, pages = (len + page_size - 1) / page_size;
  s.qo = {0, static_cast<std::uint32_t>(n)};
  s.kvp = {0, static_cast<std::uint32_t>(pages)};
  for (std::size_t p = 0; p < pages; ++p) s.idx.push_back(static_cast<std::uint32_t>(63 - 2 * p));
  s.last = {static_cast<std::uint32_t>(len - (pages - 1) * page_size)};
  return s;
}

template <class KvT>
void llama_case(gpu_test::Test& t, std::string const& arch) {
  auto const seed = t.rng()();
  auto w = tiny_llama_weights(seed, GgmlType::f32, arch);
  std::size_t const vocab = w.config.vocab_size;
  std::size_t const prefill = emulated ? 15 : 37, decodes = emulated ? 2 : 4;
  std::vector<TokenId> toks(prefill + decodes);
  std::uniform_int_distribution<TokenId> d(0, static_cast<TokenId>(vocab - 1));
  for (auto& x : toks) x = d(t.rng());
  // The same model definition on both spaces: weights, activations, KV and logits in device memory here.
  LlamaModel<Cuda, KvT> gpu_model(tiny_llama_weights(seed, GgmlType::f32, arch), t.space(),
                                  {.llama_cpp_activation_rounding = false});
  LlamaModel<Host> host_model(std::move(w), Host{2}, {.llama_cpp_activation_rounding = false});
  auto host_kv = host_model.make_kv_cache(64, 16);
  auto gpu_kv = gpu_model.make_kv_cache(64, 16);
  // A prefill, then decode steps over the same caches (crossing the first page's end).
  std::vector<std::pair<std::size_t, std::size_t>> steps{{0, prefill}};
  for (std::size_t i = 0; i < decodes; ++i) steps.emplace_back(prefill + i, 1);
  for (auto const& [start, n] : steps) {
    Sequence const s = step(toks, start, n, 16);
    std::vector<float> want(n * vocab), got(n * vocab);
    host_model.forward(host_kv, s.batch(), want);
    Buffer<float, CudaMemory> logits(n * vocab, t.space().memory());  // [n][vocab] device
    gpu_model.forward(gpu_kv, s.batch(), std::span<float>(logits.data(), logits.size()));
    copy_to_host(t.space(), std::span<float>(got), std::span<float const>(logits.data(), logits.size()));
    double scale = 0, worst = 0;
    std::size_t argmax_same = 0;
    for (float v : want) scale = std::max(scale, double{std::abs(v)});
    for (std::size_t i = 0; i < want.size(); ++i) worst = std::max(worst, double{std::abs(got[i] - want[i])});
    for (std::size_t r = 0; r < n; ++r) {
      auto const* a = want.data() + r * vocab;
      auto const* b = got.data() + r * vocab;
      argmax_same += std::max_element(a, a + vocab) - a == std::max_element(b, b + vocab) - b ? 1 : 0;
    }
    // bf16 weights and GEMM inputs (relative 2^-9 each) through 2 layers: 3% of the largest logit.
    t.check(worst <= 0.03 * scale + 1e-3, "LlamaModel<Cuda> ", arch, " kv ", sizeof(KvT) == 4 ? "f32" : "bf16", " step at ",
            start, ": max |gpu - host| = ", worst, " (largest |logit| ", scale, ")");
    t.check(argmax_same * 10 >= n * 9, "LlamaModel<Cuda> ", arch, " step at ", start, ": argmax agrees in ", argmax_same,
            " of ", n, " rows");
  }
}

}  // namespace

// Tolerance: see llama_case (bf16 GEMMs against the host's f32 model).
PIECRUST_GPU_TEST(llama_forward_matches_host_model) {
  for (std::string arch : {"llama", "qwen2"}) {
    llama_case<BFloat16>(t, arch);
    llama_case<float>(t, arch);
  }
}
