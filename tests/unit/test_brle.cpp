// Brle: encode/decode, append/extend, ranges, boolean ops, bitmask conversion, iteration — each checked
// against a plain vector of bits on fresh random inputs.
#include <catch2/catch.hpp>

#include <piecrust/core/brle.hpp>

#include <cstdint>
#include <random>
#include <vector>

using piecrust::Brle;

namespace {

std::vector<std::uint8_t> random_bits(std::mt19937& rng, std::size_t n, double p_switch) {
  std::bernoulli_distribution flip(p_switch);
  std::vector<std::uint8_t> bits(n);
  std::uint8_t cur = static_cast<std::uint8_t>(rng() & 1);
  for (auto& b : bits) {
    if (flip(rng)) cur ^= 1;
    b = cur;
  }
  return bits;
}

}  // namespace

TEST_CASE("Brle encodes and decodes the seeds' example", "[brle]") {
  Brle const b = Brle::from_runs({3, 2, 4, 1});
  CHECK(b.size() == 10);
  CHECK(b.to_bits() == std::vector<std::uint8_t>{0, 0, 0, 1, 1, 0, 0, 0, 0, 1});
  CHECK(Brle::from_bits(b.to_bits()).runs().size() == 4);
  CHECK(b.count(true) == 3);
  CHECK(b.count(false) == 7);
  CHECK(b.bit(3));
  CHECK_FALSE(b.bit(5));
}

TEST_CASE("Brle round trips random bit strings", "[brle]") {
  std::mt19937 rng(std::random_device{}());
  for (int trial = 0; trial < 200; ++trial) {
    auto const bits = random_bits(rng, rng() % 300, 0.2);
    Brle const b = Brle::from_bits(bits);
    REQUIRE(b.size() == bits.size());
    REQUIRE(b.to_bits() == bits);
    // Encoded form is canonical: no empty run except a leading one.
    for (std::size_t r = 1; r < b.num_runs(); ++r) REQUIRE(b.runs()[r] > 0);
    for (std::size_t i = 0; i < bits.size(); ++i) REQUIRE(b.bit(i) == (bits[i] != 0));
  }
}

TEST_CASE("Brle zero-length runs are legal and normalize away", "[brle]") {
  Brle const b = Brle::from_runs({0, 0, 2, 0, 0, 3, 1});
  CHECK(b.to_bits() == std::vector<std::uint8_t>{0, 0, 1, 1, 1, 0});
  Brle const n = b.normalized();
  CHECK(std::vector<std::uint32_t>(n.runs().begin(), n.runs().end()) == std::vector<std::uint32_t>{2, 3, 1});
  CHECK(b == n);
  CHECK(Brle::from_runs({0, 2}) == Brle::from_bits(std::vector<int>{1, 1}));
}

TEST_CASE("Brle append and extend match bit-vector concatenation", "[brle]") {
  std::mt19937 rng(std::random_device{}());
  for (int trial = 0; trial < 100; ++trial) {
    auto a = random_bits(rng, rng() % 100, 0.3);
    auto const c = random_bits(rng, rng() % 100, 0.3);
    Brle b = Brle::from_bits(a);
    b.extend(Brle::from_bits(c));
    a.insert(a.end(), c.begin(), c.end());
    REQUIRE(b.to_bits() == a);
    bool const bit = (rng() & 1) != 0;
    std::size_t const n = rng() % 5;
    b.append(bit, n);
    a.insert(a.end(), n, bit ? 1 : 0);
    REQUIRE(b.to_bits() == a);
  }
}

TEST_CASE("Brle is_range_all agrees with a scan", "[brle]") {
  std::mt19937 rng(std::random_device{}());
  for (int trial = 0; trial < 100; ++trial) {
    auto const bits = random_bits(rng, 1 + rng() % 64, 0.15);
    Brle const b = Brle::from_bits(bits);
    for (std::size_t begin = 0; begin <= bits.size(); ++begin) {
      for (std::size_t end = begin; end <= bits.size() + 1; ++end) {
        for (bool const value : {false, true}) {
          bool expected = end <= bits.size();
          for (std::size_t i = begin; expected && i < end; ++i) expected = (bits[i] != 0) == value;
          if (begin == end) expected = true;
          REQUIRE(b.is_range_all(begin, end, value) == expected);
        }
      }
    }
  }
  CHECK_THROWS_AS(Brle::from_runs({4}).is_range_all(3, 2, false), piecrust::InvalidArgument);
}

TEST_CASE("Brle AND / OR / XOR / NOT match bitwise operations", "[brle]") {
  std::mt19937 rng(std::random_device{}());
  for (int trial = 0; trial < 200; ++trial) {
    std::size_t const n = rng() % 200;
    auto const x = random_bits(rng, n, 0.25);
    auto const y = random_bits(rng, n, 0.1);
    Brle const a = Brle::from_bits(x);
    Brle const b = Brle::from_bits(y);
    std::vector<std::uint8_t> and_bits(n), or_bits(n), xor_bits(n), not_bits(n);
    for (std::size_t i = 0; i < n; ++i) {
      and_bits[i] = x[i] & y[i];
      or_bits[i] = x[i] | y[i];
      xor_bits[i] = x[i] ^ y[i];
      not_bits[i] = x[i] ^ 1;
    }
    REQUIRE((a & b).to_bits() == and_bits);
    REQUIRE((a | b).to_bits() == or_bits);
    REQUIRE((a ^ b).to_bits() == xor_bits);
    REQUIRE((~a).to_bits() == not_bits);
  }
}

