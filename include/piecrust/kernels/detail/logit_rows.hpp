#pragma once
// Per-row building blocks of sampling and probes, plain host C++ shared by the host backend and the
// Kokkos adapter (which runs them inside Kokkos parallel patterns on host-accessible spaces).
// Token order everywhere: logit descending, then id ascending (deterministic ties).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "piecrust/core/logit_mask.hpp"
#include "piecrust/kernels/logit_edits.hpp"
#include "piecrust/kernels/philox.hpp"
#include "piecrust/kernels/sampling_params.hpp"

namespace piecrust::detail {

/// Half-open run of allowed ids.
struct IdRun {
  std::uint32_t begin;
  std::uint32_t end;
};

/// Reusable per-thread buffers, so a batch allocates once per thread.
struct LogitRowScratch {
  std::vector<IdRun> runs;
  std::vector<std::pair<float, std::uint32_t>> cand;  // (logit, id)
  std::vector<float> w;                               // [vocab] exp((l - lmax) / T) of allowed ids
  std::vector<std::pair<std::uint32_t, float>> kept;  // (id, weight)
  std::vector<double> mass;                           // [bins] top-p histogram
  std::vector<float> adjusted;                        // [vocab] a row with logit edits applied
};

/// The allowed runs of `mask` over [0, vocab) (the empty mask allows all).
inline std::size_t allowed_runs(LogitMask const& mask, std::size_t vocab, std::vector<IdRun>& out) {
  out.clear();
  std::size_t count = 0;
  if (mask.empty()) {
    out.push_back({0, static_cast<std::uint32_t>(vocab)});
    return vocab;
  }
  for (Brle::Run const r : mask.bits()) {
    if (!r.bit || r.length == 0) continue;
    std::size_t const e = std::min(r.end(), vocab);
    if (r.begin < e) {
      out.push_back({static_cast<std::uint32_t>(r.begin), static_cast<std::uint32_t>(e)});
      count += e - r.begin;
    }
    if (r.end() >= vocab) break;
  }
  return count;
}

inline bool ranks_before(std::pair<float, std::uint32_t> a, std::pair<float, std::uint32_t> b) noexcept {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

/// The first min(c, allowed) tokens of the order, sorted by the order, into out.
inline void top_candidates(float const* logits, std::vector<IdRun> const& runs, std::size_t allowed, std::size_t c,
                           std::vector<std::pair<float, std::uint32_t>>& out) {
  out.clear();
  c = std::min(c, allowed);
  if (c == 0) return;
  if (c * 8 >= allowed) {  // a large share: select with nth_element
    out.reserve(allowed);
    for (IdRun const r : runs) {
      for (std::uint32_t i = r.begin; i < r.end; ++i) out.emplace_back(logits[i], i);
    }
    if (c < allowed) std::nth_element(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(c), out.end(), ranks_before);
    out.resize(c);
    std::sort(out.begin(), out.end(), ranks_before);
    return;
  }
  // A few: one pass keeping a heap of the c best, worst on top (ids arrive ascending, so an equal
  // logit never displaces an earlier id).
  out.reserve(c);
  for (IdRun const r : runs) {
    std::uint32_t i = r.begin;
    for (; i < r.end && out.size() < c; ++i) {
      out.emplace_back(logits[i], i);
      std::push_heap(out.begin(), out.end(), ranks_before);
    }
    float worst = out.empty() ? 0.0f : out.front().first;
    for (; i < r.end; ++i) {
      if (logits[i] > worst) {
        std::pop_heap(out.begin(), out.end(), ranks_before);
        out.back() = {logits[i], i};
        std::push_heap(out.begin(), out.end(), ranks_before);
        worst = out.front().first;
      }
    }
  }
  std::sort_heap(out.begin(), out.end(), ranks_before);
}

/// Largest logit over the allowed ids.
inline float allowed_max(float const* logits, std::vector<IdRun> const& runs) {
  float m = -std::numeric_limits<float>::infinity();
  for (IdRun const r : runs) {
    for (std::uint32_t i = r.begin; i < r.end; ++i) m = std::max(m, logits[i]);
  }
  return m;
}

/// Inverse CDF over `kept` (id, weight) in increasing id order at u in [0, 1).
inline std::uint32_t pick(std::vector<std::pair<std::uint32_t, float>>& kept, double u) {
  std::sort(kept.begin(), kept.end(), [](auto const& a, auto const& b) { return a.first < b.first; });
  double total = 0;
  for (auto const& k : kept) total += k.second;
  double const target = u * total;
  double cum = 0;
  for (auto const& k : kept) {
    cum += k.second;
    if (cum > target) return k.first;
  }
  return kept.back().first;  // rounding at u close to 1
}

/// The top-p nucleus without sorting the vocabulary: a histogram of probability mass over
/// log-probability bins (bins follow the token order), then a sort of the one bin where the nucleus
/// ends. Two passes over the vocabulary. Returns the last token of the nucleus (the shortest prefix of
/// the token order whose mass reaches `need`): a token is in the nucleus iff it is that token or ranks
/// before it. s.w[id] holds the weights exp((l - lmax) / T) on entry.
inline std::pair<float, std::uint32_t> nucleus(float const* logits, std::vector<IdRun> const& runs, float lmax, float inv_t,
                                               double need, LogitRowScratch& s) {
  constexpr std::size_t bins = 4096;
  constexpr float range = 32.0f;  // nats below the maximum; everything lower shares the last bin
  auto bin_of = [&](float l) {
    float const x = (lmax - l) * inv_t * (static_cast<float>(bins) / range);
    return x >= static_cast<float>(bins - 1) ? bins - 1 : static_cast<std::size_t>(x);
  };
  s.mass.assign(bins, 0.0);
  for (IdRun const r : runs) {
    for (std::uint32_t i = r.begin; i < r.end; ++i) s.mass[bin_of(logits[i])] += s.w[i];
  }
  double above = 0;
  std::size_t boundary = 0;
  while (boundary + 1 < bins && above + s.mass[boundary] < need) above += s.mass[boundary++];
  auto& c = s.cand;
  c.clear();
  for (IdRun const r : runs) {
    for (std::uint32_t i = r.begin; i < r.end; ++i) {
      if (bin_of(logits[i]) == boundary) c.emplace_back(logits[i], i);
    }
  }
  std::sort(c.begin(), c.end(), ranks_before);
  double cum = above;
  for (auto const& e : c) {
    cum += s.w[e.second];
    if (cum >= need) return e;
  }
  return c.back();  // rounding: the whole boundary bin
}

/// One row of `sample` (see SamplingParams for the distribution). The mask must allow >= 1 id.
inline std::uint32_t sample_row(float const* logits, std::size_t vocab, SamplingParams const& p, LogitMask const& mask,
                                SampleKey const& key, LogitRowScratch& s);

/// One row of `sample` after its logit edits (bias, penalties), applied to a copy of the row.
inline std::uint32_t sample_row(float const* logits, std::size_t vocab, SamplingParams const& p, LogitMask const& mask,
                                SampleKey const& key, std::span<LogitEdit const> edits, LogitRowScratch& s) {
  if (edits.empty()) return sample_row(logits, vocab, p, mask, key, s);
  s.adjusted.assign(logits, logits + vocab);
  for (LogitEdit const& e : edits) s.adjusted[e.id] = apply_logit_edit(e, s.adjusted[e.id]);
  return sample_row(s.adjusted.data(), vocab, p, mask, key, s);  // which never touches s.adjusted
}

inline std::uint32_t sample_row(float const* logits, std::size_t vocab, SamplingParams const& p, LogitMask const& mask,
                                SampleKey const& key, LogitRowScratch& s) {
  std::size_t const allowed = allowed_runs(mask, vocab, s.runs);
  if (p.kind == SamplingKind::greedy) {
    std::pair<float, std::uint32_t> best{-std::numeric_limits<float>::infinity(), std::numeric_limits<std::uint32_t>::max()};
    for (IdRun const r : s.runs) {
      for (std::uint32_t i = r.begin; i < r.end; ++i) {
        if (logits[i] > best.first || best.second == std::numeric_limits<std::uint32_t>::max()) best = {logits[i], i};
      }
    }
    return best.second;
  }
  float const inv_t = 1.0f / p.effective_temperature();
  double const u = uniform_from_key(key);
  s.kept.clear();
  auto weight = [&](float l, float lmax) { return std::exp((l - lmax) * inv_t); };

  switch (p.kind) {
    case SamplingKind::top_k:
    case SamplingKind::top_k_top_p: {
      top_candidates(logits, s.runs, allowed, p.top_k, s.cand);
      float const lmax = s.cand.front().first;
      double total = 0;
      for (auto const& c : s.cand) total += weight(c.first, lmax);
      double const need = p.kind == SamplingKind::top_k_top_p ? static_cast<double>(p.top_p) * total : total;
      float const log_min = p.kind == SamplingKind::top_k_top_p ? std::log(p.min_p) : -std::numeric_limits<float>::infinity();
      double cum = 0;
      for (auto const& c : s.cand) {
        float const w = weight(c.first, lmax);
        if ((c.first - lmax) * inv_t < log_min) break;  // min-p: the order is descending, so the rest fail too
        s.kept.emplace_back(c.second, w);
        cum += w;
        if (p.kind == SamplingKind::top_k_top_p && cum >= need) break;
      }
      return pick(s.kept, u);
    }
    case SamplingKind::top_p: {
      float const lmax = allowed_max(logits, s.runs);
      s.w.resize(vocab);
      double total = 0;
      for (IdRun const r : s.runs) {
        for (std::uint32_t i = r.begin; i < r.end; ++i) {
          s.w[i] = weight(logits[i], lmax);
          total += s.w[i];
        }
      }
      auto const last = nucleus(logits, s.runs, lmax, inv_t, static_cast<double>(p.top_p) * total, s);
      // Walk the nucleus in id order without sorting it: two passes over the allowed ids.
      auto in_nucleus = [&](std::uint32_t i) { return i == last.second || ranks_before({logits[i], i}, last); };
      double kept_total = 0;
      for (IdRun const r : s.runs) {
        for (std::uint32_t i = r.begin; i < r.end; ++i) kept_total += in_nucleus(i) ? s.w[i] : 0.0f;
      }
      double const target = u * kept_total;
      double cum = 0;
      for (IdRun const r : s.runs) {
        for (std::uint32_t i = r.begin; i < r.end; ++i) {
          if (!in_nucleus(i)) continue;
          cum += s.w[i];
          if (cum > target) return i;
        }
      }
      return last.second;
    }
    case SamplingKind::min_p: {
      float const lmax = allowed_max(logits, s.runs);
      float const log_min = std::log(p.min_p);  // -inf for min_p = 0: everything kept
      for (IdRun const r : s.runs) {
        for (std::uint32_t i = r.begin; i < r.end; ++i) {
          if ((logits[i] - lmax) * inv_t >= log_min) s.kept.emplace_back(i, weight(logits[i], lmax));
        }
      }
      return pick(s.kept, u);
    }
    default: {  // temperature, multinomial: the whole allowed vocabulary, walked in id order
      float const lmax = allowed_max(logits, s.runs);
      s.w.resize(vocab);
      double total = 0;
      for (IdRun const r : s.runs) {
        for (std::uint32_t i = r.begin; i < r.end; ++i) {
          s.w[i] = weight(logits[i], lmax);
          total += s.w[i];
        }
      }
      double const target = u * total;
      double cum = 0;
      std::uint32_t last = 0;
      for (IdRun const r : s.runs) {
        for (std::uint32_t i = r.begin; i < r.end; ++i) {
          cum += s.w[i];
          last = i;
          if (cum > target) return i;
        }
      }
      return last;
    }
  }
}

/// log Z and the maximum of the allowed scaled logits: log-softmax(l)[i] = (l[i] - lmax) / T - log_z.
struct RowNormalizer {
  float lmax;
  double log_z;
  double sum_w;
  double sum_wd;  // sum of w * (l - lmax) / T, for the entropy
};

inline RowNormalizer normalize_row(float const* logits, std::vector<IdRun> const& runs, float inv_t) {
  float const lmax = allowed_max(logits, runs);
  double sum = 0, sum_wd = 0;
  for (IdRun const r : runs) {
    for (std::uint32_t i = r.begin; i < r.end; ++i) {
      float const d = (logits[i] - lmax) * inv_t;
      double const w = std::exp(d);
      sum += w;
      sum_wd += w * d;
    }
  }
  return {lmax, std::log(sum), sum, sum_wd};
}

inline LogitMask const& no_mask() {
  static LogitMask const allow_all;
  return allow_all;
}

/// One row of probe_distribution: the first kk tokens of the order with their probabilities, then
/// forbidden ids ascending with probability 0.
inline void distribution_row(float const* logits, std::size_t vocab, float temperature, LogitMask const& mask,
                             std::size_t kk, std::uint32_t* ids, float* probs, LogitRowScratch& s) {
  std::size_t const allowed = allowed_runs(mask, vocab, s.runs);
  float const inv_t = 1.0f / temperature;
  RowNormalizer const n = normalize_row(logits, s.runs, inv_t);
  top_candidates(logits, s.runs, allowed, kk, s.cand);
  std::size_t j = 0;
  for (auto const& c : s.cand) {
    ids[j] = c.second;
    probs[j] = static_cast<float>(std::exp(static_cast<double>((c.first - n.lmax) * inv_t) - n.log_z));
    ++j;
  }
  std::uint32_t next = 0;  // forbidden ids: the gaps between allowed runs
  for (std::size_t r = 0; r <= s.runs.size() && j < kk; ++r) {
    std::uint32_t const gap_end = r < s.runs.size() ? s.runs[r].begin : static_cast<std::uint32_t>(vocab);
    for (; next < gap_end && j < kk; ++next, ++j) {
      ids[j] = next;
      probs[j] = 0.0f;
    }
    if (r < s.runs.size()) next = s.runs[r].end;
  }
}

/// One row of probe_logprobs.
inline void logprobs_row(float const* logits, std::size_t vocab, float temperature, LogitMask const& mask,
                         std::uint32_t const* ids, std::size_t n_ids, float* out, LogitRowScratch& s) {
  allowed_runs(mask, vocab, s.runs);
  float const inv_t = 1.0f / temperature;
  RowNormalizer const n = normalize_row(logits, s.runs, inv_t);
  for (std::size_t j = 0; j < n_ids; ++j) {
    out[j] = mask.allows(ids[j]) ? static_cast<float>(static_cast<double>((logits[ids[j]] - n.lmax) * inv_t) - n.log_z)
                                 : -std::numeric_limits<float>::infinity();
  }
}

/// One row of probe_entropy: H = log Z - E[(l - lmax) / T], clamped at 0 against rounding.
inline float entropy_row(float const* logits, std::size_t vocab, float temperature, LogitMask const& mask,
                         LogitRowScratch& s) {
  allowed_runs(mask, vocab, s.runs);
  RowNormalizer const n = normalize_row(logits, s.runs, 1.0f / temperature);
  return static_cast<float>(std::max(0.0, n.log_z - n.sum_wd / n.sum_w));
}

}  // namespace piecrust::detail
