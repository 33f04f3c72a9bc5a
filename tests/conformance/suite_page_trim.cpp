// The `page_trim` conformance suite (format: ../shared/conformance/README.md).
#include "suite.hpp"

#include <piecrust/core/attention_mask.hpp>
#include <piecrust/core/trim_plan.hpp>

#include <cstdint>
#include <vector>

namespace {

using piecrust::AttentionMask;
using piecrust::Brle;
using piecrust::TrimPlan;
using piecrust::conformance::Outcome;
using nlohmann::json;

Outcome run_case(json const& c) {
  std::vector<AttentionMask> rows;
  for (json const& r : c.at("rows")) rows.push_back(AttentionMask::from_runs(r.get<std::vector<Brle::run_type>>()));
  TrimPlan const plan = TrimPlan::compute(c.at("page_size").get<std::uint32_t>(), c.at("kv_before").get<std::size_t>(),
                                          c.at("n_input").get<std::size_t>(), rows);
  json got_rows = json::array();
  for (AttentionMask const& r : plan.rows) {
    got_rows.push_back(std::vector<Brle::run_type>(r.bits().runs().begin(), r.bits().runs().end()));
  }
  json const& expect = c.at("expect");
  json const got_pages(plan.kept_pages);
  if (got_pages != expect.at("kept_pages")) {
    return Outcome::failed("kept_pages: expected " + expect.at("kept_pages").dump() + ", got " + got_pages.dump());
  }
  if (got_rows != expect.at("rows")) {
    return Outcome::failed("rows: expected " + expect.at("rows").dump() + ", got " + got_rows.dump());
  }
  return Outcome::passed();
}

}  // namespace

PIECRUST_CONFORMANCE_SUITE("page_trim", run_case);
