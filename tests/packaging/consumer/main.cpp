// Uses piecrust's core through the installed (or added) package and checks one result.
#include <piecrust/core.hpp>

#include <cstdio>

int main() {
  piecrust::PagePool pool(8, 16);
  piecrust::PageTable table(pool);
  table.reserve_working_pages(1);
  auto const row = piecrust::AttentionMask::sink_window(320, 4, 64);
  auto const plan = piecrust::TrimPlan::compute(16, 319, 1, {&row, 1});
  bool const ok = plan.kept_pages.size() == 5 && pool.free_count() == 7;
  std::printf("consumer: kept %zu pages, %zu free: %s\n", plan.kept_pages.size(), pool.free_count(), ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
