// The step builder (runtime/step_builder.hpp) on its own: passes in, one ragged FlashInfer-layout batch out.
// Expected batches are written out by hand or built slot by slot, independently of the builder.
#include <catch2/catch.hpp>

#include <piecrust/core/error.hpp>
#include <piecrust/model/lora_adapter.hpp>
#include <piecrust/runtime/step_builder.hpp>

#include <cstdint>
#include <exception>
#include <vector>

using namespace piecrust;

namespace {

// A row over `kv` earlier slots (masked where `masked_slot` says) and `visible_new` new ones, built bit by bit.
template <class F>
AttentionMask row_over(std::size_t kv, F masked_slot, std::size_t visible_new) {
  Brle b;
  for (std::size_t j = 0; j < kv; ++j) b.append(masked_slot(j));
  b.append(false, visible_new);
  return AttentionMask(std::move(b));
}

void require_same_plan(TrimPlan const& got, TrimPlan const& want) {
  REQUIRE(got.num_pages == want.num_pages);
  REQUIRE(got.kept_pages == want.kept_pages);
  REQUIRE(got.rows == want.rows);
}

struct Fixture {
  // Page size 4. A: decode of 2 tokens after 5 slots (7 slots: pages {3, 7}, 3 in the last).
  std::vector<std::uint32_t> a_tokens{11, 12};
  std::vector<std::uint32_t> a_pos{5, 6};
  std::vector<std::uint32_t> a_pages{3, 7};
  // B: 1 pending token (prefix) then 2 tokens with explicit rows, after 4 slots (7 slots: pages {0, 5}).
  std::vector<std::uint32_t> b_tokens{21, 22, 23};
  std::vector<std::uint32_t> b_pos{4, 9, 9};
  std::vector<std::uint32_t> b_pages{0, 5};
  std::vector<AttentionMask> b_masks{row_over(5, [](std::size_t j) { return j < 2; }, 1),
                                     row_over(5, [](std::size_t j) { return j == 4; }, 2)};
  // C: 2 tokens after 6 slots of which 1 and 2 are masked (8 slots: pages {1, 2}, 4 in the last).
  std::vector<std::uint32_t> c_tokens{31, 32};
  std::vector<std::uint32_t> c_pos{6, 7};
  std::vector<std::uint32_t> c_pages{1, 2};
  MaskedSlots c_masked;

  Fixture() { c_masked.assign(1, 3, true); }

  std::vector<StepPass> passes() {
    std::vector<StepPass> p(3);
    p[0].tokens = a_tokens;
    p[0].positions = a_pos;
    p[0].kv_before = 5;
    p[0].kv_pages = a_pages;
    p[0].last_page_len = 3;
    p[0].logit_indices = {1};
    p[1].tokens = b_tokens;
    p[1].positions = b_pos;
    p[1].kv_before = 4;
    p[1].kv_pages = b_pages;
    p[1].last_page_len = 3;
    p[1].prefix = 1;
    p[1].masks = b_masks;
    p[1].logit_indices = {0, 1, 1};  // two samples and a probe may read the same row
    p[2].tokens = c_tokens;
    p[2].positions = c_pos;
    p[2].kv_before = 6;
    p[2].kv_pages = c_pages;
    p[2].last_page_len = 4;
    p[2].masked = &c_masked;
    p[2].logit_indices = {};
    return p;
  }
};

}  // namespace

