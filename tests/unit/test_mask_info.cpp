// Unit tests of piecrust::MaskInfo and its conversions: random cross-checks between representations
// (seeded std::mt19937), the fast paths against naive references, and one test per kind of bad input; then
// MaskInfo driving real passes through Forward::attention_mask on the tiny random Llama.

#include <catch2/catch.hpp>

#include "piecrust/mask_info.hpp"
#include "piecrust/runtime/mask_info_rows.hpp"
#include "tiny_runtime.hpp"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace mi = piecrust::maskinfo;
using piecrust::MaskInfo;

namespace {

/// Packed segment ids: runs of increasing ids per row, then trailing padding.
mi::IntTensor packed_ids(std::mt19937& rng, std::int64_t b, std::int64_t s) {
  mi::IntTensor ids(mi::Shape{b, s});  // [batch][seq]
  for (std::int64_t r = 0; r < b; ++r) {
    std::int64_t const valid = std::uniform_int_distribution<std::int64_t>(0, s)(rng);
    std::int32_t id = 0;
    std::int64_t left = 0;
    for (std::int64_t i = 0; i < s; ++i) {
      if (i >= valid) {
        ids.at(r, i) = -1;
        continue;
      }
      if (left == 0) {
        left = std::uniform_int_distribution<std::int64_t>(1, 5)(rng);
        if (i > 0) ++id;
      }
      ids.at(r, i) = id;
      --left;
    }
  }
  return ids;
}

mi::BoolTensor random_mask(std::mt19937& rng, mi::Shape shape, double p) {
  mi::BoolTensor m(std::move(shape));
  std::bernoulli_distribution d(p);
  for (auto& v : m.data()) v = d(rng) ? 1 : 0;
  return m;
}

/// Naive mask_to_segment_ids of one (Q, K) slice: all-pairs comparison.
std::pair<std::vector<std::int32_t>, std::vector<std::int32_t>> naive_groups(mi::BoolTensor const& m) {
  std::int64_t const q = m.dim(0), k = m.dim(1);
  auto group = [](std::int64_t n, auto cell, std::int64_t len) {
    std::vector<std::int32_t> ids(static_cast<std::size_t>(n), -1);
    std::int32_t next = 0;
    for (std::int64_t a = 0; a < n; ++a) {
      bool any = false;
      for (std::int64_t p = 0; p < len; ++p) any = any || cell(a, p);
      if (!any) continue;
      for (std::int64_t c = 0; c < a; ++c) {
        bool same = true;
        for (std::int64_t p = 0; p < len && same; ++p) same = cell(a, p) == cell(c, p);
        if (same) {
          ids[static_cast<std::size_t>(a)] = ids[static_cast<std::size_t>(c)];
          break;
        }
      }
      if (ids[static_cast<std::size_t>(a)] < 0) ids[static_cast<std::size_t>(a)] = next++;
    }
    return ids;
  };
  auto rows = group(q, [&](std::int64_t a, std::int64_t p) { return m.at(a, p) != 0; }, k);
  auto cols = group(k, [&](std::int64_t a, std::int64_t p) { return m.at(p, a) != 0; }, q);
  return {rows, cols};
}

/// Ids renumbered 0.. by first occurrence per row (padding stays -1).
mi::IntTensor canonical(mi::IntTensor ids) {
  for (std::int64_t b = 0; b < ids.dim(0); ++b) {
    std::map<std::int32_t, std::int32_t> seen;
    for (std::int64_t i = 0; i < ids.dim(1); ++i) {
      std::int32_t& v = ids.at(b, i);
      if (v < 0) continue;
      auto const it = seen.emplace(v, static_cast<std::int32_t>(seen.size())).first;
      v = it->second;
    }
  }
  return ids;
}

template <class F>
std::string captured_stdout(F&& f) {
  std::ostringstream out;
  auto* old = std::cout.rdbuf(out.rdbuf());
  f();
  std::cout.rdbuf(old);
  return out.str();
}

}  // namespace

TEST_CASE("segments -> mask -> segments round trips on random packed batches", "[mask_info]") {
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 200; ++trial) {
    std::int64_t const b = std::uniform_int_distribution<std::int64_t>(1, 4)(rng);
    std::int64_t const s = std::uniform_int_distribution<std::int64_t>(1, 24)(rng);
    mi::IntTensor const ids = packed_ids(rng, b, s);
    mi::Array const mask = mi::segment_ids_to_mask(ids);
    REQUIRE(mask.shape() == mi::Shape{b, 1, s, s});
    // A block-diagonal mask: pattern grouping and structural recovery both give the ids back.
    auto const pattern = mi::mask_to_segment_ids(mask);
    CHECK(pattern.q == canonical(ids));
    CHECK(pattern.kv == canonical(ids));
    auto const recovered = mi::recover_segments(mask);
    CHECK(recovered.q == canonical(ids));
    CHECK(mi::segment_ids_to_mask(recovered.q, recovered.kv) == mask);
    // MaskInfo: lazy from ids, same mask as the module function; materialized ids agree.
    MaskInfo const m = mi::from_segments(ids);
    CHECK_FALSE(m.fields().attention_mask.has_value());
    CHECK(mi::get_or_compute_attention_mask(m) == mask);
    CHECK(m.fields().attention_mask.has_value());  // cached
  }
}

