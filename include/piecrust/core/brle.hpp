#pragma once
// Brle: bit run-length encoding, Pie's wire format for attention and logit masks.
//
// A Brle is a list of run lengths of alternating bits. The first run is always a run of 0-bits and may be
// empty; zero-length runs anywhere are legal and contribute nothing. [3, 2, 4, 1] decodes to 0001100001.
// A raw Brle carries no meaning for its bits: AttentionMask and LogitMask give them a polarity.
// Source: Pie's inferlet docs (seeds, "Attention masks (BRLE)") and Pie's brle module.

#include <piecrust/core/error.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <span>
#include <utility>
#include <vector>

namespace piecrust {

class Brle {
 public:
  using run_type = std::uint32_t;

  /// One run while iterating: its bit, its first bit index and its length (possibly 0).
  struct Run {
    bool bit;
    std::size_t begin;
    std::size_t length;
    [[nodiscard]] std::size_t end() const { return begin + length; }
  };

  /// Allocation-free forward iteration over the runs, zero-length runs included.
  class RunIterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Run;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = Run;

    RunIterator() = default;
    RunIterator(run_type const* run, std::size_t index, std::size_t begin)
        : run_(run), index_(index), begin_(begin) {}
    Run operator*() const { return Run{(index_ % 2) == 1, begin_, *run_}; }
    RunIterator& operator++() {
      begin_ += *run_;
      ++run_;
      ++index_;
      return *this;
    }
    RunIterator operator++(int) {
      RunIterator old = *this;
      ++*this;
      return old;
    }
    friend bool operator==(RunIterator const& a, RunIterator const& b) { return a.run_ == b.run_; }

   private:
    run_type const* run_ = nullptr;
    std::size_t index_ = 0;
    std::size_t begin_ = 0;
  };

  /// The most bits a Brle may hold, 2^48. Masks address at most 2^32 positions or ids; the cap keeps one
  /// huge append (a run per 2^32 - 1 bits) from exhausting memory.
  static constexpr std::size_t max_size = std::size_t{1} << 48;

  Brle() = default;

