// libFuzzer target for Brle, AttentionMask and LogitMask built from arbitrary run lists, sizes and id lists:
// every construction must validate or throw a piecrust::Error (leaving its operands as they were), and what
// is built must agree with a plain bit vector wherever one is small enough to hold.
//
// Input: a stream read front to back; a run length is one byte below 0xf8, or 0xf8 followed by a 32-bit
// little-endian length (runs up to 2^32 - 1). Missing bytes read as zero.

#include <piecrust/core/attention_mask.hpp>
#include <piecrust/core/brle.hpp>
#include <piecrust/core/logit_mask.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <span>
#include <vector>

// A macro only to report the line of the invariant (clang 14 has no std::source_location).
#define PIECRUST_FUZZ_REQUIRE(cond) ((cond) ? void() : broken(__LINE__))

namespace {

using piecrust::AttentionMask;
using piecrust::Brle;
using piecrust::LogitMask;

constexpr std::size_t small = 4096;  // sizes up to this are checked bit by bit

// Breaks the fuzzer's run with a report when an invariant does not hold (not an input error: a bug).
[[noreturn]] void broken(int line) {
  std::fprintf(stderr, "invariant failed at line %d\n", line);
  std::abort();
}

class Input {
 public:
  Input(std::uint8_t const* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t u8() { return i_ < size_ ? data_[i_++] : 0; }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v |= std::uint32_t{u8()} << (8 * k);
    return v;
  }
  std::uint64_t u64() { return std::uint64_t{u32()} | (std::uint64_t{u32()} << 32); }
  std::uint32_t run() {
    std::uint8_t const b = u8();
    return b < 0xf8 ? b : u32();
  }
  /// A size: mostly small, sometimes past 2^32, at Brle::max_size or anywhere in 64 bits.
  std::uint64_t size_value() {
    switch (u8() % 16) {
      case 0: return u64();
      case 1: return Brle::max_size - u8() + 128;  // 2^17 runs each time: rare, to keep the rate up
      case 2:
      case 3: return u64() >> 28;
      default: return u32() % 10000;
    }
  }
  std::vector<std::uint32_t> runs() {
    std::vector<std::uint32_t> out(u8() % 48);  // [count]
    for (auto& r : out) r = run();
    return out;
  }