TEST_CASE("mask_to_segment_ids (hashing) equals the all-pairs reference on random masks", "[mask_info]") {
  std::mt19937 rng(99);
  for (int trial = 0; trial < 150; ++trial) {
    std::int64_t const q = std::uniform_int_distribution<std::int64_t>(1, 70)(rng);
    std::int64_t const k = std::uniform_int_distribution<std::int64_t>(1, 70)(rng);
    double const p = std::uniform_real_distribution<double>(0.0, 0.3)(rng);
    // few distinct rows: duplicate a handful of random rows
    mi::BoolTensor base = random_mask(rng, mi::Shape{4, k}, 0.5);
    mi::BoolTensor m(mi::Shape{q, k});
    for (std::int64_t i = 0; i < q; ++i) {
      std::int64_t const src = std::uniform_int_distribution<std::int64_t>(0, 4)(rng);
      for (std::int64_t j = 0; j < k; ++j) m.at(i, j) = src == 4 ? (std::bernoulli_distribution(p)(rng) ? 1 : 0) : base.at(src, j);
    }
    auto const fast = mi::mask_to_segment_ids(m);
    auto const [rows, cols] = naive_groups(m);
    CHECK(fast.q.vector() == rows);
    CHECK(fast.kv.vector() == cols);
  }
}

TEST_CASE("cu_seqlens (F1 spans) <-> segment ids <-> masks", "[mask_info]") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::int64_t const b = std::uniform_int_distribution<std::int64_t>(1, 5)(rng);
    std::int64_t const len = std::uniform_int_distribution<std::int64_t>(1, 20)(rng);
    std::vector<mi::TokenSpan> spans;
    for (std::int64_t r = 0; r < b; ++r) {
      std::int32_t const st = std::uniform_int_distribution<std::int32_t>(0, static_cast<std::int32_t>(len) - 1)(rng);
      std::int32_t const en = std::uniform_int_distribution<std::int32_t>(st + 1, static_cast<std::int32_t>(len))(rng);
      spans.push_back({st, en});
    }
    mi::TokenSpans const ts(spans);
    MaskInfo const m = mi::from_cu_seqlens(ts.to_interleaved(), len);
    // ids are 0 inside the span, -1 outside
    auto const ids = mi::q_segment_ids(m);
    for (std::int64_t r = 0; r < b; ++r)
      for (std::int64_t i = 0; i < len; ++i) CHECK((ids.at(r, i) == 0) == spans[static_cast<std::size_t>(r)].contains(i));
    // back to spans through the masks and through the attention mask
    CHECK(mi::TokenSpans::from_valid_mask(ts.to_mask(len)) == ts);
    auto const back = mi::attention_mask_to_qkv_cu_seqlens(mi::get_or_compute_attention_mask(m));
    CHECK(mi::TokenSpans::from_interleaved(back.q) == ts);
    // the upstream getter returns the stored F1 arrays unchanged
    CHECK(mi::get_or_compute_qkv_cu_seqlens(m).q == ts.to_interleaved());
  }
}

TEST_CASE("CuSeqlens (FlashAttention offsets), counts and positions agree with naive scans", "[mask_info]") {
  std::mt19937 rng(42);
  for (int trial = 0; trial < 200; ++trial) {
    std::int64_t const b = std::uniform_int_distribution<std::int64_t>(1, 4)(rng);
    std::int64_t const s = std::uniform_int_distribution<std::int64_t>(1, 30)(rng);
    mi::IntTensor const ids = packed_ids(rng, b, s);
    auto const cu = mi::CuSeqlens::from_segment_ids(ids);
    auto const rows = mi::per_row_valid_counts(ids);
    std::int64_t total = 0;
    for (auto const v : rows.data()) total += v;
    CHECK(cu.total_tokens() == total);
    // positions: index within the run of equal ids
    auto const pos = mi::positions_from_segments_2d(ids, -1);
    std::size_t seq = 0;
    for (std::int64_t r = 0; r < b; ++r) {
      for (std::int64_t i = 0; i < s; ++i) {
        std::int32_t const id = ids.at(r, i);
        if (id < 0) {
          CHECK(pos.at(r, i) == -1);
          continue;
        }
        std::int64_t start = i;
        while (start > 0 && ids.at(r, start - 1) == id) --start;
        CHECK(pos.at(r, i) == i - start);
        if (i == start) {
          std::int64_t end = i;
          while (end < s && ids.at(r, end) == id) ++end;
          CHECK(cu.length(seq++) == end - start);
        }
      }
    }
    CHECK(seq == cu.num_sequences());
    // F2 merges rows by id value; per_segment_counts does not.
    auto const f2 = mi::SegmentCumLens::from_segment_ids(ids, 8);
    auto const per = mi::per_segment_counts(ids, 8);
    for (std::int64_t seg = 0; seg < 8; ++seg) {
      std::int32_t sum = 0;
      for (std::int64_t r = 0; r < b; ++r) sum += per.at(r, seg);
      CHECK(f2.count(seg) == sum);
    }
  }
}

