#pragma once
// RoPE, attention and SwiGLU computed operation for operation as llama.cpp's CPU backend computes them (its
// AVX2 build, f32 KV cache, no flash attention), so that a model run with
// LlamaModelOptions::llama_cpp_attention produces llama.cpp's logits bit for bit.
//
// Why this exists: llama.cpp rounds every matmul input to 8-bit blocks. That rounding is discontinuous,
// so a difference in the last bit of an activation (summation order, a different exp) flips a quantized
// value now and then, and the flips grow over 30 layers into logit differences of ~0.3: enough to
// change greedy choices at near-ties. Matching llama.cpp's token ids therefore needs its arithmetic, not
// just an accurate one. piecrust's own kernels (paged_attention, rope) are more accurate and faster; this
// path serves conformance checks and users who need llama.cpp's exact numbers.
//
// What is reproduced (llama.cpp ggml/src/ggml-cpu, read for the order of operations):
//  * RoPE (ops.cpp rope_cache_init / rotate_pairs): angle_i = p * s^i accumulated in f32 with
//    s = powf(base, -2 / n_dims); cosf/sinf of it; x0' = fma(x0, c, -(x1 * s)), x1' = fma(x0, s, x1 * c)
//    (the contraction gcc makes of `x0*c - x1*s` at -O3; checked against llama.cpp's tensors).
//  * scores (vec.cpp ggml_vec_dot_f32, AVX2): 4 accumulators of 8 lanes over blocks of 32, reduced
//    pairwise (GGML_F32x8_REDUCE), then multiplied by 1/sqrt(head_dim) in the softmax.
//  * softmax (ops.cpp soft_max_f32, vec.cpp ggml_vec_soft_max_f32): exp by ggml_v_expf's polynomial,
//    the sum of each block of 8 reduced in f32 and accumulated in double, probabilities scaled by
//    (float)(1 / sum).
//  * SwiGLU (vec.cpp ggml_vec_swiglu_f32): silu by ggml_v_expf, g / (1 + e) * u.
//  * output (P V): with one token in the step, ggml_vec_dot_f32 as above; with more, the llamafile
//    tinyBLAS f32 kernel (sgemm.cpp): one accumulator of 8 lanes over the KV positions, then a
//    horizontal sum. The KV positions are the request's in cache order; llama.cpp pads them to a
//    multiple of 256 with masked positions, which add exact zeros and change nothing.

#include <piecrust/core/attention_mask.hpp>
#include <piecrust/core/error.hpp>
#include <piecrust/exec/shaped_view.hpp>
#include <piecrust/kernels/attention_rows.hpp>
#include <piecrust/kernels/paged_attention.hpp>
#include <piecrust/kernels/rope.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace piecrust::detail::llama_cpp {

/// One lane of ggml_v_expf (AVX2): exp(x) by a degree-5 polynomial on the reduced argument with the
/// same fused operations, special-cased for |n| > 126 (scaled result) and |n| > 192 (over/underflow).
inline float expf_lane(float x) noexcept {
  constexpr float round_shift = 0x1.8p23f;
  float const z = std::fma(x, 0x1.715476p+0f, round_shift);
  float const n = z - round_shift;
  float const b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  std::uint32_t const e = std::bit_cast<std::uint32_t>(z) << 23;
  float const k = std::bit_cast<float>(e + std::bit_cast<std::uint32_t>(1.0f));
  float const u = b * b;
  float const j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                           u, 0x1.ffffecp-1f * b);
  float const an = std::fabs(n);
  if (!(an > 126.0f)) return std::fma(k, j, k);
  std::uint32_t const g = n <= 0.0f ? 0x82000000u : 0u;
  float const s1 = std::bit_cast<float>(g + 0x7f000000u);
  if (an > 192.0f) return s1 * s1;
  float const s2 = std::bit_cast<float>(e - g);
  return std::fma(s2, j, s2) * s1;
}

/// SwiGLU as ggml_vec_swiglu_f32 (AVX2): silu(g) = g / (1 + ggml_v_expf(0 - g)), times u, in f32
/// (row lengths are multiples of 8 in every supported model, so the vector loop covers them).
///   gate, up, out [n]
inline void swiglu(std::span<float const> gate, std::span<float const> up, std::span<float> out) noexcept {
  for (std::size_t i = 0; i < gate.size(); ++i) {
    float const g = gate[i];
    out[i] = (g / (1.0f + expf_lane(0.0f - g))) * up[i];
  }
}

