#pragma once
// JSON <-> MaskInfo values for the maskinfo conformance suite (format: ../shared/conformance/README.md).

#include <nlohmann/json.hpp>

#include "piecrust/mask_info.hpp"

#include <cmath>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace piecrust::conformance::maskinfo_json {

namespace mi = piecrust::maskinfo;
using nlohmann::json;

/// A case that the suite cannot interpret (unknown op or keyword): reported as a failure.
struct Unsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline double number_of(json const& v) {
  if (v.is_boolean()) return v.get<bool>() ? 1.0 : 0.0;
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    auto const s = v.get<std::string>();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
  }
  throw Unsupported("not a number: " + v.dump());
}

inline void flatten(json const& v, std::vector<double>& out) {
  if (v.is_array()) {
    for (auto const& e : v) flatten(e, out);
  } else {
    out.push_back(number_of(v));
  }
}

inline bool is_array_value(json const& v) { return v.is_object() && v.contains("dtype") && v.contains("shape"); }

inline mi::Array to_array(json const& v) {
  if (!is_array_value(v)) throw Unsupported("expected an array value, got " + v.dump().substr(0, 200));
  mi::Shape shape = v.at("shape").get<mi::Shape>();
  std::vector<double> values;
  flatten(v.at("data"), values);
  return mi::Array::from_values(mi::parse_dtype(v.at("dtype").get<std::string>()), std::move(shape), values);
}

inline mi::IntTensor to_ints(json const& v) {
  if (v.is_number_integer()) return mi::IntTensor(mi::Shape{}, std::vector<std::int32_t>{v.get<std::int32_t>()});
  return to_array(v).to_int32();
}

inline json nest(mi::Shape const& shape, std::size_t axis, std::size_t& flat, mi::Array const& a) {
  if (axis == shape.size()) {
    double const x = a.value(flat++);
    switch (a.dtype()) {
      case mi::DType::bool_: return json(x != 0.0);
      case mi::DType::int32: return json(static_cast<std::int64_t>(x));
      default:
        if (std::isnan(x)) return json("nan");
        if (std::isinf(x)) return json(x > 0 ? "inf" : "-inf");
        return json(x);
    }
  }
  json arr = json::array();
  for (std::int64_t i = 0; i < shape[axis]; ++i) arr.push_back(nest(shape, axis + 1, flat, a));
  return arr;
}

inline json from_array(mi::Array const& a) {
  std::size_t flat = 0;
  return json{{"dtype", std::string(mi::dtype_name(a.dtype()))}, {"shape", a.shape()}, {"data", nest(a.shape(), 0, flat, a)}};
}
template <class T>
json from_opt(std::optional<T> const& a) {
  if (!a) return nullptr;
  return from_array(mi::Array(*a));
}
inline json tuple(std::vector<json> items) { return json{{"tuple", std::move(items)}}; }

inline json from_axis(mi::AxisName const& a) {
  if (a.is_none()) return nullptr;
  if (a.tuple) return tuple(std::vector<json>(a.names.begin(), a.names.end()));
  return a.names.front();
}
inline mi::AxisName to_axis(json const& v) {
  if (v.is_null()) return mi::AxisName::none();
  if (v.is_string()) return mi::AxisName(v.get<std::string>());
  if (v.is_object() && v.contains("tuple")) return mi::AxisName::of_tuple(v.at("tuple").get<std::vector<std::string>>());
  if (v.is_array()) return mi::AxisName::of_tuple(v.get<std::vector<std::string>>());
  throw Unsupported("not an axis name: " + v.dump());
}

inline json from_spec(std::optional<mi::PartitionSpec> const& s) {
  if (!s) return nullptr;
  json out = json::array();
  for (auto const& e : *s) {
    if (e.is_none()) {
      out.push_back(nullptr);
    } else if (e.tuple) {
      out.push_back(e.names);
    } else {
      out.push_back(e.names.front());
    }
  }
  return out;
}
inline json from_sharding(mi::MaskSharding const& s) {
  return json{{"MaskSharding",
               {{"attention_mask", from_spec(s.attention_mask)},
                {"q_segment_ids", from_spec(s.q_segment_ids)},
                {"kv_segment_ids", from_spec(s.kv_segment_ids)},
                {"cu_seqlens_q", from_spec(s.cu_seqlens_q)},
                {"cu_seqlens_kv", from_spec(s.cu_seqlens_kv)},
                {"q_positions", from_spec(s.q_positions)},
                {"kv_positions", from_spec(s.kv_positions)}}}};
}
inline json from_baked(mi::BakedInMasks const& b) {
  return json{{"causal", b.causal}, {"sliding_window", b.sliding_window}, {"chunked", b.chunked}, {"token_type_ids", b.token_type_ids}};
}
inline json from_opt_int(std::optional<std::int64_t> v) { return v ? json(*v) : json(nullptr); }

/// The fields of a MaskInfo as the `expect.state` keys name them.
inline json state_of(piecrust::MaskInfo const& m) {
  auto const& f = m.fields();
  return json{{"_attention_mask", f.attention_mask ? from_array(*f.attention_mask) : json(nullptr)},
              {"_q_segment_ids", from_opt(f.q_segment_ids)},
              {"_kv_segment_ids", from_opt(f.kv_segment_ids)},
              {"_cu_seqlens_q", from_opt(f.cu_seqlens_q)},
              {"_cu_seqlens_kv", from_opt(f.cu_seqlens_kv)},
              {"q_positions", from_opt(f.q_positions)},
              {"kv_positions", from_opt(f.kv_positions)},
              {"baked_in_masks", from_baked(m.baked_in_masks())},
              {"batch_axis_name", from_axis(f.batch_axis_name)},
              {"qheads_axis_name", from_axis(f.qheads_axis_name)},
              {"kvheads_axis_name", from_axis(f.kvheads_axis_name)},
              {"sequence_axis_name", from_axis(f.sequence_axis_name)}};
}