TEST_CASE("block-sparse summary from runs equals the dense reference", "[mask_info]") {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 60; ++trial) {
    std::int64_t const q = std::uniform_int_distribution<std::int64_t>(1, 90)(rng);
    std::int64_t const k = std::uniform_int_distribution<std::int64_t>(q, 120)(rng);
    std::int64_t const w = std::uniform_int_distribution<std::int64_t>(1, 40)(rng);
    std::int64_t const qb = std::uniform_int_distribution<std::int64_t>(1, 17)(rng);
    std::int64_t const kb = std::uniform_int_distribution<std::int64_t>(1, 17)(rng);
    // causal + window, bottom-right aligned (query i sits at kv position i + k - q)
    std::vector<piecrust::AttentionMask> rows;
    mi::BoolTensor dense(mi::Shape{q, k});
    for (std::int64_t i = 0; i < q; ++i) {
      std::int64_t const visible = i + k - q + 1;
      rows.push_back(piecrust::AttentionMask::window(static_cast<std::size_t>(visible), static_cast<std::size_t>(w)));
      for (std::int64_t j = 0; j < k; ++j) dense.at(i, j) = (j < visible && j >= visible - w) ? 1 : 0;
    }
    CHECK(mi::block_sparse_summary(rows, k, qb, kb) == mi::block_sparse_summary_dense(dense, qb, kb));
    // random masks through MaskInfo rows
    auto const rm = random_mask(rng, mi::Shape{1, 1, q, k}, 0.7);
    MaskInfo const m(MaskInfo::Fields{.attention_mask = mi::Array(rm)});
    CHECK(mi::block_sparse_summary(m, qb, kb) == mi::block_sparse_summary_dense(rm.reshaped(mi::Shape{q, k}), qb, kb));
  }
}

TEST_CASE("AttentionMask rows: lazy (from ids) equals dense, polarity 0 = attend", "[mask_info]") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 50; ++trial) {
    std::int64_t const b = std::uniform_int_distribution<std::int64_t>(1, 3)(rng);
    std::int64_t const s = std::uniform_int_distribution<std::int64_t>(1, 20)(rng);
    mi::IntTensor const ids = packed_ids(rng, b, s);
    MaskInfo const lazy = mi::from_segments(ids);
    MaskInfo const dense = mi::materialize_attention_mask(lazy);
    for (std::int64_t r = 0; r < b; ++r) {
      auto const a = mi::attention_mask_rows(lazy, r);
      auto const d = mi::attention_mask_rows(dense, r);
      REQUIRE(a.size() == d.size());
      for (std::size_t i = 0; i < a.size(); ++i) {
        CHECK(a[i] == d[i]);
        for (std::int64_t j = 0; j < s; ++j) {
          bool const attend = ids.at(r, static_cast<std::int64_t>(i)) >= 0 && ids.at(r, static_cast<std::int64_t>(i)) == ids.at(r, j);
          CHECK(a[i].attends(static_cast<std::size_t>(j)) == attend);
        }
      }
    }
    CHECK_FALSE(lazy.fields().attention_mask.has_value());  // rows did not materialize the mask
  }
}

TEST_CASE("FlashInfer layout: indptrs and LSB-first packed mask", "[mask_info]") {
  std::mt19937 rng(3);
  auto const m4 = random_mask(rng, mi::Shape{3, 1, 5, 7}, 0.5);
  MaskInfo const m(MaskInfo::Fields{.attention_mask = mi::Array(m4)});
  auto const fi = mi::to_flashinfer_mask(m);
  CHECK(fi.qo_indptr == std::vector<std::int32_t>{0, 5, 10, 15});
  CHECK(fi.kv_indptr == std::vector<std::int32_t>{0, 7, 14, 21});
  CHECK(fi.mask_indptr == std::vector<std::int32_t>{0, 5, 10, 15});  // 35 bits -> 5 bytes each
  for (std::int64_t b = 0; b < 3; ++b)
    for (std::int64_t i = 0; i < 5; ++i)
      for (std::int64_t j = 0; j < 7; ++j) {
        std::size_t const bit = static_cast<std::size_t>(i * 7 + j);
        std::uint8_t const byte = fi.packed_mask[static_cast<std::size_t>(fi.mask_indptr[static_cast<std::size_t>(b)]) + bit / 8];
        CHECK(((byte >> (bit % 8)) & 1) == m4.at(b, 0, i, j));
      }
  // trimming keeps only the attended span
  MaskInfo const padded = mi::from_segments(mi::IntTensor(mi::Shape{1, 4}, {0, 0, -1, -1}));
  auto const t = mi::to_flashinfer_mask(padded, true);
  CHECK(t.qo_indptr == std::vector<std::int32_t>{0, 2});
  CHECK(t.packed_mask == std::vector<std::uint8_t>{0x0f});
}