  /// Takes run lengths as given (first run = 0-bits). Throws LimitExceeded if they total more than max_size.
  static Brle from_runs(std::vector<run_type> runs) {
    Brle b;
    std::size_t total = 0;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      total += runs[i];  // cannot wrap: total <= max_size before each add
      if (total > max_size) {
        detail::fail<LimitExceeded>("Brle::from_runs: runs[0..", i, "] total ", total, " bits, above max_size = ",
                                    max_size);
      }
    }
    b.runs_ = std::move(runs);
    b.size_ = total;
    return b;
  }

  /// Encodes a sequence of bits (anything convertible to bool). The empty sequence encodes to [].
  template <class Range>
  static Brle from_bits(Range const& bits) {
    Brle b;
    for (auto const& v : bits) b.append(static_cast<bool>(v));
    return b;
  }

  /// Decodes `nbits` bits packed least-significant-bit first: bit k is bit (k % 8) of byte k / 8.
  static Brle from_bitmask_lsb(std::span<std::uint8_t const> bytes, std::size_t nbits) {
    if (nbits > bytes.size() * 8) {
      detail::fail<InvalidArgument>("Brle::from_bitmask_lsb: nbits = ", nbits, " needs ", nbits / 8 + (nbits % 8 != 0),
                                    " bytes, got ", bytes.size());
    }
    Brle b;
    std::size_t k = 0;
    while (k < nbits) {
      // Whole bytes of equal bits extend a run without per-bit work.
      if (k % 8 == 0 && nbits - k >= 8 && (bytes[k / 8] == 0x00 || bytes[k / 8] == 0xff)) {
        b.append(bytes[k / 8] == 0xff, 8);
        k += 8;
        continue;
      }
      b.append(((bytes[k / 8] >> (k % 8)) & 1u) != 0);
      ++k;
    }
    return b;
  }

  /// Number of bits.
  [[nodiscard]] std::size_t size() const { return size_; }
  [[nodiscard]] bool empty() const { return size_ == 0; }
  [[nodiscard]] std::size_t num_runs() const { return runs_.size(); }
  [[nodiscard]] std::span<run_type const> runs() const { return runs_; }

  [[nodiscard]] RunIterator begin() const { return {runs_.data(), 0, 0}; }
  [[nodiscard]] RunIterator end() const { return {runs_.data() + runs_.size(), runs_.size(), size_}; }

  /// The bit at index i. Throws OutOfRange if i >= size().
  [[nodiscard]] bool bit(std::size_t i) const {
    if (i >= size_) detail::fail<OutOfRange>("Brle::bit: index = ", i, " >= size = ", size_);
    std::size_t pos = 0;
    for (std::size_t r = 0; r < runs_.size(); ++r) {
      pos += runs_[r];
      if (i < pos) return (r % 2) == 1;
    }
    return false;  // unreachable: i < size_
  }

  /// Number of bits equal to `value`.
  [[nodiscard]] std::size_t count(bool value) const {
    std::size_t n = 0;
    for (std::size_t r = value ? 1 : 0; r < runs_.size(); r += 2) n += runs_[r];
    return n;
  }

  /// The bits, one byte (0 or 1) per bit.
  [[nodiscard]] std::vector<std::uint8_t> to_bits() const {
    std::vector<std::uint8_t> out;  // [size()]
    out.reserve(size_);
    for (Run const r : *this) out.insert(out.end(), r.length, r.bit ? 1 : 0);
    return out;
  }

  /// The bits packed least-significant-bit first, ceil(size() / 8) bytes, trailing bits zero.
  [[nodiscard]] std::vector<std::uint8_t> to_bitmask_lsb() const {
    std::vector<std::uint8_t> out((size_ + 7) / 8, 0);  // [ceil(size / 8)]
    for (Run const r : *this) {
      if (!r.bit) continue;
      for (std::size_t k = r.begin; k < r.end(); ++k) out[k / 8] |= static_cast<std::uint8_t>(1u << (k % 8));
    }
    return out;
  }

  /// Appends n copies of `bit`, merging with the last run when it holds the same bit. Throws LimitExceeded
  /// (nothing appended) if the size would pass max_size.
  Brle& append(bool value, std::size_t n = 1) {
    if (n == 0) return *this;
    if (n > max_size - size_) {
      detail::fail<LimitExceeded>("Brle::append: n = ", n, " on a size of ", size_, " passes max_size = ", max_size);
    }
    if (runs_.empty()) {
      if (value) runs_.push_back(0);  // the leading 0-run is empty
      runs_.push_back(0);
    } else if (last_bit_of_runs() != value) {
      runs_.push_back(0);
    }
    for (;;) {
      std::size_t const take = std::min<std::size_t>(std::numeric_limits<run_type>::max() - runs_.back(), n);
      runs_.back() += static_cast<run_type>(take);
      size_ += take;
      n -= take;
      if (n == 0) break;
      // Longer than one run can hold: continue after an empty run of the other bit.
      runs_.push_back(0);
      runs_.push_back(0);
    }
    return *this;
  }

  /// Appends all bits of `other` (which may be *this). Throws LimitExceeded (nothing appended) if the size
  /// would pass max_size.
  Brle& extend(Brle const& other) {
    if (other.size_ > max_size - size_) {
      detail::fail<LimitExceeded>("Brle::extend: ", other.size_, " bits on a size of ", size_, " pass max_size = ",
                                  max_size);
    }
    if (&other == this) return extend(Brle(other));  // appending reallocates the runs being read
    for (Run const r : other) append(r.bit, r.length);
    return *this;
  }

  /// True if every bit in [begin, end) equals `value`. An empty range is true; a range reaching past the
  /// end is false. Throws InvalidArgument if begin > end.
  [[nodiscard]] bool is_range_all(std::size_t range_begin, std::size_t range_end, bool value) const {
    if (range_begin > range_end) {
      detail::fail<InvalidArgument>("Brle::is_range_all: begin = ", range_begin, " > end = ", range_end);
    }
    if (range_begin == range_end) return true;
    if (range_end > size_) return false;
    for (Run const r : *this) {
      if (r.end() <= range_begin || r.length == 0) continue;
      if (r.begin >= range_end) break;
      if (r.bit != value) return false;
    }
    return true;
  }

  /// The same bits in canonical form: no zero-length runs except a leading empty 0-run when the first bit is 1
  /// and the empty runs that split a run longer than run_type can hold.
  [[nodiscard]] Brle normalized() const {
    Brle out;
    for (Run const r : *this) out.append(r.bit, r.length);
    return out;
  }

  /// The bits in [range_begin, range_end) as a new Brle (canonical form). Throws OutOfRange past the end.
  [[nodiscard]] Brle slice(std::size_t range_begin, std::size_t range_end) const {
    if (range_begin > range_end || range_end > size_) {
      detail::fail<OutOfRange>("Brle::slice: [", range_begin, ", ", range_end, ") is not inside [0, ", size_,
                               ")");
    }
    Brle out;
    for (Run const r : *this) {
      std::size_t const b = std::max(r.begin, range_begin);
      std::size_t const e = std::min(r.end(), range_end);
      if (b < e) out.append(r.bit, e - b);
      if (r.end() >= range_end) break;
    }
    return out;
  }

  friend Brle operator~(Brle const& a) {
    Brle out;
    for (Run const r : a) out.append(!r.bit, r.length);
    return out;
  }
  friend Brle operator&(Brle const& a, Brle const& b) { return combine(a, b, "&", [](bool x, bool y) { return x && y; }); }
  friend Brle operator|(Brle const& a, Brle const& b) { return combine(a, b, "|", [](bool x, bool y) { return x || y; }); }
  friend Brle operator^(Brle const& a, Brle const& b) { return combine(a, b, "^", [](bool x, bool y) { return x != y; }); }

  /// Equal bits (the run lists may differ: [0, 0, 2] == [2]). Compare runs() for structural equality.
  friend bool operator==(Brle const& a, Brle const& b) {
    if (a.size_ != b.size_) return false;
    auto const na = a.normalized();
    auto const nb = b.normalized();
    return na.runs_ == nb.runs_;
  }

 private:
  [[nodiscard]] bool last_bit_of_runs() const { return (runs_.size() - 1) % 2 == 1; }

  // Merges the two run lists in one pass: O(runs of a + runs of b), no per-bit work.
  template <class Op>
  static Brle combine(Brle const& a, Brle const& b, char const* op_name, Op op) {
    if (a.size_ != b.size_) {
      detail::fail<InvalidArgument>("Brle operator", op_name, ": sizes differ (", a.size_, " and ", b.size_, ")");
    }
    Brle out;
    auto ia = a.begin(), ea = a.end();
    auto ib = b.begin(), eb = b.end();
    std::size_t pos = 0;
    while (pos < a.size_) {
      while (ia != ea && (*ia).end() <= pos) ++ia;
      while (ib != eb && (*ib).end() <= pos) ++ib;
      Run const ra = *ia;
      Run const rb = *ib;
      std::size_t const next = std::min(ra.end(), rb.end());
      out.append(op(ra.bit, rb.bit), next - pos);
      pos = next;
    }
    return out;
  }

  std::vector<run_type> runs_;  // [num_runs] alternating run lengths, first = 0-bits
  std::size_t size_ = 0;        // sum of runs_
};

}  // namespace piecrust
