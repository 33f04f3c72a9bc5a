#pragma once
// Random paged-attention cases shared by the GPU attention tests: ragged batches mixing prefill and
// decode rows over a shuffled page pool, with causal, window, sink + window, random BRLE and tree masks,
// with or without page-trim. Host objects only; the tests upload what the GPU needs.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <piecrust/core/attention_mask.hpp>
#include <piecrust/core/brle.hpp>
#include <piecrust/core/trim_plan.hpp>
#include <piecrust/kernels/paged_attention.hpp>

namespace piecrust::test {

enum class MaskKind { implicit_causal, causal_rows, window, sink_window, random_brle, tree };

inline char const* name(MaskKind k) {
  switch (k) {
    case MaskKind::implicit_causal: return "causal(no masks)";
    case MaskKind::causal_rows: return "causal rows";
    case MaskKind::window: return "window";
    case MaskKind::sink_window: return "sink+window";
    case MaskKind::random_brle: return "random brle";
    case MaskKind::tree: return "tree";
  }
  return "?";
}

struct CaseSpec {
  std::size_t batch = 4;
  std::size_t page_size = 16;
  std::size_t num_kv_heads = 2;
  std::size_t group = 4;
  std::size_t head_dim = 128;
  std::size_t max_prefill = 150;  // longest prefill request (qo_len)
  std::size_t max_kv_before = 700;
  double decode_share = 0.5;      // fraction of requests with qo_len == 1
  MaskKind mask = MaskKind::implicit_causal;
  bool trim = false;
  float soft_cap = 0.0f;
};

/// A ragged batch with its masks and trim plans, all host-side.
struct Case {
  CaseSpec spec;
  std::size_t num_pages = 0;                 // pool pages
  std::vector<std::uint32_t> qo_indptr;      // [batch + 1]
  std::vector<std::uint32_t> kv_indptr;      // [batch + 1]
  std::vector<std::uint32_t> kv_indices;     // [pages used]
  std::vector<std::uint32_t> kv_last_page_len;  // [batch]
  std::vector<std::size_t> kv_before;        // [batch]
  std::vector<AttentionMask> masks;          // [tokens] or empty (implicit causal)
  std::vector<TrimPlan> trims;               // [batch] or empty