TEST_CASE("build_step concatenates passes in FlashInfer's layout", "[step_builder]") {
  Fixture f;
  auto passes = f.passes();
  StepBatch const b = build_step(passes, 4);
  REQUIRE(b.size() == 3);
  REQUIRE(b.tokens == std::vector<TokenId>{11, 12, 21, 22, 23, 31, 32});
  REQUIRE(b.positions == std::vector<std::uint32_t>{5, 6, 4, 9, 9, 6, 7});
  REQUIRE(b.qo_indptr == std::vector<std::uint32_t>{0, 2, 5, 7});
  REQUIRE(b.kv_indptr == std::vector<std::uint32_t>{0, 2, 4, 6});
  REQUIRE(b.kv_indices == std::vector<std::uint32_t>{3, 7, 0, 5, 1, 2});
  REQUIRE(b.last_page_len == std::vector<std::uint32_t>{3, 3, 4});
  REQUIRE(b.first_token == std::vector<std::size_t>{0, 2, 5});
  REQUIRE(b.first_row == std::vector<std::size_t>{0, 1, 4});
  // A's index 1 is token 1; B's indices count after its prefix: tokens 2 + 1 + {0, 1, 1}.
  REQUIRE(b.logit_rows == std::vector<std::uint32_t>{1, 3, 4, 4});
  REQUIRE(b.adapters.empty());
}

TEST_CASE("build_step gives every pass its attention rows and trim plan", "[step_builder]") {
  Fixture f;
  auto passes = f.passes();
  StepBatch const b = build_step(passes, 4);
  REQUIRE(b.trims.size() == 3);
  // A: plain causal (no rows).
  require_same_plan(b.trims[0], TrimPlan::compute(4, 5, 2, {}));
  // B: a causal row for the prefix token, then its own rows.
  std::vector<AttentionMask> b_rows{AttentionMask::causal(5)};
  b_rows.insert(b_rows.end(), f.b_masks.begin(), f.b_masks.end());
  require_same_plan(b.trims[1], TrimPlan::compute(4, 4, 3, b_rows));
  // C: causal rows that skip slots 1 and 2.
  auto const skip = [](std::size_t j) { return j == 1 || j == 2; };
  std::vector<AttentionMask> const c_rows{row_over(6, skip, 1), row_over(6, skip, 2)};
  require_same_plan(b.trims[2], TrimPlan::compute(4, 6, 2, c_rows));
  // B's rows were moved into the step, not copied.
  REQUIRE(passes[1].masks.empty());
}

TEST_CASE("build_step leaves attention causal and adapters empty when no pass needs them", "[step_builder]") {
  Fixture f;
  auto passes = f.passes();
  passes[1].masks.clear();
  MaskedSlots none;
  passes[2].masked = &none;
  StepBatch const b = build_step(passes, 4);
  REQUIRE(b.trims.empty());
  ForwardBatch const fb = b.forward_batch();
  REQUIRE(fb.attention.trims.empty());
  REQUIRE(fb.attention.masks.empty());
  REQUIRE(fb.adapters.empty());
  // The forward batch views the step's own arrays.
  REQUIRE(fb.tokens.data() == b.tokens.data());
  REQUIRE(fb.tokens.size() == 7);
  REQUIRE(fb.positions.data() == b.positions.data());
  REQUIRE(fb.pages.qo_indptr.data() == b.qo_indptr.data());
  REQUIRE(fb.pages.kv_indices.data() == b.kv_indices.data());
  REQUIRE(fb.logit_rows.data() == b.logit_rows.data());
  REQUIRE(fb.logit_rows.size() == 4);
}

TEST_CASE("build_step lists adapters per pass once any pass has one", "[step_builder]") {
  Fixture f;
  auto passes = f.passes();
  auto const* tag = reinterpret_cast<LoraAdapter const*>(&f);  // only compared, never dereferenced
  passes[1].adapter = tag;
  StepBatch const b = build_step(passes, 4);
  REQUIRE(b.adapters == std::vector<LoraAdapter const*>{nullptr, tag, nullptr});
  REQUIRE(b.forward_batch().adapters.size() == 3);
}

TEST_CASE("build_step of no passes is an empty batch", "[step_builder]") {
  std::vector<StepPass> none;
  StepBatch const b = build_step(none, 16);
  REQUIRE(b.size() == 0);
  REQUIRE(b.qo_indptr == std::vector<std::uint32_t>{0});
  REQUIRE(b.kv_indptr == std::vector<std::uint32_t>{0});
  REQUIRE(b.tokens.empty());
  REQUIRE(b.logit_rows.empty());
}