/// Sum of 8 lanes as an AVX2 hsum: (hi + lo), then pairs (0+2, 1+3), then the two.
inline float hsum8(float const (&v)[8]) noexcept {
  float const a0 = v[4] + v[0], a1 = v[5] + v[1], a2 = v[6] + v[2], a3 = v[7] + v[3];
  return (a0 + a2) + (a1 + a3);
}

/// ggml_vec_dot_f32 on AVX2 over a length that llama.cpp pads to a multiple of 32 with zeros (head_dim;
/// KV lengths padded to 256): element i feeds lane i % 8 of accumulator (i / 8) % 4; the accumulators
/// are reduced pairwise (GGML_F32x8_REDUCE: 0+2, 1+3, then 0+1), then the 128-bit halves, then two
/// horizontal adds. Padding zeros add exact zeros, so only the n real elements are visited.
///   x[i] at x + i * x_stride, y[i] at y + i
inline float vec_dot_f32(std::size_t n, float const* x, std::size_t x_stride, float const* y) noexcept {
  float acc[4][8] = {};
  for (std::size_t i = 0; i < n; ++i) {
    float& a = acc[(i / 8) % 4][i % 8];
    a = std::fma(x[i * x_stride], y[i], a);
  }
  float r[8];
  for (std::size_t l = 0; l < 8; ++l) r[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  float const t0 = r[0] + r[4], t1 = r[1] + r[5], t2 = r[2] + r[6], t3 = r[3] + r[7];
  return (t0 + t1) + (t2 + t3);
}

/// tinyBLAS (AVX2, f32) dot product: one 8-lane accumulator over the whole length, then hsum8.
inline float tinyblas_dot_f32(std::size_t n, float const* x, std::size_t x_stride, float const* y) noexcept {
  float acc[8] = {};
  for (std::size_t i = 0; i < n; ++i) acc[i % 8] = std::fma(x[i * x_stride], y[i], acc[i % 8]);
  return hsum8(acc);
}

/// RoPE in place, llama.cpp's way.  x [tokens][heads][head_dim]; positions [tokens].
inline void rope(ShapedView<float, 3> x, std::span<std::uint32_t const> positions, RopeParams const& params) {
  if (params.llama3.enabled()) {
    fail<Unsupported>("llama.cpp arithmetic: RoPE with Llama-3 frequency scaling is not reproduced (factor = ",
                      params.llama3.factor, ")");
  }
  std::size_t const heads = x.extent(1), head_dim = x.extent(2);
  std::size_t const dims = params.rotary_dim == 0 ? head_dim : params.rotary_dim;
  std::size_t const half = dims / 2;
  float const theta_scale = std::pow(params.theta, -2.0f / static_cast<float>(dims));
  std::vector<float> cs(2 * half);  // [half][cos, sin]
  for (std::size_t t = 0; t < x.extent(0); ++t) {
    float theta = static_cast<float>(static_cast<std::int32_t>(positions[t]));
    for (std::size_t i = 0; i < half; ++i) {
      cs[2 * i] = std::cos(theta);
      cs[2 * i + 1] = std::sin(theta);
      theta *= theta_scale;
    }
    for (std::size_t h = 0; h < heads; ++h) {
      float* v = x.data() + (t * heads + h) * head_dim;
      for (std::size_t i = 0; i < half; ++i) {
        std::size_t const a = params.style == RopeStyle::adjacent_pairs ? 2 * i : i;
        std::size_t const b = params.style == RopeStyle::adjacent_pairs ? 2 * i + 1 : i + half;
        float const c = cs[2 * i], s = cs[2 * i + 1];
        float const x0 = v[a], x1 = v[b];
        float const x1s = x1 * s, x1c = x1 * c;
        v[a] = std::fma(x0, c, -x1s);
        v[b] = std::fma(x0, s, x1c);
      }
    }
  }
}

/// Attention of every query token over the KV positions it sees (the AttentionSelection rules of
/// paged_attention: trims, else masks, else causal), llama.cpp's way.  f32 KV only; no soft-cap.
///   q   [tokens][qo_heads][D]
///   out [tokens][qo_heads][D]
template <class ParallelFor>
void attention(ParallelFor&& parallel_for, ShapedView<float const, 3> q, PagedKv<float const> kv, PagedBatch const& batch,
               AttentionSelection const& sel, ShapedView<float, 3> out) {
  std::size_t const tokens = q.extent(0), qo_heads = q.extent(1), D = q.extent(2);
  std::size_t const group = qo_heads / kv.num_kv_heads;
  std::size_t const ps = kv.page_size;
  float const scale = 1.0f / std::sqrt(static_cast<float>(D));
  bool const single_token_step = tokens == 1;  // llama.cpp uses tinyBLAS for P V only when n_tokens >= 2
  std::vector<std::uint32_t> request_of(tokens);  // [tokens]
  for (std::size_t b = 0; b < batch.batch_size(); ++b) {
    for (std::size_t t = batch.qo_indptr[b]; t < batch.qo_indptr[b + 1]; ++t) request_of[t] = static_cast<std::uint32_t>(b);
  }
  parallel_for(tokens, [&](std::size_t begin, std::size_t end) {
    std::vector<std::size_t> slots;   // [kv positions] physical slot index (page * ps + offset) per position
    std::vector<char> seen;           // [kv positions] 1 = attended
    std::vector<float> p;             // [kv positions] scores, then probabilities
    std::vector<float> vcol;          // [kv positions] one V channel gathered
    std::vector<AttendedRun> runs;    // the token's attended positions
    for (std::size_t t = begin; t < end; ++t) {
      std::size_t const r = request_of[t];
      std::size_t const i = t - batch.qo_indptr[r];
      std::uint32_t const* pages = batch.kv_indices.data() + batch.kv_indptr[r];
      // The request's KV positions in cache order (kept pages only when trimmed).
      RequestKv const rk = request_kv(batch, sel, r, ps);
      slots.clear();
      for (std::size_t pg = 0; pg < rk.num_pages(ps); ++pg) {
        std::size_t const lp = rk.logical_page(pg);
        std::size_t const len = lp + 1 == batch.num_pages(r) ? batch.kv_last_page_len[r] : ps;
        for (std::size_t s = 0; s < len; ++s) slots.push_back(std::size_t{pages[lp]} * ps + s);
      }
      std::size_t const n = slots.size();
      seen.assign(n, 0);
      attended_runs(attention_row(sel, r, t, i), rk, batch.qo_len(r), i, runs);
      for (AttendedRun const run : runs) std::fill(seen.begin() + static_cast<std::ptrdiff_t>(run.begin),
                                                  seen.begin() + static_cast<std::ptrdiff_t>(run.end), char{1});
      p.assign(n, 0.0f);
      vcol.resize(n);
      for (std::size_t h = 0; h < qo_heads; ++h) {
        std::size_t const kh = h / group;
        float const* qh = q.data() + (t * qo_heads + h) * D;
        float* oh = out.data() + (t * qo_heads + h) * D;
        float mx = -std::numeric_limits<float>::infinity();
        for (std::size_t j = 0; j < n; ++j) {
          if (!seen[j]) continue;
          float const* kr = kv.at(slots[j] / ps, 0, slots[j] % ps, kh);
          p[j] = vec_dot_f32(D, kr, 1, qh) * scale;
          mx = std::max(mx, p[j]);
        }
        if (mx == -std::numeric_limits<float>::infinity()) {
          std::fill(oh, oh + D, 0.0f);
          continue;
        }
        double sum = 0.0;
        for (std::size_t j0 = 0; j0 < n; j0 += 8) {
          float blk[8] = {};
          for (std::size_t l = 0; l < 8 && j0 + l < n; ++l) {
            std::size_t const j = j0 + l;
            p[j] = seen[j] ? expf_lane(p[j] - mx) : 0.0f;
            blk[l] = p[j];
          }
          sum += static_cast<double>(hsum8(blk));
        }
        float const inv = static_cast<float>(1.0 / sum);
        for (std::size_t j = 0; j < n; ++j) p[j] *= inv;
        for (std::size_t d = 0; d < D; ++d) {
          for (std::size_t j = 0; j < n; ++j) {
            vcol[j] = kv.at(slots[j] / ps, 1, slots[j] % ps, kh)[d];
          }
          oh[d] = single_token_step ? vec_dot_f32(n, vcol.data(), 1, p.data()) : tinyblas_dot_f32(n, vcol.data(), 1, p.data());
        }
      }
    }
  });
}

}  // namespace piecrust::detail::llama_cpp