inline bool truthy(json const& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0.0;
  if (is_array_value(v)) {
    std::vector<double> d;
    flatten(v.at("data"), d);
    return d.size() == 1 && d[0] != 0.0;
  }
  return !v.is_null();
}

/// The value of a 0-d (or one-element) array, or of a plain number.
inline double scalar_of(json const& v) {
  if (!is_array_value(v)) return number_of(v);
  std::vector<double> d;
  flatten(v.at("data"), d);
  if (d.size() != 1) throw Unsupported("expected a scalar, got " + v.dump().substr(0, 200));
  return d[0];
}

inline bool same_number(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (a == b) return true;
  return std::fabs(a - b) <= 1e-6 * std::max(std::fabs(a), std::fabs(b));
}

/// Compares an expected value with what came out; returns a description of the first difference.
inline std::optional<std::string> differs(json const& want, json const& got, std::string const& path = "") {
  auto where = [&] { return path.empty() ? std::string("value") : path; };
  if (want.is_boolean()) {
    if (got.is_boolean() || got.is_number() || is_array_value(got)) {
      if (truthy(want) == truthy(got)) return std::nullopt;
    }
    return where() + ": expected " + want.dump() + ", got " + got.dump().substr(0, 300);
  }
  if (is_array_value(want) && want.at("dtype") == "bool" && want.at("shape").empty() && got.is_boolean()) {
    if (truthy(want) == truthy(got)) return std::nullopt;  // a 0-d bool array compares by truth value
    return where() + ": expected " + want.dump() + ", got " + got.dump();
  }
  if (is_array_value(want)) {
    if (!is_array_value(got)) return where() + ": expected an array, got " + got.dump().substr(0, 300);
    if (want.at("dtype") != got.at("dtype")) {
      return where() + ": dtype " + want.at("dtype").dump() + " expected, got " + got.at("dtype").dump();
    }
    if (want.at("shape") != got.at("shape")) {
      return where() + ": shape " + want.at("shape").dump() + " expected, got " + got.at("shape").dump();
    }
    std::vector<double> a, b;
    flatten(want.at("data"), a);
    flatten(got.at("data"), b);
    if (a.size() != b.size()) return where() + ": element counts differ";
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!same_number(a[i], b[i])) {
        return where() + ": element " + std::to_string(i) + " expected " + want.at("data").dump().substr(0, 400) +
               ", got " + got.at("data").dump().substr(0, 400);
      }
    }
    return std::nullopt;
  }
  if (want.is_object() && want.contains("tuple")) {
    if (!got.is_object() || !got.contains("tuple")) return where() + ": expected a tuple, got " + got.dump().substr(0, 300);
    auto const& a = want.at("tuple");
    auto const& b = got.at("tuple");
    if (a.size() != b.size()) return where() + ": tuple sizes differ: " + want.dump().substr(0, 300) + " vs " + got.dump().substr(0, 300);
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (auto d = differs(a[i], b[i], where() + "[" + std::to_string(i) + "]")) return d;
    }
    return std::nullopt;
  }
  if (want.is_object()) {
    if (!got.is_object()) return where() + ": expected " + want.dump().substr(0, 300) + ", got " + got.dump().substr(0, 300);
    for (auto const& [k, v] : want.items()) {
      if (!got.contains(k)) return where() + "." + k + ": missing";
      if (auto d = differs(v, got.at(k), where() + "." + k)) return d;
    }
    return std::nullopt;
  }
  if (want.is_number() && got.is_number()) {
    if (same_number(want.get<double>(), got.get<double>())) return std::nullopt;
  } else if (want == got) {
    return std::nullopt;
  }
  return where() + ": expected " + want.dump().substr(0, 500) + ", got " + got.dump().substr(0, 500);
}

/// Keyword arguments that remember which keys were read, so unknown keywords are reported.
class Kwargs {
 public:
  explicit Kwargs(json const& obj) : obj_(obj.is_object() ? obj : json::object()) {}
  [[nodiscard]] bool has(std::string const& k) const {
    used_.insert(k);
    return obj_.contains(k) && !obj_.at(k).is_null();
  }
  [[nodiscard]] bool present(std::string const& k) const {
    used_.insert(k);
    return obj_.contains(k);
  }
  [[nodiscard]] json const& at(std::string const& k) const {
    used_.insert(k);
    if (!obj_.contains(k)) throw Unsupported("missing keyword '" + k + "'");
    return obj_.at(k);
  }
  template <class T>
  [[nodiscard]] T get(std::string const& k, T fallback) const {
    if (!has(k)) return fallback;
    json const& v = obj_.at(k);
    if constexpr (std::is_same_v<T, bool>) {
      if (v.is_number()) return v.get<double>() != 0.0;
      if (is_array_value(v)) return truthy(v);
    } else if constexpr (std::is_integral_v<T> || std::is_floating_point_v<T>) {
      if (is_array_value(v)) return static_cast<T>(scalar_of(v));  // a 0-d array
    }
    return v.get<T>();
  }
  [[nodiscard]] mi::DType dtype(std::string const& k, mi::DType fallback) const {
    return has(k) ? mi::parse_dtype(obj_.at(k).get<std::string>()) : fallback;
  }
  void check_all_used(std::string const& what) const {
    for (auto const& [k, v] : obj_.items()) {
      if (!used_.count(k)) throw Unsupported(what + ": unsupported keyword '" + k + "'");
    }
  }

 private:
  json obj_;
  mutable std::set<std::string> used_;
};

}  // namespace piecrust::conformance::maskinfo_json