TEST_CASE("upstream quirks are reproduced", "[mask_info]") {
  mi::IntTensor const ids(mi::Shape{1, 4}, {1, 1, 1, -1});
  MaskInfo const m = mi::from_segments(ids);
  // S6: 1-based ids give a leading 0 count; S7: a single 1-based sequence counts as multi
  CHECK(mi::q_lens(m)->vector() == std::vector<std::int32_t>{0, 3});
  CHECK(mi::is_multi_sequence(m));
  CHECK_FALSE(mi::has_multiple_sequences(ids)[0]);
  // S2: the cu property is F2 of length 129
  CHECK(mi::cu_seqlens_q(m).size() == 129);
  // S8 / caching: to_dtype(bool) caches the mask on the source object
  CHECK_FALSE(m.fields().attention_mask.has_value());
  (void)mi::to_dtype(m, mi::DType::bool_);
  CHECK(m.fields().attention_mask.has_value());
  // bias is finfo.min, not -inf
  auto const bias = mi::create_bias(m, mi::DType::bfloat16);
  CHECK(bias.value(3) == Approx(-3.3895313892515355e38));
  // S9: top-left causal with Q < K vs the explicit bottom-right alignment
  MaskInfo const cross = mi::from_segments(mi::IntTensor(mi::Shape{1, 2}, {0, 0}), mi::IntTensor(mi::Shape{1, 4}, {0, 0, 0, 0}));
  auto const tl = mi::get_or_compute_attention_mask(mi::apply_causal(cross)).to_bool();
  auto const br = mi::get_or_compute_attention_mask(mi::apply_causal_aligned(cross, mi::Align::bottom_right)).to_bool();
  CHECK(tl.vector() == std::vector<std::uint8_t>{1, 0, 0, 0, 1, 1, 0, 0});
  CHECK(br.vector() == std::vector<std::uint8_t>{1, 1, 1, 0, 1, 1, 1, 1});
  // apply_chunked caches pattern ids on a source that had none
  MaskInfo const raw(MaskInfo::Fields{.attention_mask = mi::Array(mi::BoolTensor(mi::Shape{1, 1, 2, 2}, 1))});
  (void)mi::apply_chunked(raw, 1);
  CHECK(raw.fields().q_segment_ids.has_value());
}

TEST_CASE("keyword-style option structs (designated initializers)", "[mask_info]") {
  MaskInfo const m = mi::from_segments(mi::IntTensor(mi::Shape{1, 6}, {0, 0, 0, 0, 0, 0}));
  MaskInfo const d = mi::apply_sliding_window(m, 1, {.mode = "decode", .index = 4});
  CHECK(mi::get_or_compute_attention_mask(d).shape() == mi::Shape{1, 1, 1, 3});
  MaskInfo const t = mi::apply_token_type_ids(m, mi::IntTensor(mi::Shape{1, 6}, {1, 1, 0, 2, 2, 2}), {.combine = "replace"});
  CHECK(mi::q_segment_ids(t).vector() == std::vector<std::int32_t>{1, 1, -1, 2, 2, 2});
  MaskInfo const k = mi::apply_kv_lengths(m, 4, {.q_len = 2, .end_index = 3});
  CHECK(mi::kv_segment_ids(k).vector() == std::vector<std::int32_t>{0, 0, 0, 0, -1, -1});
  CHECK(mi::q_segment_ids(k).shape() == mi::Shape{1, 2});
}

TEST_CASE("visualize renders byte for byte", "[mask_info]") {
  MaskInfo const m = mi::from_segments(mi::IntTensor(mi::Shape{1, 4}, {0, 0, 1, 1}));
  mi::VisualizeOptions o;
  o.block_size = 2;
  o.charset = "ascii";
  o.return_str = true;
  CHECK(*mi::visualize(m, o) ==
        "Attention mask (batch=0, head=0) block=(2x2) mask_shape=(1, 1, 4, 4)\n"
        "         0001\n"
        "        ====  \n"
        "     0 ||##  ||\n"
        "     1 ||  ##||\n"
        "        ====  \n"
        "Legend mask: full='\u2588\u2588'/##, partial='\u2591\u2591'/.., empty='  '\n"
        "Legend seg: left=Q block ID, top=KV block ID, PAD=-1, MIX=??\n");
}

TEST_CASE("sharding specs are pure metadata", "[mask_info]") {
  MaskInfo const m = mi::from_segments(mi::IntTensor(mi::Shape{2, 4}, {0, 0, 1, 1, 0, 0, 0, -1}));
  mi::Mesh const mesh{{{"dp", 2}, {"fsdp", 1}, {"tp", 2}, {"sp", 2}}};
  auto const s = mi::get_shardings(m, mesh, true);
  CHECK_FALSE(s.attention_mask.has_value());  // lazy mask
  REQUIRE(s.q_segment_ids.has_value());
  CHECK(*s.q_segment_ids == mi::PartitionSpec{mi::AxisName::of_tuple({"dp", "fsdp"}), mi::AxisName("sp")});
  auto const dense = mi::get_shardings(mi::materialize_attention_mask(m), mesh);
  // H = 1 is not divisible by tp = 2: replicated on that axis
  CHECK(*dense.attention_mask ==
        mi::PartitionSpec{mi::AxisName::of_tuple({"dp", "fsdp"}), mi::AxisName(), mi::AxisName(), mi::AxisName()});
}

TEST_CASE("float16 / bfloat16 rounding", "[mask_info]") {
  CHECK(mi::cast_value(1.0 + 1.0 / 4096, mi::DType::float16) == 1.0);
  CHECK(mi::cast_value(65504.0, mi::DType::float16) == 65504.0);
  CHECK(std::isinf(mi::cast_value(70000.0, mi::DType::float16)));
  CHECK(mi::cast_value(1.0 + 1.0 / 256, mi::DType::bfloat16) == 1.0);
  CHECK(mi::cast_value(2.5, mi::DType::int32) == 2.0);
}

TEST_CASE("debug trace toggle", "[mask_info]") {
  auto const on = captured_stdout([] { mi::set_debug_mode(true); });
  CHECK(on == "[MaskInfo Debug] Debug mode enabled\n");
  auto const traced = captured_stdout([] { (void)mi::from_segments(mi::IntTensor(mi::Shape{1, 1}, {0})); });
  CHECK(traced == "[MaskInfo Debug] Calling type.from_segments()\n");
  auto const off = captured_stdout([] { mi::set_debug_mode(false); });
  CHECK(off == "[MaskInfo Debug] Debug mode disabled\n");
  CHECK_FALSE(mi::get_debug_mode());
}