TEST_CASE("build_step leaves out a pass whose rows do not fit, and only it", "[step_builder]") {
  Fixture f;
  auto passes = f.passes();
  passes[1].masks.pop_back();  // 1 row for 2 indexable tokens
  StepBatch const b = build_step(passes, 4);
  REQUIRE(b.rejected.size() == 1);
  REQUIRE(b.rejected[0].pass == 1);
  REQUIRE_THROWS_AS(std::rethrow_exception(b.rejected[0].error), InvalidArgument);
  try {
    std::rethrow_exception(b.rejected[0].error);
  } catch (InvalidArgument const& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("rows.size() = 2") && Catch::Contains("n_input = 3"));
  }
  // A and C form the batch they would form without B.
  Fixture g;
  auto without = g.passes();
  std::vector<StepPass> ac;
  ac.push_back(std::move(without[0]));
  ac.push_back(std::move(without[2]));
  StepBatch const want = build_step(ac, 4);
  REQUIRE(b.members == std::vector<std::size_t>{0, 2});
  REQUIRE(want.members == std::vector<std::size_t>{0, 1});
  REQUIRE(b.tokens == want.tokens);
  REQUIRE(b.positions == want.positions);
  REQUIRE(b.qo_indptr == want.qo_indptr);
  REQUIRE(b.kv_indptr == want.kv_indptr);
  REQUIRE(b.kv_indices == want.kv_indices);
  REQUIRE(b.last_page_len == want.last_page_len);
  REQUIRE(b.logit_rows == want.logit_rows);
  REQUIRE(b.first_row == want.first_row);
  REQUIRE(b.trims.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) require_same_plan(b.trims[i], want.trims[i]);
}

TEST_CASE("build_step with every pass rejected is an empty batch", "[step_builder]") {
  Fixture f;
  auto passes = f.passes();
  passes[1].masks.pop_back();
  std::vector<StepPass> only_b;
  only_b.push_back(std::move(passes[1]));
  StepBatch const b = build_step(only_b, 4);
  REQUIRE(b.size() == 0);
  REQUIRE(b.members.empty());
  REQUIRE(b.rejected.size() == 1);
  REQUIRE(b.tokens.empty());
}

TEST_CASE("StepBatch::alone is the batch of that pass by itself", "[step_builder]") {
  Fixture f;
  auto passes = f.passes();
  auto const* tag = reinterpret_cast<LoraAdapter const*>(&f);  // only compared, never dereferenced
  passes[1].adapter = tag;
  StepBatch const b = build_step(passes, 4);
  for (std::size_t i = 0; i < 3; ++i) {
    Fixture g;
    auto fresh = g.passes();
    fresh[1].adapter = tag;
    std::vector<StepPass> one;
    one.push_back(std::move(fresh[i]));
    StepBatch const want = build_step(one, 4);
    StepBatch const got = b.alone(i);
    INFO("pass " << i);
    REQUIRE(got.tokens == want.tokens);
    REQUIRE(got.positions == want.positions);
    REQUIRE(got.qo_indptr == want.qo_indptr);
    REQUIRE(got.kv_indptr == want.kv_indptr);
    REQUIRE(got.kv_indices == want.kv_indices);
    REQUIRE(got.last_page_len == want.last_page_len);
    REQUIRE(got.logit_rows == want.logit_rows);
    REQUIRE(got.adapters == want.adapters);
    REQUIRE(got.first_token == want.first_token);
    REQUIRE(got.first_row == want.first_row);
    REQUIRE(got.members == std::vector<std::size_t>{i});
    REQUIRE(got.trims.size() == want.trims.size());
    for (std::size_t t = 0; t < got.trims.size(); ++t) require_same_plan(got.trims[t], want.trims[t]);
  }
  // A is plain causal: alone it has no trim plan, although the batch gave it one.
  REQUIRE(b.alone(0).trims.empty());
  REQUIRE(b.alone(1).trims.size() == 1);
}