TEST_CASE("Brle boolean ops on unequal lengths throw and leave operands unchanged", "[brle][errors]") {
  Brle const a = Brle::from_runs({2, 3});
  Brle const b = Brle::from_runs({4});
  CHECK_THROWS_WITH(a & b, Catch::Contains("sizes differ (5 and 4)"));
  CHECK_THROWS_AS(a | b, piecrust::InvalidArgument);
  CHECK(a.size() == 5);
  CHECK(b.size() == 4);
}

TEST_CASE("Brle LSB-first bitmask conversion round trips", "[brle]") {
  std::mt19937 rng(std::random_device{}());
  for (int trial = 0; trial < 100; ++trial) {
    auto const bits = random_bits(rng, rng() % 150, 0.3);
    Brle const b = Brle::from_bits(bits);
    auto const bytes = b.to_bitmask_lsb();
    REQUIRE(bytes.size() == (bits.size() + 7) / 8);
    for (std::size_t k = 0; k < bits.size(); ++k) REQUIRE(((bytes[k / 8] >> (k % 8)) & 1) == bits[k]);
    REQUIRE(Brle::from_bitmask_lsb(bytes, bits.size()).to_bits() == bits);
  }
  std::uint8_t const one[] = {0x0b};
  CHECK(Brle::from_bitmask_lsb(one, 4).to_bits() == std::vector<std::uint8_t>{1, 1, 0, 1});
  CHECK_THROWS_WITH(Brle::from_bitmask_lsb(one, 9), Catch::Contains("nbits = 9"));
}

TEST_CASE("Brle iteration visits every run in order without allocating", "[brle]") {
  Brle const b = Brle::from_runs({0, 3, 0, 2});
  std::vector<std::size_t> begins, lengths;
  std::vector<bool> bits;
  for (Brle::Run const r : b) {
    begins.push_back(r.begin);
    lengths.push_back(r.length);
    bits.push_back(r.bit);
  }
  CHECK(begins == std::vector<std::size_t>{0, 0, 3, 3});
  CHECK(lengths == std::vector<std::size_t>{0, 3, 0, 2});
  CHECK(bits == std::vector<bool>{false, true, false, true});
}

TEST_CASE("Brle slice returns the bits of a range in canonical form", "[brle]") {
  std::mt19937 rng(std::random_device{}());
  for (int trial = 0; trial < 100; ++trial) {
    auto const bits = random_bits(rng, 1 + rng() % 80, 0.2);
    Brle const b = Brle::from_bits(bits);
    std::size_t const begin = rng() % bits.size();
    std::size_t const end = begin + rng() % (bits.size() - begin + 1);
    REQUIRE(b.slice(begin, end).to_bits() == std::vector<std::uint8_t>(bits.begin() + static_cast<long>(begin),
                                                                       bits.begin() + static_cast<long>(end)));
  }
  CHECK_THROWS_AS(Brle::from_runs({3}).slice(1, 4), piecrust::OutOfRange);
  CHECK_THROWS_AS(Brle::from_runs({3}).bit(3), piecrust::OutOfRange);
}

TEST_CASE("Brle very long runs split across the run type's limit", "[brle]") {
  Brle b;
  std::size_t const huge = std::size_t{UINT32_MAX} + 10;
  b.append(true, huge);
  CHECK(b.size() == huge);
  CHECK(b.count(true) == huge);
  CHECK(b.is_range_all(0, huge, true));
}

TEST_CASE("Brle sizes past max_size throw LimitExceeded naming the value and change nothing", "[brle][errors]") {
  using Catch::Contains;
  STATIC_REQUIRE(Brle::max_size == std::size_t{1} << 48);
  // from_runs: 65537 runs of 2^32 - 1 bits pass 2^48 at the last run.
  std::vector<std::uint32_t> const runs(65537, UINT32_MAX);
  CHECK_THROWS_AS(Brle::from_runs(runs), piecrust::LimitExceeded);
  CHECK_THROWS_WITH(Brle::from_runs(runs), Contains("runs[0..65536] total 281479271612415") &&
                                               Contains("max_size = 281474976710656"));
  CHECK(Brle::from_runs(std::vector<std::uint32_t>(65536, UINT32_MAX)).size() == 65536 * std::size_t{UINT32_MAX});

  // append: refused before a run is added (one append of 2^60 would need 2^29 runs).
  Brle b = Brle::from_runs({3, 2});
  CHECK_THROWS_WITH(b.append(true, std::size_t{1} << 60), Contains("n = 1152921504606846976 on a size of 5"));
  CHECK_THROWS_AS(b.append(false, Brle::max_size - 4), piecrust::LimitExceeded);
  CHECK(b.size() == 5);
  CHECK(std::vector<std::uint32_t>(b.runs().begin(), b.runs().end()) == std::vector<std::uint32_t>{3, 2});
  b.append(false, Brle::max_size - 5);
  CHECK(b.size() == Brle::max_size);

  // extend: checked as a whole, so nothing is half-appended.
  Brle big;
  big.append(true, Brle::max_size - 1);
  Brle c = Brle::from_runs({1, 1});
  Brle const c_before = c;
  CHECK_THROWS_WITH(c.extend(big), Contains("Brle::extend") && Contains("on a size of 2"));
  CHECK(c.size() == 2);
  CHECK(std::vector<std::uint32_t>(c.runs().begin(), c.runs().end()) == std::vector<std::uint32_t>{1, 1});
  CHECK(c == c_before);
}

TEST_CASE("Brle extend with itself doubles the bits", "[brle]") {
  std::mt19937 rng(std::random_device{}());
  for (int trial = 0; trial < 50; ++trial) {
    auto bits = random_bits(rng, rng() % 120, 0.3);
    Brle b = Brle::from_bits(bits);
    b.extend(b);
    bits.insert(bits.end(), bits.begin(), bits.end());
    REQUIRE(b.to_bits() == bits);
  }
}
