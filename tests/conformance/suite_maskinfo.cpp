// The `maskinfo` conformance suite: runs ejKernel MaskInfo cases (module functions by name, or a
// MaskInfo constructor plus a sequence of ops) against piecrust::MaskInfo and compares returns, final
// state and raised errors. Format: ../shared/conformance/README.md.

#include "maskinfo_json.hpp"
#include "suite.hpp"

#include "piecrust/mask_info.hpp"

#include <iostream>
#include <algorithm>
#include <optional>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

namespace {

namespace mi = piecrust::maskinfo;
namespace mj = piecrust::conformance::maskinfo_json;
using piecrust::MaskInfo;
using piecrust::conformance::Outcome;
using nlohmann::json;
using mj::Kwargs;

/// Python-only or not reproducible: the reason a case is skipped.
struct NotApplicable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::optional<mi::IntTensor> opt_ints(Kwargs const& kw, char const* k) {
  return kw.has(k) ? std::optional<mi::IntTensor>(mj::to_ints(kw.at(k))) : std::nullopt;
}
std::optional<std::int64_t> opt_int(Kwargs const& kw, char const* k) {
  return kw.has(k) ? std::optional<std::int64_t>(kw.get<std::int64_t>(k, 0)) : std::nullopt;
}
mi::BatchInts batch_ints(json const& v) {
  if (v.is_number_integer()) return mi::BatchInts(v.get<std::int64_t>());
  return mi::BatchInts(mj::to_ints(v));
}
json ints_json(mi::IntTensor const& t) { return mj::from_array(mi::Array(t)); }
json pair_json(mi::QkvPair<mi::IntTensor> const& p) { return mj::tuple({ints_json(p.q), ints_json(p.kv)}); }
json cast_ints(mi::IntTensor const& t, mi::DType d) { return mj::from_array(mi::Array(t).astype(d)); }

mi::AxisNames axes_from(Kwargs const& kw) {
  mi::AxisNames a;
  if (kw.present("batch_axis_name")) a.batch_axis_name = mj::to_axis(kw.at("batch_axis_name"));
  if (kw.present("qheads_axis_name")) a.qheads_axis_name = mj::to_axis(kw.at("qheads_axis_name"));
  if (kw.present("kvheads_axis_name")) a.kvheads_axis_name = mj::to_axis(kw.at("kvheads_axis_name"));
  if (kw.present("sequence_axis_name")) a.sequence_axis_name = mj::to_axis(kw.at("sequence_axis_name"));
  return a;
}

// ------------------------------------------------------------------ module functions

json run_function(std::string const& fn, Kwargs const& kw) {
  if (fn == "segment_ids_to_mask") {
    json const& ids = kw.at("segment_ids");
    mi::DType const d = kw.dtype("dtype", mi::DType::bool_);
    bool const separate = kw.get<bool>("return_separate_masks", false);
    mi::IntTensor q, kv;
    if (ids.is_object() && ids.contains("tuple")) {
      if (ids.at("tuple").size() != 2) throw mj::Unsupported("segment_ids tuple must have 2 entries");
      q = mj::to_ints(ids.at("tuple")[0]);
      kv = mj::to_ints(ids.at("tuple")[1]);
    } else {
      q = mj::to_ints(ids);
      kv = q;
    }
    if (separate) {
      auto const r = mi::segment_ids_to_qkv_masks(q, kv, d);
      return mj::tuple({mj::from_array(r.q_mask), mj::from_array(r.kv_mask), mj::from_array(r.attention_mask)});
    }
    return mj::from_array(mi::segment_ids_to_mask(q, kv, d));
  }
  if (fn == "segment_ids_to_qkv_masks") {
    auto const r = mi::segment_ids_to_qkv_masks(mj::to_ints(kw.at("q_segment_ids")), opt_ints(kw, "kv_segment_ids"),
                                                kw.dtype("dtype", mi::DType::bool_));
    return mj::tuple({mj::from_array(r.q_mask), mj::from_array(r.kv_mask), mj::from_array(r.attention_mask)});
  }
  if (fn == "mask_to_segment_ids") {
    return pair_json(mi::mask_to_segment_ids(mj::to_array(kw.at("mask")), kw.get<bool>("per_head", false)));
  }
  if (fn == "_positions_from_segments_2d") {
    return ints_json(mi::positions_from_segments_2d(mj::to_ints(kw.at("segment_ids")), kw.get<std::int32_t>("pad_value", -1)));
  }
  if (fn == "qkv_masks_to_cu_seqlens") {
    std::optional<mi::Array> kv;
    if (kw.has("kv_mask")) kv = mj::to_array(kw.at("kv_mask"));
    auto const r = mi::qkv_masks_to_cu_seqlens(mj::to_array(kw.at("q_mask")), kv);
    mi::DType const d = kw.dtype("out_dtype", mi::DType::int32);
    return mj::tuple({cast_ints(r.q, d), cast_ints(r.kv, d)});
  }
  if (fn == "_segment_ids_to_cu_seqlens") {
    return cast_ints(mi::segment_ids_to_cu_seqlens(mj::to_ints(kw.at("segment_ids")), kw.get<std::int64_t>("max_segments", 128)),
                     kw.dtype("out_dtype", mi::DType::int32));
  }
  if (fn == "cu_seqlens_to_mask") {
    return mj::from_array(mi::cu_seqlens_to_mask(mj::to_ints(kw.at("cu_seqlens")), kw.get<std::int64_t>("max_len", 0),
                                                 kw.dtype("dtype", mi::DType::bool_)));
  }
  if (fn == "qkv_cu_seqlens_to_qkv_masks") {
    auto const r = mi::qkv_cu_seqlens_to_qkv_masks(mj::to_ints(kw.at("cu_seqlens_q")), kw.at("max_q_len").get<std::int64_t>(),
                                                   opt_ints(kw, "cu_seqlens_kv"), opt_int(kw, "max_kv_len"),
                                                   kw.dtype("dtype", mi::DType::bool_));
    return mj::tuple({mj::from_array(r.q), mj::from_array(r.kv)});
  }
  if (fn == "qkv_cu_seqlens_to_attention_mask") {
    return mj::from_array(mi::qkv_cu_seqlens_to_attention_mask(
        mj::to_ints(kw.at("cu_seqlens_q")), kw.at("max_q_len").get<std::int64_t>(), opt_ints(kw, "cu_seqlens_kv"),
        opt_int(kw, "max_kv_len"), kw.dtype("dtype", mi::DType::bool_)));
  }
  if (fn == "attention_mask_to_qkv_cu_seqlens") {
    auto const r = mi::attention_mask_to_qkv_cu_seqlens(mj::to_array(kw.at("attention_mask")),
                                                        kw.get<std::string>("reduce_heads", "any"));
    mi::DType const d = kw.dtype("out_dtype", mi::DType::int32);
    return mj::tuple({cast_ints(r.q, d), cast_ints(r.kv, d)});
  }
  if (fn == "MaskInfo.create_chunked_attention_mask") {
    return mj::from_array(mi::create_chunked_attention_mask(
        kw.at("chunk_size").get<std::int64_t>(), kw.at("q_len").get<std::int64_t>(), opt_int(kw, "kv_len"),
        kw.get<std::int64_t>("offset", 0), kw.dtype("dtype", mi::DType::bool_)));
  }
  if (fn == "MaskInfo.get_empty_sharding") return mj::from_sharding(mi::get_empty_sharding());
  if (fn == "get_debug_mode") return mi::get_debug_mode();
  throw mj::Unsupported("unknown function '" + fn + "'");
}

// ------------------------------------------------------------------ MaskInfo constructors and ops

MaskInfo construct(std::string const& name, Kwargs const& kw) {
  if (name == "from_segments") {
    mi::SegmentsOptions o;
    o.q_positions = opt_ints(kw, "q_positions");
    o.kv_positions = opt_ints(kw, "kv_positions");
    o.is_attn_mask = kw.get<bool>("is_attn_mask", false);
    o.axes = axes_from(kw);
    return mi::from_segments(mj::to_ints(kw.at("q_segment_ids")), opt_ints(kw, "kv_segment_ids"), std::move(o));
  }
  if (name == "from_attention_mask") {
    mi::AttentionMaskOptions o;
    o.q_positions = opt_ints(kw, "q_positions");
    o.kv_positions = opt_ints(kw, "kv_positions");
    o.mask_is_valid = kw.get<bool>("mask_is_valid", true);
    o.axes = axes_from(kw);
    return mi::from_attention_mask(mj::to_array(kw.at("attention_mask")), std::move(o));
  }
  if (name == "from_cu_seqlens") {
    mi::CuSeqlensOptions o;
    o.cu_seqlens_kv = opt_ints(kw, "cu_seqlens_kv");
    o.max_kv_len = opt_int(kw, "max_kv_len");
    o.q_positions = opt_ints(kw, "q_positions");
    o.kv_positions = opt_ints(kw, "kv_positions");
    o.axes = axes_from(kw);
    if (!kw.present("max_q_len")) throw mj::Unsupported("from_cu_seqlens needs max_q_len (TypeError upstream)");
    return mi::from_cu_seqlens(mj::to_ints(kw.at("cu_seqlens_q")), kw.at("max_q_len").get<std::int64_t>(), std::move(o));
  }
  if (name == "from_random") {
    mi::RandomOptions o;
    o.kv_len = opt_int(kw, "kv_len");
    o.sparsity = kw.get<double>("sparsity", 0.5);
    o.seed = kw.get<std::uint64_t>("seed", 0);
    o.q_positions = opt_ints(kw, "q_positions");
    o.kv_positions = opt_ints(kw, "kv_positions");
    o.axes = axes_from(kw);
    if (o.sparsity > 0.0 && o.sparsity < 1.0) {
      throw NotApplicable("from_random with 0 < sparsity < 1: the bits come from JAX's threefry PRNG, not reproduced");
    }
    return mi::from_random(kw.at("batch_size").get<std::int64_t>(), kw.at("q_len").get<std::int64_t>(), std::move(o));
  }
  if (name == "dynamic_init") {
    mi::DynamicInitArgs a;
    a.input_ids = opt_ints(kw, "input_ids");
    if (kw.has("inputs_embeds")) a.inputs_embeds_shape = kw.at("inputs_embeds").at("shape").get<mi::Shape>();
    if (kw.has("attention_mask")) a.attention_mask = mj::to_array(kw.at("attention_mask"));
    if (kw.has("mask_info")) throw NotApplicable("dynamic_init(mask_info=...) passes a Python object through");
    return mi::dynamic_init(a);
  }
  if (name == "raw") {
    MaskInfo::Fields f;
    if (kw.has("_attention_mask")) f.attention_mask = mj::to_array(kw.at("_attention_mask"));
    f.q_segment_ids = opt_ints(kw, "_q_segment_ids");
    f.kv_segment_ids = opt_ints(kw, "_kv_segment_ids");
    f.cu_seqlens_q = opt_ints(kw, "_cu_seqlens_q");
    f.cu_seqlens_kv = opt_ints(kw, "_cu_seqlens_kv");
    f.q_positions = opt_ints(kw, "q_positions");
    f.kv_positions = opt_ints(kw, "kv_positions");
    f.causal_mask_baked_in = kw.get<bool>("causal_mask_baked_in", false);
    f.sliding_window_baked_in = kw.get<bool>("sliding_window_baked_in", false);
    f.chunked_mask_baked_in = kw.get<bool>("chunked_mask_baked_in", false);
    f.token_type_ids_baked_in = kw.get<bool>("token_type_ids_baked_in", false);
    f.set_axes(axes_from(kw));
    return MaskInfo(std::move(f));
  }
  throw mj::Unsupported("unknown constructor '" + name + "'");
}

mi::Replace replace_args(Kwargs const& kw) {
  mi::Replace r;
  if (kw.has("attention_mask")) r.attention_mask = mj::to_array(kw.at("attention_mask"));
  r.q_segment_ids = opt_ints(kw, "q_segment_ids");
  r.kv_segment_ids = opt_ints(kw, "kv_segment_ids");
  r.cu_seqlens_q = opt_ints(kw, "cu_seqlens_q");
  r.cu_seqlens_kv = opt_ints(kw, "cu_seqlens_kv");
  if (kw.present("_attention_mask")) {
    r.field_attention_mask = kw.has("_attention_mask") ? std::optional<mi::Array>(mj::to_array(kw.at("_attention_mask")))
                                                       : std::nullopt;
  }
  auto field = [&](char const* k, std::optional<std::optional<mi::IntTensor>>& slot) {
    if (kw.present(k)) slot = opt_ints(kw, k);
  };
  field("_q_segment_ids", r.field_q_segment_ids);
  field("_kv_segment_ids", r.field_kv_segment_ids);
  field("_cu_seqlens_q", r.field_cu_seqlens_q);
  field("_cu_seqlens_kv", r.field_cu_seqlens_kv);
  field("q_positions", r.q_positions);
  field("kv_positions", r.kv_positions);
  auto flag = [&](char const* k, std::optional<bool>& slot) {
    if (kw.has(k)) slot = kw.at(k).get<bool>();
  };
  flag("causal_mask_baked_in", r.causal_mask_baked_in);
  flag("sliding_window_baked_in", r.sliding_window_baked_in);
  flag("chunked_mask_baked_in", r.chunked_mask_baked_in);
  flag("token_type_ids_baked_in", r.token_type_ids_baked_in);
  auto axis = [&](char const* k, std::optional<mi::AxisName>& slot) {
    if (kw.present(k)) slot = mj::to_axis(kw.at(k));
  };
  axis("batch_axis_name", r.batch_axis_name);
  axis("qheads_axis_name", r.qheads_axis_name);
  axis("kvheads_axis_name", r.kvheads_axis_name);
  axis("sequence_axis_name", r.sequence_axis_name);
  return r;
}

/// An op's result: a new MaskInfo or a JSON value.
using OpResult = std::variant<MaskInfo, json>;

OpResult run_op(MaskInfo const& m, std::string const& op, Kwargs const& kw) {
  if (op == "get_or_compute_attention_mask") {
    return mj::from_array(mi::get_or_compute_attention_mask(m, kw.dtype("dtype", mi::DType::bool_)));
  }
  if (op == "attention_mask") return mj::from_array(mi::attention_mask(m));
  if (op == "get_or_compute_segment_ids") return pair_json(mi::get_or_compute_segment_ids(m, kw.get<bool>("per_head", false)));
  if (op == "q_segment_ids") return ints_json(mi::q_segment_ids(m));
  if (op == "kv_segment_ids") return ints_json(mi::kv_segment_ids(m));
  if (op == "get_or_compute_qkv_cu_seqlens") {
    auto const r = mi::get_or_compute_qkv_cu_seqlens(m, kw.get<std::int64_t>("max_segments", 128));
    mi::DType const d = kw.dtype("out_dtype", mi::DType::int32);
    return mj::tuple({cast_ints(r.q, d), cast_ints(r.kv, d)});
  }
  if (op == "cu_seqlens_q") return ints_json(mi::cu_seqlens_q(m));
  if (op == "cu_seqlens_kv") return ints_json(mi::cu_seqlens_kv(m));
  if (op == "get_or_compute_positions") {
    auto const r = mi::get_or_compute_positions(m);
    return mj::tuple({mj::from_opt(r.q), mj::from_opt(r.kv)});
  }
  if (op == "q_position_ids") return ints_json(mi::q_position_ids(m));
  if (op == "q_attention_mask") return ints_json(mi::q_attention_mask(m));
  if (op == "get_qkv_masks") {
    auto const r = mi::get_qkv_masks(m, kw.dtype("dtype", mi::DType::bool_));
    return mj::tuple({mj::from_array(r.q_mask), mj::from_array(r.kv_mask), mj::from_array(r.attention_mask)});
  }
  if (op == "q_lens") return mj::from_opt(mi::q_lens(m));
  if (op == "kv_lens") return mj::from_opt(mi::kv_lens(m));
  if (op == "is_multi_sequence") return json(mi::is_multi_sequence(m));
  if (op == "is_self_attention") return json(mi::is_self_attention(m));
  if (op == "to_dtype") return mi::to_dtype(m, kw.dtype("dtype", mi::DType::bool_));
  if (op == "materialize_attention_mask") return mi::materialize_attention_mask(m, kw.dtype("dtype", mi::DType::bool_));
  if (op == "materialize_segment_ids") return mi::materialize_segment_ids(m, kw.get<bool>("per_head", false));
  if (op == "create_bias") return mj::from_array(mi::create_bias(m, kw.dtype("dtype", mi::DType::float32)));
  if (op == "bias") return mj::from_array(mi::bias(m));
  if (op == "batch_size") return mj::from_opt_int(m.batch_size());
  if (op == "q_len") return mj::from_opt_int(m.q_len());
  if (op == "kv_len") return mj::from_opt_int(m.kv_len());
  if (op == "shape") {
    auto const s = m.shape();
    return mj::tuple({mj::from_opt_int(s.batch_size), mj::from_opt_int(s.q_len), mj::from_opt_int(s.kv_len)});
  }
  if (op == "baked_in_masks") return mj::from_baked(m.baked_in_masks());
  if (op == "__repr__" || op == "__str__") return json(mi::repr(m));
  if (op == "replace") return mi::replace(m, replace_args(kw));
  if (op == "apply_causal") return mi::apply_causal(m, kw.has("offset") ? batch_ints(kw.at("offset")) : mi::BatchInts(0));
  if (op == "apply_sliding_window") {
    json const& w = kw.at("sliding_window");
    mi::SlidingWindow const win = w.is_number_integer()
                                      ? mi::SlidingWindow(w.get<std::int64_t>())
                                      : mi::SlidingWindow(w.at("tuple")[0].get<std::int64_t>(), w.at("tuple")[1].get<std::int64_t>());
    mi::SlidingWindowOptions o;
    if (kw.has("offset")) o.offset = batch_ints(kw.at("offset"));
    if (kw.has("mode")) o.mode = kw.at("mode").get<std::string>();
    if (kw.has("index")) o.index = batch_ints(kw.at("index"));
    return mi::apply_sliding_window(m, win, o);
  }
  if (op == "apply_chunked") {
    json const& c = kw.at("chunk_size");
    // An array chunk_size takes upstream's traced branch: max(c, 1), no error.
    std::int64_t const chunk = mj::is_array_value(c) ? std::max<std::int64_t>(static_cast<std::int64_t>(mj::scalar_of(c)), 1)
                                                     : c.get<std::int64_t>();
    return mi::apply_chunked(m, chunk, kw.get<std::int64_t>("offset", 0));
  }
  if (op == "apply_token_type_ids") {
    json const& t = kw.at("token_type_ids");
    std::optional<mi::TokenTypes> types;
    if (t.is_object() && t.contains("tuple")) {
      types.emplace(mj::to_ints(t.at("tuple")[0]), mj::to_ints(t.at("tuple")[1]));
    } else {
      types.emplace(mj::to_ints(t));
    }
    mi::TokenTypeOptions o;
    o.combine = kw.get<std::string>("combine", "union");
    o.zero_policy = kw.get<std::string>("zero_policy", "q");
    if (kw.has("update_segment_ids")) o.update_segment_ids = kw.at("update_segment_ids").get<bool>();
    return mi::apply_token_type_ids(m, *types, o);
  }
  if (op == "apply_kv_lengths") {
    mi::KvLengthsOptions o;
    o.q_len = opt_int(kw, "q_len");
    if (kw.has("end_index")) o.end_index = batch_ints(kw.at("end_index"));
    o.sliding_window = opt_int(kw, "sliding_window");
    return mi::apply_kv_lengths(m, batch_ints(kw.at("kv_lengths")), o);
  }
  if (op == "visualize") {
    mi::VisualizeOptions o;
    if (kw.has("block_size")) {
      json const& b = kw.at("block_size");
      o.block_size = b.is_number_integer() ? mi::BlockSize(b.get<std::int64_t>())
                                           : mi::BlockSize(b.at("tuple")[0].get<std::int64_t>(), b.at("tuple")[1].get<std::int64_t>());
    }
    o.batch = kw.get<std::int64_t>("batch", 0);
    o.head = kw.get<std::int64_t>("head", 0);
    o.fit_in_screen = kw.get<bool>("fit_in_screen", true);
    o.max_rows = kw.get<std::int64_t>("max_rows", 32);
    o.max_cols = kw.get<std::int64_t>("max_cols", 64);
    o.charset = kw.get<std::string>("charset", "unicode");
    o.show_segments = kw.get<bool>("show_segments", true);
    o.return_str = kw.get<bool>("return_str", false);
    std::optional<std::string> s;
    if (o.return_str) {
      s = mi::visualize(m, o);
    } else {  // prints and returns None: keep the runner's output clean
      std::ostringstream sink;
      auto* const old = std::cout.rdbuf(sink.rdbuf());
      try {
        s = mi::visualize(m, o);
      } catch (...) {
        std::cout.rdbuf(old);
        throw;
      }
      std::cout.rdbuf(old);
    }
    return s ? json(*s) : json(nullptr);
  }
  if (op == "get_shardings") {
    mi::Mesh mesh;
    for (auto const& [name, size] : kw.at("mesh").at("mesh_axes").items()) mesh.axes.emplace_back(name, size.get<std::int64_t>());
    return mj::from_sharding(mi::get_shardings(m, mesh, kw.get<bool>("sequence_parallel", false)));
  }
  if (op == "get_empty_sharding") return mj::from_sharding(mi::get_empty_sharding());
  if (op == "tree_flatten" || op == "tree_unflatten") throw NotApplicable("JAX pytree flattening is Python-only");
  throw mj::Unsupported("unknown op '" + op + "'");
}

// ------------------------------------------------------------------ errors

/// Whether the thrown piecrust error corresponds to the upstream exception class.
bool error_matches(std::string const& upstream, std::exception const& e) {
  bool const invalid_arg = dynamic_cast<piecrust::InvalidArgument const*>(&e) != nullptr;
  bool const invalid_state = dynamic_cast<piecrust::InvalidState const*>(&e) != nullptr;
  bool const out_of_range = dynamic_cast<piecrust::OutOfRange const*>(&e) != nullptr;
  if (upstream == "ValueError") return invalid_arg || invalid_state;
  if (upstream == "IndexError") return out_of_range;
  if (upstream == "TypeError") return invalid_arg;
  return false;
}

std::string error_kind(std::exception const& e) {
  if (dynamic_cast<piecrust::InvalidArgument const*>(&e)) return "InvalidArgument";
  if (dynamic_cast<piecrust::InvalidState const*>(&e)) return "InvalidState";
  if (dynamic_cast<piecrust::OutOfRange const*>(&e)) return "OutOfRange";
  if (dynamic_cast<piecrust::Error const*>(&e)) return "piecrust::Error";
  return "std::exception";
}

Outcome run_case(json const& c) {
  if (!c.is_object() || !c.contains("fn")) return Outcome::failed("malformed case: no 'fn'");
  std::string const fn = c.at("fn").get<std::string>();
  if (fn == "meta") return Outcome::skipped("meta line");
  if (!c.contains("expect") || !c.at("expect").is_object()) return Outcome::failed("malformed case: no 'expect' object");
  json const& expect = c.at("expect");
  json const args = c.value("args", json::object());
  std::optional<std::string> const raises =
      expect.contains("raises") ? std::optional<std::string>(expect.at("raises").get<std::string>()) : std::nullopt;
  try {
    bool const is_object_case = args.is_object() && args.contains("init");
    if (!is_object_case) {
      Kwargs kw(args);
      json got;
      try {
        got = run_function(fn, kw);
        kw.check_all_used(fn);
      } catch (piecrust::Error const& e) {
        if (raises && error_matches(*raises, e)) return Outcome::passed();
        return Outcome::failed("threw " + error_kind(e) + ": " + e.what() +
                               (raises ? " (expected " + *raises + ")" : std::string()));
      }
      if (raises) return Outcome::failed("expected " + *raises + ", got " + got.dump().substr(0, 300));
      if (expect.contains("return")) {
        if (auto d = mj::differs(expect.at("return"), got)) return Outcome::failed(*d);
      }
      return Outcome::passed();
    }

    // MaskInfo: constructor + ops
    json const& init = args.at("init");
    json const ops = args.value("ops", json::array());
    std::optional<MaskInfo> m;
    std::vector<json> returns;
    json last = nullptr;
    int at = -1;
    try {
      Kwargs ckw(init.value("kwargs", json::object()));
      m = construct(init.at("name").get<std::string>(), ckw);
      ckw.check_all_used("constructor " + init.at("name").get<std::string>());
      for (at = 0; at < static_cast<int>(ops.size()); ++at) {
        json const& op = ops[static_cast<std::size_t>(at)];
        Kwargs okw(op.value("kwargs", json::object()));
        OpResult r = run_op(*m, op.at("name").get<std::string>(), okw);
        okw.check_all_used("op " + op.at("name").get<std::string>());
        if (auto* next = std::get_if<MaskInfo>(&r)) {
          m = std::move(*next);
          returns.emplace_back("<MaskInfo>");
        } else {
          last = std::get<json>(r);
          returns.push_back(last);
        }
      }
    } catch (piecrust::Error const& e) {
      if (raises && error_matches(*raises, e)) {
        if (expect.contains("at_op") && expect.at("at_op").get<int>() != (at < 0 ? -1 : at)) {
          return Outcome::failed("raised at op " + std::to_string(at) + ", expected at op " + expect.at("at_op").dump());
        }
        return Outcome::passed();
      }
      return Outcome::failed("op " + std::to_string(at) + " threw " + error_kind(e) + ": " + e.what() +
                             (raises ? " (expected " + *raises + ")" : std::string()));
    }
    if (raises) return Outcome::failed("expected " + *raises + ", nothing was raised");
    if (expect.contains("returns")) {
      json const& want = expect.at("returns");
      if (want.size() != returns.size()) return Outcome::failed("returns: " + std::to_string(returns.size()) + " results, expected " + std::to_string(want.size()));
      for (std::size_t i = 0; i < want.size(); ++i) {
        if (auto d = mj::differs(want[i], returns[i], "returns[" + std::to_string(i) + "]")) return Outcome::failed(*d);
      }
    }
    if (expect.contains("return")) {
      if (auto d = mj::differs(expect.at("return"), last, "return")) return Outcome::failed(*d);
    }
    if (expect.contains("state")) {
      json const state = mj::state_of(*m);
      for (auto const& [k, v] : expect.at("state").items()) {
        if (!state.contains(k)) return Outcome::failed("state." + k + ": unknown field");
        if (auto d = mj::differs(v, state.at(k), "state." + k)) return Outcome::failed(*d);
      }
    }
    return Outcome::passed();
  } catch (NotApplicable const& e) {
    return Outcome::skipped(e.what());
  } catch (mj::Unsupported const& e) {
    return Outcome::failed(std::string("cannot interpret case: ") + e.what());
  } catch (nlohmann::json::exception const& e) {
    return Outcome::failed(std::string("malformed case: ") + e.what());
  }
}

}  // namespace

PIECRUST_CONFORMANCE_SUITE("maskinfo", run_case);