// ------------------------------------------------------------------ bad input: one test per kind

TEST_CASE("bad input: wrong rank", "[mask_info][errors]") {
  CHECK_THROWS_AS(mi::mask_to_segment_ids(mi::BoolTensor(mi::Shape{3})), piecrust::InvalidArgument);
  CHECK_THROWS_WITH(mi::mask_to_segment_ids(mi::BoolTensor(mi::Shape{3})), Catch::Contains("mask") && Catch::Contains("(3,)"));
  CHECK_THROWS_WITH(mi::from_attention_mask(mi::BoolTensor(mi::Shape{1, 1, 1, 1, 1})),
                    Catch::Contains("attention_mask") && Catch::Contains("5D"));
  CHECK_THROWS_WITH(mi::qkv_masks_to_cu_seqlens(mi::BoolTensor(mi::Shape{4})), Catch::Contains("q_mask") && Catch::Contains("(4,)"));
  MaskInfo const m = mi::from_segments(mi::IntTensor(mi::Shape{1, 2}, {0, 0}));
  CHECK_THROWS_WITH(mi::apply_token_type_ids(m, mi::IntTensor(mi::Shape{2}, {0, 0})), Catch::Contains("token_type_ids"));
}

TEST_CASE("bad input: MaskInfo fields of the wrong rank", "[mask_info][errors]") {
  CHECK_THROWS_WITH(MaskInfo(MaskInfo::Fields{.attention_mask = mi::Array(mi::BoolTensor(mi::Shape{2, 2}))}),
                    Catch::Contains("attention_mask") && Catch::Contains("(2, 2)"));
  CHECK_THROWS_WITH(MaskInfo(MaskInfo::Fields{.q_segment_ids = mi::IntTensor(mi::Shape{3})}),
                    Catch::Contains("q_segment_ids") && Catch::Contains("(3,)"));
  CHECK_THROWS_WITH(MaskInfo(MaskInfo::Fields{.cu_seqlens_kv = mi::IntTensor(mi::Shape{1, 2})}),
                    Catch::Contains("cu_seqlens_kv") && Catch::Contains("(1, 2)"));
  CHECK_THROWS_WITH(MaskInfo(MaskInfo::Fields{.q_positions = mi::IntTensor(mi::Shape{1, 1, 2})}),
                    Catch::Contains("q_positions") && Catch::Contains("(1, 1, 2)"));
  // factories and replace build through the same constructor
  CHECK_THROWS_WITH(mi::from_segments(mi::IntTensor(mi::Shape{1, 2}), mi::IntTensor(mi::Shape{2})),
                    Catch::Contains("kv_segment_ids") && Catch::Contains("(2,)"));
  MaskInfo const m = mi::from_segments(mi::IntTensor(mi::Shape{1, 2}, {0, 0}));
  mi::Replace r;
  r.kv_positions.emplace(mi::IntTensor(mi::Shape{2}));
  CHECK_THROWS_WITH(mi::replace(m, r), Catch::Contains("kv_positions") && Catch::Contains("(2,)"));
}

TEST_CASE("bad input: mismatched batch", "[mask_info][errors]") {
  MaskInfo const m = mi::from_segments(mi::IntTensor(mi::Shape{2, 2}, {0, 0, 0, 0}));
  CHECK_THROWS_WITH(mi::apply_token_type_ids(m, mi::TokenTypes(mi::IntTensor(mi::Shape{2, 2}), mi::IntTensor(mi::Shape{3, 2}))),
                    Catch::Contains("batch") && Catch::Contains("3"));
  CHECK_THROWS_AS(mi::segment_ids_to_mask(mi::IntTensor(mi::Shape{2, 2}), mi::IntTensor(mi::Shape{3, 2})), piecrust::InvalidArgument);
  CHECK_THROWS_WITH(mi::apply_causal(m, mi::BatchInts(std::vector<std::int64_t>{1, 2, 3})),
                    Catch::Contains("offset") && Catch::Contains("3"));
}

TEST_CASE("bad input: odd-length span arrays", "[mask_info][errors]") {
  mi::IntTensor const odd(mi::Shape{3}, {0, 2, 4});
  CHECK_THROWS_WITH(mi::cu_seqlens_to_mask(odd, 4), Catch::Contains("cu_seqlens") && Catch::Contains("3"));
  CHECK_THROWS_AS(mi::from_cu_seqlens(odd, 4), piecrust::InvalidArgument);
  CHECK_THROWS_WITH(mi::TokenSpans::from_interleaved(odd), Catch::Contains("even") && Catch::Contains("3"));
  CHECK_THROWS_WITH(mi::cu_seqlens_to_mask(mi::IntTensor(mi::Shape{2}, {0, 1}), -1), Catch::Contains("max_len = -1"));
  CHECK_THROWS_WITH(mi::CuSeqlens::from_offsets(mi::IntTensor(mi::Shape{3}, {0, 5, 2})), Catch::Contains("offsets[2] = 2"));
}