  [[nodiscard]] std::size_t tokens() const { return qo_indptr.back(); }
  [[nodiscard]] PagedBatch batch() const { return {qo_indptr, kv_indptr, kv_indices, kv_last_page_len}; }
  [[nodiscard]] AttentionSelection selection() const {
    return {trims.empty() ? std::span<AttentionMask const>(masks) : std::span<AttentionMask const>{}, trims};
  }
  /// The masks the double-precision reference evaluates (untrimmed; empty = causal).
  [[nodiscard]] std::span<AttentionMask const> reference_masks() const { return masks; }
};

/// Random runs over `len` positions, alternating attend / masked, with long and short runs.
inline AttentionMask random_row(std::size_t len, std::mt19937_64& rng) {
  Brle b;
  bool bit = std::uniform_int_distribution<int>(0, 1)(rng) != 0;
  std::size_t pos = 0;
  while (pos < len) {
    std::size_t const cap = std::uniform_int_distribution<int>(0, 3)(rng) == 0 ? 200 : 20;
    std::size_t const run = std::min(len - pos, std::uniform_int_distribution<std::size_t>(1, cap)(rng));
    b.append(bit, run);
    pos += run;
    bit = !bit;
  }
  // Sometimes a shorter row (positions past its end are masked).
  if (len > 4 && std::uniform_int_distribution<int>(0, 4)(rng) == 0) return AttentionMask(b.slice(0, len / 2));
  return AttentionMask(std::move(b));
}

inline Case make_case(CaseSpec const& spec, std::mt19937_64& rng) {
  Case c;
  c.spec = spec;
  std::size_t const ps = spec.page_size;
  c.qo_indptr.push_back(0);
  c.kv_indptr.push_back(0);
  std::vector<std::size_t> qo(spec.batch), kv(spec.batch);  // [batch]
  std::size_t total_pages = 0;
  for (std::size_t b = 0; b < spec.batch; ++b) {
    bool const decode = std::uniform_real_distribution<double>(0, 1)(rng) < spec.decode_share;
    qo[b] = decode ? 1 : std::uniform_int_distribution<std::size_t>(2, std::max<std::size_t>(2, spec.max_prefill))(rng);
    c.kv_before.push_back(std::uniform_int_distribution<std::size_t>(0, spec.max_kv_before)(rng));
    kv[b] = c.kv_before[b] + qo[b];
    total_pages += (kv[b] + ps - 1) / ps;
  }
  c.num_pages = total_pages + 7;  // a few pages nobody uses
  std::vector<std::uint32_t> perm(c.num_pages);  // [num_pages] shuffled physical ids
  std::iota(perm.begin(), perm.end(), 0u);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::size_t next = 0;
  for (std::size_t b = 0; b < spec.batch; ++b) {
    std::size_t const np = (kv[b] + ps - 1) / ps;
    for (std::size_t p = 0; p < np; ++p) c.kv_indices.push_back(perm[next++]);
    c.qo_indptr.push_back(static_cast<std::uint32_t>(c.qo_indptr.back() + qo[b]));
    c.kv_indptr.push_back(static_cast<std::uint32_t>(c.kv_indices.size()));
    c.kv_last_page_len.push_back(static_cast<std::uint32_t>(kv[b] - (np - 1) * ps));
  }
  if (spec.mask == MaskKind::implicit_causal) {
    if (spec.trim) {
      for (std::size_t b = 0; b < spec.batch; ++b) {
        c.trims.push_back(TrimPlan::compute(static_cast<std::uint32_t>(ps), c.kv_before[b], qo[b], {}));
      }
    }
    return c;
  }
  for (std::size_t b = 0; b < spec.batch; ++b) {
    std::size_t const before = c.kv_before[b];
    std::size_t const window = std::uniform_int_distribution<std::size_t>(1, 300)(rng);
    std::size_t const sink = std::uniform_int_distribution<std::size_t>(0, 8)(rng);
    std::vector<std::size_t> parent(qo[b]);  // tree: parent of new token i (or i itself for a root)
    for (std::size_t i = 0; i < qo[b]; ++i) {
      parent[i] = i == 0 ? 0 : std::uniform_int_distribution<std::size_t>(std::max<std::size_t>(i, 4) - 4, i - 1)(rng);
    }
    std::size_t const first_row = c.masks.size();
    for (std::size_t i = 0; i < qo[b]; ++i) {
      std::size_t const visible = before + i + 1;
      switch (spec.mask) {
        case MaskKind::causal_rows: c.masks.push_back(AttentionMask::causal(visible)); break;
        case MaskKind::window: c.masks.push_back(AttentionMask::window(visible, window)); break;
        case MaskKind::sink_window: c.masks.push_back(AttentionMask::sink_window(visible, sink, window)); break;
        case MaskKind::random_brle: c.masks.push_back(random_row(visible, rng)); break;
        case MaskKind::tree: {
          // Prefix [0, before) plus the token's ancestors among the new tokens and itself.
          std::vector<std::uint8_t> bits(visible, 1);  // 1 = masked
          std::fill(bits.begin(), bits.begin() + static_cast<std::ptrdiff_t>(before), 0);
          for (std::size_t a = i;; a = parent[a]) {
            bits[before + a] = 0;
            if (a == 0 || parent[a] == a) break;
          }
          c.masks.push_back(AttentionMask(Brle::from_bits(bits)));
          break;
        }
        case MaskKind::implicit_causal: break;
      }
    }
    if (spec.trim) {
      std::span<AttentionMask const> const rows(c.masks.data() + first_row, qo[b]);
      c.trims.push_back(TrimPlan::compute(static_cast<std::uint32_t>(ps), before, qo[b], rows));
    }
  }
  return c;
}

/// Uniform values in [-1, 1] (never zeros: they hide unwritten outputs and wrong indexing).
inline std::vector<float> random_floats(std::size_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

}  // namespace piecrust::test
