#pragma once
// A naive, dense, single-sequence Llama forward pass in double precision: the oracle the tests compare
// LlamaModel with. Same equations as llama_model.hpp (the family switches of LlamaConfig included: QK-norm,
// post-norms, GELU, the embedding scale, sliding-window layers and their RoPE base), no kernels, no pages,
// O(n^2) attention.

#include <piecrust/kernels/rope.hpp>
#include <piecrust/model/llama_weights.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace piecrust::detail {

/// Logits [tokens.size()][vocab] for a sequence at positions 0..n-1 with causal attention.
inline std::vector<float> reference_llama_logits(LlamaWeights const& w, std::span<std::int32_t const> tokens) {
  auto const& c = w.config;
  std::size_t const n = tokens.size(), E = c.hidden, H = c.num_heads, KH = c.num_kv_heads, D = c.head_dim, F = c.ffn;
  std::size_t const group = H / KH;
  auto dense = [](WeightMatrix const& m) {
    std::vector<float> out(m.rows * m.cols);  // [rows][cols]
    for (std::size_t r = 0; r < m.rows; ++r) {
      LlamaWeights::dequantize_matrix_row(m, r, std::span<float>(out).subspan(r * m.cols, m.cols));
    }
    return out;
  };
  auto matvec = [](std::vector<float> const& W, std::size_t rows, std::size_t cols, std::vector<double> const& x) {
    std::vector<double> y(rows, 0.0);
    for (std::size_t r = 0; r < rows; ++r) {
      double s = 0;
      for (std::size_t k = 0; k < cols; ++k) s += double{W[r * cols + k]} * x[k];
      y[r] = s;
    }
    return y;
  };
  auto norm = [&](std::vector<double> const& x, std::span<float const> g) {
    double ss = 0;
    for (double v : x) ss += v * v;
    double const inv = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + c.rms_eps);
    std::vector<double> y(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * g[i];
    return y;
  };
  std::size_t const rot = c.rope.rotary_dim == 0 ? D : c.rope.rotary_dim;
  auto rope_head = [&](double* h, std::size_t pos, std::vector<double> const& inv_freq) {
    for (std::size_t i = 0; i < rot / 2; ++i) {
      double const ang = static_cast<double>(pos) * inv_freq[i];
      double const cs = std::cos(ang), sn = std::sin(ang);
      std::size_t const a = c.rope.style == RopeStyle::adjacent_pairs ? 2 * i : i;
      std::size_t const b = c.rope.style == RopeStyle::adjacent_pairs ? 2 * i + 1 : i + rot / 2;
      double const x0 = h[a], x1 = h[b];
      h[a] = x0 * cs - x1 * sn;
      h[b] = x0 * sn + x1 * cs;
    }
  };

  auto const emb = dense(w.token_embd);
  std::vector<std::vector<double>> x(n, std::vector<double>(E));  // [n][E]
  for (std::size_t t = 0; t < n; ++t) {
    for (std::size_t e = 0; e < E; ++e) x[t][e] = emb[static_cast<std::size_t>(tokens[t]) * E + e] * double{c.embedding_scale};
  }
  auto head_norm = [&](double* h, std::span<float const> g) {  // RMSNorm of one head of D values
    std::vector<double> const hv(h, h + D);
    auto const y = norm(hv, g);
    std::copy(y.begin(), y.end(), h);
  };
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    auto const& L = w.layers[l];
    auto const inv_freq = rope_inv_freq(c.layer_rope(l), rot);
    bool const local = c.is_local_layer(l);
    auto const wq = dense(L.wq), wk = dense(L.wk), wv = dense(L.wv), wo = dense(L.wo);
    auto const wg = dense(L.gate), wu = dense(L.up), wd = dense(L.down);
    std::vector<std::vector<double>> q(n), k(n), v(n);
    for (std::size_t t = 0; t < n; ++t) {
      auto const a = norm(x[t], L.attn_norm);
      q[t] = matvec(wq, H * D, E, a);
      k[t] = matvec(wk, KH * D, E, a);
      v[t] = matvec(wv, KH * D, E, a);
      for (std::size_t i = 0; i < L.bq.size(); ++i) q[t][i] += L.bq[i];
      for (std::size_t i = 0; i < L.bk.size(); ++i) k[t][i] += L.bk[i];
      for (std::size_t i = 0; i < L.bv.size(); ++i) v[t][i] += L.bv[i];
      for (std::size_t h = 0; h < H && c.qk_norm; ++h) head_norm(q[t].data() + h * D, L.q_norm);
      for (std::size_t h = 0; h < KH && c.qk_norm; ++h) head_norm(k[t].data() + h * D, L.k_norm);
      for (std::size_t h = 0; h < H; ++h) rope_head(q[t].data() + h * D, t, inv_freq);
      for (std::size_t h = 0; h < KH; ++h) rope_head(k[t].data() + h * D, t, inv_freq);
    }
    for (std::size_t t = 0; t < n; ++t) {
      std::vector<double> o(H * D, 0.0);
      for (std::size_t h = 0; h < H; ++h) {
        std::size_t const kh = h / group;
        // local layers: positions t - window + 1 .. t
        std::size_t const first = local && t + 1 > c.sliding_window ? t + 1 - c.sliding_window : 0;
        std::vector<double> s(t + 1, 0.0);
        double mx = -1e300;
        for (std::size_t j = first; j <= t; ++j) {
          double d = 0;
          for (std::size_t i = 0; i < D; ++i) d += q[t][h * D + i] * k[j][kh * D + i];
          s[j] = d / std::sqrt(static_cast<double>(D));
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (std::size_t j = first; j <= t; ++j) z += (s[j] = std::exp(s[j] - mx));
        for (std::size_t j = first; j <= t; ++j) {
          for (std::size_t i = 0; i < D; ++i) o[h * D + i] += s[j] / z * v[j][kh * D + i];
        }
      }
      auto y = matvec(wo, E, H * D, o);
      if (c.post_norms) y = norm(y, L.post_attn_norm);
      for (std::size_t e = 0; e < E; ++e) x[t][e] += y[e];
      auto const a = norm(x[t], L.ffn_norm);
      auto g = matvec(wg, F, E, a);
      auto const u = matvec(wu, F, E, a);
      double const k_gelu = std::sqrt(2.0 / 3.14159265358979323846);
      for (std::size_t i = 0; i < F; ++i) {
        double const gi = g[i];
        g[i] = (c.activation == FfnActivation::gelu_tanh
                    ? 0.5 * gi * (1.0 + std::tanh(k_gelu * (gi + 0.044715 * gi * gi * gi)))
                    : gi / (1.0 + std::exp(-gi))) * u[i];
      }
      auto dn = matvec(wd, E, F, g);
      if (c.post_norms) dn = norm(dn, L.post_ffn_norm);
      for (std::size_t e = 0; e < E; ++e) x[t][e] += dn[e];
    }
  }
  auto const head = dense(w.lm_head);
  std::vector<float> logits(n * c.vocab_size);  // [n][vocab]
  for (std::size_t t = 0; t < n; ++t) {
    auto const y = matvec(head, c.vocab_size, E, norm(x[t], w.output_norm));
    for (std::size_t i = 0; i < c.vocab_size; ++i) logits[t * c.vocab_size + i] = static_cast<float>(y[i]);
  }
  return logits;
}

}  // namespace piecrust::detail