TEST_CASE("bad input: negative window, chunk, sparsity", "[mask_info][errors]") {
  MaskInfo const m = mi::from_segments(mi::IntTensor(mi::Shape{1, 3}, {0, 0, 0}));
  CHECK_THROWS_WITH(mi::apply_sliding_window(m, -1), Catch::Contains("sliding_window") && Catch::Contains("-1"));
  CHECK_THROWS_WITH(mi::apply_sliding_window(m, mi::SlidingWindow(2, -3)), Catch::Contains("(2, -3)"));
  CHECK_THROWS_WITH(mi::apply_chunked(m, 0), Catch::Contains("chunk_size") && Catch::Contains("0"));
  CHECK_THROWS_WITH(mi::create_chunked_attention_mask(-2, 4), Catch::Contains("-2"));
  mi::RandomOptions r;
  r.sparsity = 1.5;
  CHECK_THROWS_WITH(mi::from_random(1, 2, r), Catch::Contains("sparsity = 1.5"));
}

TEST_CASE("bad input: unknown mode, combine, zero_policy, reduce_heads, dtype", "[mask_info][errors]") {
  MaskInfo const m = mi::from_segments(mi::IntTensor(mi::Shape{1, 3}, {0, 0, 0}));
  CHECK_THROWS_WITH(mi::parse_window_mode("sideways"), Catch::Contains("'sideways'"));
  mi::SlidingWindowOptions decode;
  decode.mode = "decode";
  CHECK_THROWS_WITH(mi::apply_sliding_window(m, 1, decode), Catch::Contains("index"));
  mi::TokenTypeOptions o;
  o.combine = "xor";
  CHECK_THROWS_WITH(mi::apply_token_type_ids(m, mi::IntTensor(mi::Shape{1, 3}), o), Catch::Contains("'xor'"));
  o.combine = "union";
  o.zero_policy = "left";
  CHECK_THROWS_WITH(mi::apply_token_type_ids(m, mi::IntTensor(mi::Shape{1, 3}), o), Catch::Contains("'left'"));
  CHECK_THROWS_WITH(mi::attention_mask_to_qkv_cu_seqlens(mi::BoolTensor(mi::Shape{1, 1, 2, 2}), "most"), Catch::Contains("'most'"));
  CHECK_THROWS_WITH(mi::parse_dtype("float64"), Catch::Contains("'float64'"));
  CHECK_THROWS_AS(mi::create_bias(m, mi::DType::int32), piecrust::InvalidArgument);
}

TEST_CASE("bad input: empty object, out-of-range index, missing mesh axis, non-block mask", "[mask_info][errors]") {
  MaskInfo const empty;
  CHECK_THROWS_AS(mi::get_or_compute_attention_mask(empty), piecrust::InvalidState);
  CHECK_THROWS_AS(mi::get_or_compute_segment_ids(empty), piecrust::InvalidState);
  CHECK_THROWS_AS(mi::apply_causal(empty), piecrust::InvalidState);
  MaskInfo const m = mi::from_segments(mi::IntTensor(mi::Shape{1, 3}, {0, 0, 0}));
  mi::VisualizeOptions v;
  v.batch = 4;
  v.return_str = true;
  CHECK_THROWS_WITH(mi::visualize(m, v), Catch::Contains("batch=4"));
  CHECK_THROWS_AS(mi::visualize(m, v), piecrust::OutOfRange);
  mi::Mesh const mesh{{{"dp", 1}, {"tp", 1}}};
  CHECK_THROWS_WITH(mi::get_shardings(m, mesh), Catch::Contains("'fsdp'"));
  mi::KvLengthsOptions kv;
  CHECK_THROWS_WITH(mi::apply_kv_lengths(m, 2, kv), Catch::Contains("q_len"));
  kv.q_len = 9;
  CHECK_THROWS_WITH(mi::apply_kv_lengths(m, 2, kv), Catch::Contains("q_len = 9"));
  auto const causal = mi::create_chunked_attention_mask(4, 4);  // causal 4x4
  CHECK_THROWS_WITH(mi::recover_segments(causal), Catch::Contains("not block-structured"));
}

// ---- MaskInfo through Forward::attention_mask, on the tiny random Llama ----

namespace {

using piecrust::AttentionMask;
using piecrust::Context;
using piecrust::Engine;
using piecrust::ForwardOutput;
using piecrust::Logits;
using piecrust::Task;
using Tiny = piecrust::testing::Tiny;
using Row = std::vector<float>;  // [vocab]

/// Equal within 1e-5 of the reference row's largest |logit| (the packed pass runs other GEMM shapes).
bool close_rows(Row const& got, Row const& want) {
  if (got.size() != want.size()) return false;
  float scale = 0.0f;
  for (float const v : want) scale = std::max(scale, std::fabs(v));
  for (std::size_t j = 0; j < got.size(); ++j) {
    if (!(std::fabs(got[j] - want[j]) <= 1e-5f * scale)) return false;
  }
  return true;
}

/// A dense (1, 1, q, k) MaskInfo that attends everything; transforms cut it down.
MaskInfo all_attend(std::int64_t q, std::int64_t k) {
  return MaskInfo(MaskInfo::Fields{.attention_mask = mi::Array(mi::BoolTensor(mi::Shape{1, 1, q, k}, 1))});
}

/// The coroutines take their arguments by value: they run later, under Engine::block_on.
/// The logits of every input of one pass: `inputs` after `cached` flushed tokens and `pending` pending ones,
/// with `mask` (or the default causal rows when it is empty).
Task<std::vector<Row>> pass_logits(Engine<Tiny>& e, std::vector<std::uint32_t> cached, std::vector<std::uint32_t> pending,
                                   std::vector<std::uint32_t> inputs, std::optional<MaskInfo> mask) {
  auto ctx = e.create_context();
  if (!cached.empty()) {
    ctx.fill(cached);
    co_await ctx.flush();
  }
  ctx.fill(pending);
  auto f = ctx.forward();
  f.input(inputs);
  if (mask) f.attention_mask(*mask);
  std::vector<piecrust::ProbeHandle<Logits>> hs;
  for (std::size_t i = 0; i < inputs.size(); ++i) hs.push_back(f.probe(i, Logits{}));
  ForwardOutput const out = co_await f.execute();
  std::vector<Row> rows;
  for (auto const& h : hs) rows.emplace_back(out.logits(h).begin(), out.logits(h).end());
  co_return rows;
}

}  // namespace