 private:
  std::uint8_t const* data_;
  std::size_t size_;
  std::size_t i_ = 0;
};

/// The bits a run list spells, or nothing when they would be too many to hold.
std::vector<std::uint8_t> spell(std::span<std::uint32_t const> runs, bool& fits) {
  std::size_t total = 0;
  for (std::uint32_t const r : runs) total += r;
  fits = total <= small;
  std::vector<std::uint8_t> bits;  // [total] when it fits
  if (!fits) return bits;
  for (std::size_t i = 0; i < runs.size(); ++i) bits.insert(bits.end(), runs[i], i % 2 == 1 ? 1 : 0);
  return bits;
}

std::vector<std::uint32_t> runs_of(Brle const& b) { return {b.runs().begin(), b.runs().end()}; }

void check_brle(Brle const& b, std::vector<std::uint32_t> const& runs, Input& in) {
  bool fits = false;
  auto const bits = spell(runs, fits);
  PIECRUST_FUZZ_REQUIRE(b.count(true) + b.count(false) == b.size());
  std::size_t walked = 0;
  for (Brle::Run const r : b) {
    PIECRUST_FUZZ_REQUIRE(r.begin == walked);
    walked += r.length;
  }
  PIECRUST_FUZZ_REQUIRE(walked == b.size());
  Brle const n = b.normalized();
  PIECRUST_FUZZ_REQUIRE(n == b && n.size() == b.size());
  // Canonical: the only empty runs are a leading one and those that split a run longer than a run can hold.
  for (std::size_t r = 1; r < n.num_runs(); ++r) {
    PIECRUST_FUZZ_REQUIRE(n.runs()[r] > 0 || (n.runs()[r - 1] == UINT32_MAX && r + 1 < n.num_runs()));
  }
  if (fits) {
    PIECRUST_FUZZ_REQUIRE(b.to_bits() == bits);
    PIECRUST_FUZZ_REQUIRE(Brle::from_bits(bits) == b);
    auto const packed = b.to_bitmask_lsb();
    PIECRUST_FUZZ_REQUIRE(Brle::from_bitmask_lsb(packed, bits.size()) == b);
    for (int k = 0; k < 4 && !bits.empty(); ++k) {
      std::size_t const i = in.u32() % bits.size();
      PIECRUST_FUZZ_REQUIRE(b.bit(i) == (bits[i] != 0));
    }
  }
  // Ranges and slices anywhere, the end included.
  for (int k = 0; k < 4; ++k) {
    std::size_t const lo = b.size() == 0 ? 0 : in.u64() % (b.size() + 1);
    std::size_t const hi = lo + (b.size() == lo ? 0 : in.u64() % (b.size() - lo + 1));
    Brle const s = b.slice(lo, hi);
    PIECRUST_FUZZ_REQUIRE(s.size() == hi - lo);
    for (bool const v : {false, true}) {
      PIECRUST_FUZZ_REQUIRE(b.is_range_all(lo, hi, v) == (s.count(v) == s.size()));
    }
    if (fits) {
      PIECRUST_FUZZ_REQUIRE(s.to_bits() == std::vector<std::uint8_t>(bits.begin() + static_cast<std::ptrdiff_t>(lo),
                                                       bits.begin() + static_cast<std::ptrdiff_t>(hi)));
    }
  }
  bool threw = false;
  try {
    (void)b.slice(b.size(), b.size() + 1 + in.u8());
  } catch (piecrust::OutOfRange const&) {
    threw = true;
  }
  PIECRUST_FUZZ_REQUIRE(threw);
  threw = false;
  try {
    (void)b.bit(b.size() + in.u8());
  } catch (piecrust::OutOfRange const&) {
    threw = true;
  }
  PIECRUST_FUZZ_REQUIRE(threw);
}

void check_ops(Brle const& a, Brle const& b) {
  if (a.size() != b.size()) {
    auto const ra = runs_of(a), rb = runs_of(b);
    for (int op = 0; op < 3; ++op) {
      bool threw = false;
      try {
        (void)(op == 0 ? a & b : op == 1 ? a | b : a ^ b);
      } catch (piecrust::InvalidArgument const&) {
        threw = true;
      }
      PIECRUST_FUZZ_REQUIRE(threw);
    }
    PIECRUST_FUZZ_REQUIRE(runs_of(a) == ra && runs_of(b) == rb);
    return;
  }
  Brle const x = a & b, o = a | b, e = a ^ b, na = ~a;
  PIECRUST_FUZZ_REQUIRE(x.size() == a.size() && o.size() == a.size() && e.size() == a.size() && na.size() == a.size());
  PIECRUST_FUZZ_REQUIRE(x.count(true) + o.count(true) == a.count(true) + b.count(true));
  PIECRUST_FUZZ_REQUIRE(e.count(true) == o.count(true) - x.count(true));
  PIECRUST_FUZZ_REQUIRE(na.count(true) == a.count(false));
  PIECRUST_FUZZ_REQUIRE((~na) == a);
  PIECRUST_FUZZ_REQUIRE((a ^ a).count(true) == 0);
  if (a.size() <= small) {
    auto const ba = a.to_bits(), bb = b.to_bits(), bx = x.to_bits(), bo = o.to_bits();
    for (std::size_t i = 0; i < ba.size(); ++i) PIECRUST_FUZZ_REQUIRE(bx[i] == (ba[i] & bb[i]) && bo[i] == (ba[i] | bb[i]));
  }
}

void check_append(Brle b, Input& in) {
  auto const before = runs_of(b);
  std::size_t const size = b.size();
  bool const bit = (in.u8() & 1) != 0;
  std::uint64_t const n = in.size_value();
  try {
    b.append(bit, n);
    PIECRUST_FUZZ_REQUIRE(n <= Brle::max_size - size && b.size() == size + n);
    PIECRUST_FUZZ_REQUIRE(b.slice(size, b.size()).count(bit) == n);
  } catch (piecrust::LimitExceeded const&) {
    PIECRUST_FUZZ_REQUIRE(n > Brle::max_size - size);
    PIECRUST_FUZZ_REQUIRE(runs_of(b) == before && b.size() == size);
  }
  Brle doubled = b;
  try {
    doubled.extend(doubled);
    PIECRUST_FUZZ_REQUIRE(doubled.size() == 2 * b.size());
    PIECRUST_FUZZ_REQUIRE(doubled.slice(0, b.size()) == b && doubled.slice(b.size(), doubled.size()) == b);
  } catch (piecrust::LimitExceeded const&) {
    PIECRUST_FUZZ_REQUIRE(b.size() > Brle::max_size - b.size());
    PIECRUST_FUZZ_REQUIRE(doubled == b);
  }
}

void check_attention(std::vector<std::uint32_t> const& runs, Input& in) {
  AttentionMask const m = AttentionMask::from_runs(runs);
  bool fits = false;
  auto const bits = spell(runs, fits);
  PIECRUST_FUZZ_REQUIRE(m.attended_count() + m.bits().count(true) == m.size());
  PIECRUST_FUZZ_REQUIRE(m.masked(m.size()) && m.masks_all(m.size(), m.size() + 1 + in.u8()));
  if (fits) {
    for (std::size_t i = 0; i < bits.size(); ++i) PIECRUST_FUZZ_REQUIRE(m.masked(i) == (bits[i] != 0));
    std::size_t const lo = in.u8() % (bits.size() + 2), hi = lo + in.u8() % 8;
    bool all = true;
    for (std::size_t i = lo; i < hi; ++i) all = all && (i >= bits.size() || bits[i] != 0);
    PIECRUST_FUZZ_REQUIRE(m.masks_all(lo, hi) == all);
  }
  // The named builders over fuzzer-chosen sizes (past the cap they must refuse, not allocate).
  std::uint64_t const total = in.size_value();
  std::uint64_t const window = in.size_value(), sink = in.size_value();
  try {
    AttentionMask const w = AttentionMask::window(total, window);
    PIECRUST_FUZZ_REQUIRE(w.size() == total && w.attended_count() == std::min(total, window));
    AttentionMask const s = AttentionMask::sink_window(total, sink, window);
    bool const all = sink >= total || window >= total - sink;
    PIECRUST_FUZZ_REQUIRE(s.size() == total && s.attended_count() == (all ? total : sink + window));
    PIECRUST_FUZZ_REQUIRE(AttentionMask::causal(total).attended_count() == total);
  } catch (piecrust::LimitExceeded const&) {
    PIECRUST_FUZZ_REQUIRE(total > Brle::max_size);
  }
}

void check_logit(Input& in, Brle const& raw) {
  std::size_t const vocab = in.u8() & 1 ? in.size_value() : 1 + in.u32() % small;
  std::vector<std::uint32_t> ids(in.u8() % 32);  // [count]
  for (auto& id : ids) {
    std::uint32_t const v = in.u32();
    id = (in.u8() & 1) || vocab >= LogitMask::max_vocab ? v : static_cast<std::uint32_t>(v % (vocab + 1));
  }
  bool const vocab_ok = vocab >= 1 && vocab <= LogitMask::max_vocab;
  bool const ids_ok = std::all_of(ids.begin(), ids.end(), [&](std::uint32_t id) { return id < vocab; });
  std::set<std::uint32_t> const listed(ids.begin(), ids.end());
  try {
    LogitMask const allow = LogitMask::allow(ids, vocab);
    LogitMask const forbid = LogitMask::forbid(ids, vocab);
    PIECRUST_FUZZ_REQUIRE(vocab_ok && ids_ok);
    PIECRUST_FUZZ_REQUIRE(allow.size() == vocab && forbid.size() == vocab);
    PIECRUST_FUZZ_REQUIRE(allow.allowed_count(vocab) == listed.size() && forbid.allowed_count(vocab) == vocab - listed.size());
    for (std::uint32_t const id : listed) PIECRUST_FUZZ_REQUIRE(allow.allows(id) && !forbid.allows(id));
    PIECRUST_FUZZ_REQUIRE((allow & forbid).allowed_count(vocab) == 0);
  } catch (piecrust::InvalidArgument const&) {
    PIECRUST_FUZZ_REQUIRE(!vocab_ok);
  } catch (piecrust::OutOfRange const&) {
    PIECRUST_FUZZ_REQUIRE(vocab_ok && !ids_ok);
  }

  std::vector<LogitMask::IdRange> ranges(in.u8() % 8);  // [count]
  for (auto& r : ranges) r = {in.u32() % 600, in.u32() % 600};
  try {
    LogitMask const m = LogitMask::allow_ranges(ranges, vocab);
    PIECRUST_FUZZ_REQUIRE(vocab_ok && m.size() == vocab);
    std::set<std::uint32_t> covered;
    for (auto const r : ranges) {
      PIECRUST_FUZZ_REQUIRE(r.begin <= r.end && r.end <= vocab);
      for (std::uint32_t id = r.begin; id < r.end; ++id) covered.insert(id);
    }
    PIECRUST_FUZZ_REQUIRE(m.allowed_count(vocab) == covered.size());
    for (std::uint32_t const id : covered) PIECRUST_FUZZ_REQUIRE(m.allows(id));
  } catch (piecrust::Error const&) {
    // Refused: a bad vocabulary, a range backwards or past it (the builder names which).
    bool bad = !vocab_ok;
    for (auto const r : ranges) bad = bad || r.begin > r.end || r.end > vocab;
    PIECRUST_FUZZ_REQUIRE(bad);
  }

  // A raw Brle as a mask: AND with a mask of another size is refused and changes nothing.
  LogitMask wrapped(raw);
  LogitMask const other = LogitMask::allow({0}, raw.size() < LogitMask::max_vocab ? raw.size() + 1 : 1);
  LogitMask before = wrapped;
  try {
    wrapped &= other;
    PIECRUST_FUZZ_REQUIRE(raw.empty());
  } catch (piecrust::InvalidArgument const&) {
    PIECRUST_FUZZ_REQUIRE(!raw.empty() && wrapped == before);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  Input in(data, size);
  auto const runs_a = in.runs();
  auto const runs_b = in.runs();
  Brle const a = Brle::from_runs(runs_a);  // 48 runs of < 2^32 stay far below max_size: must not throw
  Brle const b = Brle::from_runs(runs_b);
  check_brle(a, runs_a, in);
  check_ops(a, b);
  check_ops(a, a);
  check_append(a, in);
  check_attention(runs_b, in);
  check_logit(in, a);
  return 0;
}
