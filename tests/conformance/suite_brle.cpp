// The `brle` conformance suite (format: ../shared/conformance/README.md).
#include "suite.hpp"

#include <piecrust/core/brle.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace {

using piecrust::Brle;
using piecrust::conformance::Outcome;
using nlohmann::json;

std::vector<std::uint8_t> parse_bits(json const& v) {
  std::string const s = v.get<std::string>();
  std::vector<std::uint8_t> bits;
  bits.reserve(s.size());
  for (char const c : s) {
    if (c != '0' && c != '1') throw piecrust::InvalidArgument("bit string has a character other than 0/1: " + s);
    bits.push_back(c == '1' ? 1 : 0);
  }
  return bits;
}

std::string bits_string(std::vector<std::uint8_t> const& bits) {
  std::string s;
  for (auto const b : bits) s.push_back(b ? '1' : '0');
  return s;
}

Brle parse_runs(json const& v) { return Brle::from_runs(v.get<std::vector<Brle::run_type>>()); }

json runs_json(Brle const& b) { return json(std::vector<Brle::run_type>(b.runs().begin(), b.runs().end())); }

std::vector<std::uint8_t> parse_hex(std::string const& hex) {
  if (hex.size() % 2 != 0) throw piecrust::InvalidArgument("bytes_hex has odd length: " + hex);
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i < hex.size(); i += 2) out.push_back(static_cast<std::uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  return out;
}

Outcome expect_equal(json const& expected, json const& got) {
  if (expected == got) return Outcome::passed();
  return Outcome::failed("expected " + expected.dump() + ", got " + got.dump());
}

Outcome run_case(json const& c) {
  std::string const op = c.at("op").get<std::string>();
  if (op == "encode") return expect_equal(c.at("expect"), runs_json(Brle::from_bits(parse_bits(c.at("bits")))));
  if (op == "decode") return expect_equal(c.at("expect"), json(bits_string(parse_runs(c.at("runs")).to_bits())));
  if (op == "append") {
    Brle b = parse_runs(c.at("runs"));
    b.append(c.at("bit").get<int>() != 0);
    return expect_equal(c.at("expect"), runs_json(b));
  }
  if (op == "extend") {
    Brle b = parse_runs(c.at("runs"));
    b.extend(Brle::from_bits(parse_bits(c.at("with_bits"))));
    return expect_equal(c.at("expect"), runs_json(b));
  }
  if (op == "alternating") {
    bool bit = c.at("first_bit").get<int>() != 0;
    Brle b;
    for (std::size_t i = 0, n = c.at("count").get<std::size_t>(); i < n; ++i, bit = !bit) b.append(bit);
    return expect_equal(c.at("expect_num_runs"), json(b.num_runs()));
  }
  if (op == "from_bitmask_lsb") {
    auto const bytes = parse_hex(c.at("bytes_hex").get<std::string>());
    Brle const b = Brle::from_bitmask_lsb(bytes, c.at("nbits").get<std::size_t>());
    if (c.contains("expect")) return expect_equal(c.at("expect"), runs_json(b));
    return expect_equal(c.at("expect_bits"), json(bits_string(b.to_bits())));
  }
  if (op == "is_range_all") {
    Brle const b = parse_runs(c.at("runs"));
    bool const got = b.is_range_all(c.at("begin").get<std::size_t>(), c.at("end").get<std::size_t>(),
                                    c.at("value").get<int>() != 0);
    return expect_equal(json(c.at("expect").get<bool>()), json(got));
  }
  if (op == "and") {
    return expect_equal(c.at("expect"), runs_json(parse_runs(c.at("a")) & parse_runs(c.at("b"))));
  }
  return Outcome::failed("unknown op '" + op + "'");
}

}  // namespace

PIECRUST_CONFORMANCE_SUITE("brle", run_case);