TEST_CASE("Forward + MaskInfo: 3 prompts packed with segment ids give each prompt's own logits", "[mask_info][runtime]") {
  Engine<Tiny> e(piecrust::testing::tiny_model(), piecrust::testing::engine_options());
  std::vector<std::vector<std::uint32_t>> const prompts{piecrust::testing::random_prompt(31, 5),
                                                        piecrust::testing::random_prompt(32, 7),
                                                        piecrust::testing::random_prompt(33, 4)};
  std::vector<std::uint32_t> tokens, positions;  // [16] the prompts back to back, each from position 0
  std::vector<std::int32_t> ids;                 // [16] segment id = prompt index
  std::vector<std::size_t> last;                 // [3] index of each prompt's last token
  for (std::size_t p = 0; p < prompts.size(); ++p) {
    for (std::size_t i = 0; i < prompts[p].size(); ++i) {
      tokens.push_back(prompts[p][i]);
      positions.push_back(static_cast<std::uint32_t>(i));
      ids.push_back(static_cast<std::int32_t>(p));
    }
    last.push_back(tokens.size() - 1);
  }
  auto const n = static_cast<std::int64_t>(tokens.size());
  MaskInfo const packed = mi::apply_causal(mi::from_segments(mi::IntTensor(mi::Shape{1, n}, ids)));

  auto prog = [](Engine<Tiny>& e, std::vector<std::uint32_t> tokens, std::vector<std::uint32_t> positions, MaskInfo packed,
                 std::vector<std::size_t> last) -> Task<std::vector<Row>> {
    auto ctx = e.create_context();
    auto f = ctx.forward();
    f.input_at(tokens, positions);
    f.attention_mask(packed);
    std::vector<piecrust::ProbeHandle<Logits>> hs;
    for (std::size_t const i : last) hs.push_back(f.probe(i, Logits{}));
    ForwardOutput const out = co_await f.execute();
    std::vector<Row> rows;
    for (auto const& h : hs) rows.emplace_back(out.logits(h).begin(), out.logits(h).end());
    co_return rows;
  };
  auto const got = e.block_on(prog(e, tokens, positions, packed, last));
  REQUIRE(got.size() == prompts.size());
  for (std::size_t p = 0; p < prompts.size(); ++p) {
    auto const alone = e.block_on(pass_logits(e, {}, {}, prompts[p], std::nullopt));
    INFO("prompt " << p);
    CHECK(close_rows(got[p], alone.back()));
  }
  // Without the segment ids the prompts see each other: the check above is not vacuous.
  auto const unpacked = e.block_on(pass_logits(e, {}, {}, tokens, std::nullopt));
  CHECK_FALSE(close_rows(got[2], unpacked[last[2]]));
}

TEST_CASE("Forward + MaskInfo: a causal MaskInfo is the default causal pass, cached and pending slots first", "[mask_info][runtime]") {
  Engine<Tiny> e(piecrust::testing::tiny_model(), piecrust::testing::engine_options());
  auto const cached = piecrust::testing::random_prompt(41, 20);
  auto const pending = piecrust::testing::random_prompt(42, 3);
  auto const inputs = piecrust::testing::random_prompt(43, 6);
  // The KV axis holds 20 cached + 3 pending + 6 input slots; input i is query i, bottom-right aligned.
  MaskInfo const causal = mi::apply_causal(all_attend(6, 29), 23);
  auto const rows = piecrust::mask_info_pass_rows(causal, 23, 6);
  CHECK(rows == AttentionMask::causal_rows(23, 6));
  auto const want = e.block_on(pass_logits(e, cached, pending, inputs, std::nullopt));
  auto const got = e.block_on(pass_logits(e, cached, pending, inputs, causal));
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(close_rows(got[i], want[i]));
}

