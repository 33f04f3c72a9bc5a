#pragma once
// The goodness-of-fit check of the sampling tests: draws of ids against an exact distribution, chi-square
// over the ids expected at least 5 times; the ids expected fewer times are pooled into one bin (one draw of
// an id of probability 1e-6 in 8,000 draws would otherwise add ~100 to chi-square), and when even the pool
// expects fewer than 5 draws its count is judged by its Poisson tail instead.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>

namespace piecrust::test {

/// Upper critical value of chi-square with df degrees of freedom for the standard-normal quantile z
/// (Wilson-Hilferty): z 4.753 for p = 1e-6, 3.719 for p = 1e-4.
[[nodiscard]] inline double chi_square_critical(double df, double z) {
  double const a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

/// P(X >= c) for X ~ Poisson(mean).
[[nodiscard]] inline double poisson_upper_tail(double mean, double c) {
  double term = std::exp(-mean), below = 0;  // P(X = k), P(X < k)
  for (double k = 0; k < c; ++k) {
    below += term;
    term *= mean / (k + 1);
  }
  return std::max(0.0, 1.0 - below);
}

struct DrawsFit {
  double chi = 0, df = -1, critical = 0;   // over the bins expected >= 5 times (df < 1: no test)
  double rare_expected = 0, rare_count = 0;  // the pooled ids expected < 5 times each
  double rare_tail = 1;                      // P(Poisson(rare_expected) >= rare_count) when the pool < 5
  bool outside = false;                      // an id of probability 0 was drawn

  /// Whether the draws fit at false-alarm probability `p` (the p of critical's z).
  [[nodiscard]] bool fits(double p) const { return !outside && (df < 1 || chi < critical) && rare_tail > p; }
};

/// counts [ids]: draws of each id; dist [ids]: the exact probabilities; z: the critical value's quantile.
[[nodiscard]] inline DrawsFit draws_fit(std::span<double const> dist, std::span<double const> counts, double z) {
  DrawsFit f;
  double n = 0;
  for (double const c : counts) n += c;
  for (std::size_t i = 0; i < dist.size(); ++i) {
    if (dist[i] == 0.0) {
      f.outside = f.outside || counts[i] != 0.0;
      continue;
    }
    double const e = dist[i] * n;
    if (e < 5) {
      f.rare_expected += e;
      f.rare_count += counts[i];
      continue;
    }
    f.chi += (counts[i] - e) * (counts[i] - e) / e;
    f.df += 1;
  }
  if (f.rare_expected >= 5) {
    f.chi += (f.rare_count - f.rare_expected) * (f.rare_count - f.rare_expected) / f.rare_expected;
    f.df += 1;
  } else if (f.rare_expected > 0) {
    f.rare_tail = poisson_upper_tail(f.rare_expected, f.rare_count);
  }
  if (f.df >= 1) f.critical = chi_square_critical(f.df, z);
  return f;
}

}  // namespace piecrust::test
