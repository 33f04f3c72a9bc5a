#pragma once
// The conformance runner's suite interface. A suite turns one JSON case into pass / fail / skip; the runner
// owns files, lines, counting and the exit code. Suites register themselves with PIECRUST_CONFORMANCE_SUITE.

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <string>

namespace piecrust::conformance {

struct Outcome {
  enum class Kind { pass, fail, skip };
  Kind kind = Kind::pass;
  std::string detail;  // for fail: what was expected and what came out; for skip: the reason

  static Outcome passed() { return {Kind::pass, {}}; }
  static Outcome failed(std::string why) { return {Kind::fail, std::move(why)}; }
  static Outcome skipped(std::string why) { return {Kind::skip, std::move(why)}; }
};

using SuiteFn = std::function<Outcome(nlohmann::json const& test_case)>;

inline std::map<std::string, SuiteFn>& suites() {
  static std::map<std::string, SuiteFn> registry;
  return registry;
}

struct SuiteRegistration {
  SuiteRegistration(std::string const& name, SuiteFn fn) { suites().emplace(name, std::move(fn)); }
};

/// Compact JSON text of a value, for failure messages.
inline std::string show(nlohmann::json const& v) { return v.dump(); }

}  // namespace piecrust::conformance

#define PIECRUST_CONFORMANCE_CAT2(a, b) a##b
#define PIECRUST_CONFORMANCE_CAT(a, b) PIECRUST_CONFORMANCE_CAT2(a, b)
/// PIECRUST_CONFORMANCE_SUITE("brle", run_brle_case); at namespace scope in a suite_*.cpp file.
#define PIECRUST_CONFORMANCE_SUITE(name, fn)                                                       \
  static ::piecrust::conformance::SuiteRegistration PIECRUST_CONFORMANCE_CAT(piecrust_suite_, \
                                                                             __LINE__)(name, fn)