TEST_CASE("Forward + MaskInfo: a sliding-window MaskInfo is AttentionMask::window's rows", "[mask_info][runtime]") {
  Engine<Tiny> e(piecrust::testing::tiny_model(), piecrust::testing::engine_options());
  auto const cached = piecrust::testing::random_prompt(51, 20);
  auto const inputs = piecrust::testing::random_prompt(52, 6);
  std::size_t const window = 8;
  mi::SlidingWindowOptions o;
  o.offset = 20;  // query i is KV slot 20 + i
  MaskInfo const sliding = mi::apply_sliding_window(mi::apply_causal(all_attend(6, 26), 20),
                                                    mi::SlidingWindow(std::int64_t{window - 1}, std::int64_t{0}), o);
  auto const rows = piecrust::mask_info_pass_rows(sliding, 20, 6);
  REQUIRE(rows.size() == 6);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    CHECK(rows[i] == AttentionMask::window(20 + i + 1, window));
    CHECK(rows[i].size() == 20 + i + 1);  // trimmed to what input i can see
    CHECK(rows[i].attended_count() == window);
  }
  auto by_rows = [](Engine<Tiny>& e, std::vector<std::uint32_t> cached, std::vector<std::uint32_t> inputs,
                    std::size_t window) -> Task<std::vector<Row>> {
    auto ctx = e.create_context();
    ctx.fill(cached);
    co_await ctx.flush();
    auto f = ctx.forward();
    f.input(inputs);
    std::vector<AttentionMask> rows;
    for (std::size_t i = 0; i < inputs.size(); ++i) rows.push_back(AttentionMask::window(cached.size() + i + 1, window));
    f.attention_mask(std::move(rows));
    std::vector<piecrust::ProbeHandle<Logits>> hs;
    for (std::size_t i = 0; i < inputs.size(); ++i) hs.push_back(f.probe(i, Logits{}));
    ForwardOutput const out = co_await f.execute();
    std::vector<Row> got;
    for (auto const& h : hs) got.emplace_back(out.logits(h).begin(), out.logits(h).end());
    co_return got;
  };
  auto const want = e.block_on(by_rows(e, cached, inputs, window));
  auto const got = e.block_on(pass_logits(e, cached, {}, inputs, sliding));
  CHECK(got == want);  // the same rows: the same computation
  auto const plain = e.block_on(pass_logits(e, cached, {}, inputs, std::nullopt));
  CHECK_FALSE(close_rows(got.back(), plain.back()));  // the window really cuts the history
}

TEST_CASE("Forward + MaskInfo: size mismatches and future tokens throw; the Forward and context stay usable", "[mask_info][runtime][errors]") {
  Engine<Tiny> e(piecrust::testing::tiny_model(), piecrust::testing::engine_options());
  auto const cached = piecrust::testing::random_prompt(61, 10);
  auto const inputs = piecrust::testing::random_prompt(62, 3);
  auto const want = e.block_on(pass_logits(e, cached, {}, inputs, std::nullopt));
  auto prog = [](Engine<Tiny>& e, std::vector<std::uint32_t> cached, std::vector<std::uint32_t> inputs,
                 std::vector<Row> want) -> Task<void> {
    auto ctx = e.create_context();
    ctx.fill(cached);
    co_await ctx.flush();
    auto f = ctx.forward();
    f.input(inputs);
    MaskInfo const short_q = mi::apply_causal(all_attend(2, 13), 11);
    CHECK_THROWS_AS(f.attention_mask(short_q), piecrust::InvalidArgument);
    CHECK_THROWS_WITH(f.attention_mask(short_q), Catch::Contains("q_len = 2 != the pass's 3 inputs"));
    MaskInfo const short_kv = all_attend(3, 12);
    CHECK_THROWS_WITH(f.attention_mask(short_kv), Catch::Contains("kv_len = 12 < the 13 KV slots after the pass"));
    // Bidirectional segment ids: input 0 (slot 10) attends slot 11, a token of its own pass still to come.
    MaskInfo const future = mi::from_segments(mi::IntTensor(mi::Shape{1, 3}, {0, 0, 0}),
                                              mi::IntTensor(mi::Shape{1, 13}, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
    CHECK_THROWS_AS(f.attention_mask(future), piecrust::InvalidArgument);
    CHECK_THROWS_WITH(f.attention_mask(future), Catch::Contains("row 0 attends KV slot 11"));
    CHECK_THROWS_AS(f.attention_mask(all_attend(3, 13), 1), piecrust::OutOfRange);  // no batch 1
    // Nothing was set: the pass is the default causal one, and the context is as before.
    CHECK(ctx.seq_len() == cached.size());
    std::vector<piecrust::ProbeHandle<Logits>> hs;
    for (std::size_t i = 0; i < inputs.size(); ++i) hs.push_back(f.probe(i, Logits{}));
    ForwardOutput const out = co_await f.execute();
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      CHECK(close_rows(Row(out.logits(hs[i]).begin(), out.logits(hs[i]).end()), want[i]));
    }
    CHECK(ctx.seq_len() == cached.size() + inputs.size());
  };
  e.block_on(prog(e, cached, inputs, want));
  // A failed conversion keeps rows set before it.
  auto keep = [](Engine<Tiny>& e, std::vector<std::uint32_t> cached, std::vector<std::uint32_t> inputs) -> Task<Row> {
    auto ctx = e.create_context();
    ctx.fill(cached);
    co_await ctx.flush();
    auto f = ctx.forward();
    f.input(inputs);
    f.attention_mask(mi::apply_sliding_window(mi::apply_causal(all_attend(3, 13), 10), mi::SlidingWindow(std::int64_t{1}, std::int64_t{0}),
                                              mi::SlidingWindowOptions{.offset = 10}));
    CHECK_THROWS_AS(f.attention_mask(all_attend(3, 13)), piecrust::InvalidArgument);  // attends the future
    auto const h = f.probe(2, Logits{});
    ForwardOutput const out = co_await f.execute();
    co_return Row(out.logits(h).begin(), out.logits(h).end());
  };
  auto const windowed = e.block_on(keep(e, cached, inputs));
  CHECK_FALSE(close_rows(windowed, want[2]));  // the window of 2 still applied, not the default causal rows
}
