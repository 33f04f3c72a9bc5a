// piecrust-conformance SUITE FILE [FILE...]
// Reads JSON-lines vectors, runs each case through the named suite, prints one line per failure and a
// final "N passed, M failed, K skipped". Exits 0 if and only if nothing failed. A malformed line or a case
// that throws is a failure, never a crash.

#include "suite.hpp"

#include <exception>
#include <fstream>
#include <iostream>
#include <string>

namespace {

std::string case_label(nlohmann::json const& c, std::string const& file, std::size_t line) {
  std::string label = file + ":" + std::to_string(line);
  if (c.is_object()) {
    for (char const* key : {"id", "name", "op", "fn"}) {
      if (c.contains(key) && c[key].is_string()) return label + " " + c[key].get<std::string>();
    }
  }
  return label;
}

}  // namespace

int main(int argc, char** argv) {
  using piecrust::conformance::Outcome;
  auto& registry = piecrust::conformance::suites();
  if (argc < 3) {
    std::cerr << "usage: piecrust-conformance SUITE FILE [FILE...]\nsuites:";
    for (auto const& [name, fn] : registry) std::cerr << ' ' << name;
    std::cerr << '\n';
    return 2;
  }
  auto const suite = registry.find(argv[1]);
  if (suite == registry.end()) {
    std::cerr << "piecrust-conformance: unknown suite '" << argv[1] << "'\n";
    return 2;
  }

  std::size_t passed = 0, failed = 0, skipped = 0;
  for (int f = 2; f < argc; ++f) {
    std::string const file = argv[f];
    std::ifstream in(file);
    if (!in) {
      std::cout << file << ": cannot open\n";
      ++failed;
      continue;
    }
    std::string text;
    std::size_t line_no = 0;
    while (std::getline(in, text)) {
      ++line_no;
      if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json c;
      try {
        c = nlohmann::json::parse(text);
      } catch (std::exception const& e) {
        std::cout << file << ":" << line_no << ": malformed JSON: " << e.what() << '\n';
        ++failed;
        continue;
      }
      Outcome outcome;
      try {
        outcome = suite->second(c);
      } catch (std::exception const& e) {
        outcome = Outcome::failed(std::string("threw: ") + e.what());
      }
      switch (outcome.kind) {
        case Outcome::Kind::pass: ++passed; break;
        case Outcome::Kind::skip: ++skipped; break;
        case Outcome::Kind::fail:
          ++failed;
          std::cout << "FAIL " << case_label(c, file, line_no) << ": " << outcome.detail << '\n';
          break;
      }
    }
  }
  std::cout << passed << " passed, " << failed << " failed, " << skipped << " skipped\n";
  return failed == 0 ? 0 : 1;
}
