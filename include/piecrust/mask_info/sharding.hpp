#pragma once
// Sharding metadata for MaskInfo (ejKernel's MaskSharding / get_shardings), computed without devices:
// a Mesh is just named axes with sizes, a PartitionSpec a list of entries (None, an axis, or a tuple of
// axes; AxisName is in axis_name.hpp). corrected_spec reproduces
// ejkernel.xla_utils.get_corrected_named_sharding(...).spec.

#include "piecrust/core/error.hpp"
#include "piecrust/mask_info/axis_name.hpp"
#include "piecrust/mask_info/mask_info.hpp"
#include "piecrust/mask_info/tensor.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace piecrust::maskinfo {

/// jax.sharding.PartitionSpec: one entry per array dimension; an empty spec is fully replicated.
using PartitionSpec = std::vector<AxisName>;

/// A device mesh as metadata: axis names and sizes, in order.
struct Mesh {
  std::vector<std::pair<std::string, std::int64_t>> axes;

  [[nodiscard]] std::optional<std::int64_t> size_of(std::string const& name) const {
    for (auto const& [n, s] : axes) {
      if (n == name) return s;
    }
    return std::nullopt;
  }
  [[nodiscard]] std::string names_repr() const {
    std::vector<std::string> ns;
    for (auto const& a : axes) ns.push_back(a.first);
    std::sort(ns.begin(), ns.end());
    std::ostringstream out;
    out << '[';
    for (std::size_t i = 0; i < ns.size(); ++i) out << (i ? ", " : "") << '\'' << ns[i] << '\'';
    out << ']';
    return out.str();
  }
};

/// MaskSharding: a PartitionSpec or None per field, in upstream's field order.
struct MaskSharding {
  std::optional<PartitionSpec> attention_mask;
  std::optional<PartitionSpec> q_segment_ids;
  std::optional<PartitionSpec> kv_segment_ids;
  std::optional<PartitionSpec> cu_seqlens_q;
  std::optional<PartitionSpec> cu_seqlens_kv;
  std::optional<PartitionSpec> q_positions;
  std::optional<PartitionSpec> kv_positions;
  friend bool operator==(MaskSharding const&, MaskSharding const&) = default;
};

/// get_corrected_named_sharding(shape, spec, mesh).spec: the spec padded with None (or truncated) to the
/// array rank; an entry becomes None when one of its axes is not in the mesh or the dimension is not
/// divisible by the product of its axis sizes; all-None becomes the empty spec.
[[nodiscard]] inline PartitionSpec corrected_spec(Shape const& shape, PartitionSpec spec, Mesh const& mesh) {
  spec.resize(shape.size());
  bool any = false;
  for (std::size_t d = 0; d < spec.size(); ++d) {
    AxisName& e = spec[d];
    if (e.is_none()) continue;
    std::int64_t prod = 1;
    bool ok = true;
    for (auto const& n : e.names) {
      auto const s = mesh.size_of(n);
      if (!s) {
        ok = false;
        break;
      }
      prod *= *s;
    }
    if (!ok || prod == 0 || shape[d] % prod != 0) {
      e = AxisName::none();
    } else {
      any = true;
    }
  }
  if (!any) return {};
  return spec;
}

namespace detail {
/// Throws InvalidArgument when a configured axis name is missing from the mesh (upstream's _check).
inline void check_axis(AxisName const& a, char const* label, Mesh const& mesh) {
  for (auto const& n : a.names) {
    if (!mesh.size_of(n)) {
      piecrust::detail::fail<InvalidArgument>("Invalid axis name configuration. Axis '", n, "' (from ", label,
                                              ") is not present in the mesh. Available mesh axes: ",
                                              mesh.names_repr(), ".");
    }
  }
}
}  // namespace detail

/// get_shardings(mesh, sequence_parallel): partition specs for every present field (no devices).
[[nodiscard]] inline MaskSharding get_shardings(MaskInfo const& m, Mesh const& mesh, bool sequence_parallel = false) {
  auto const& f = m.fields();
  AxisName const seq = sequence_parallel ? f.sequence_axis_name : AxisName::none();
  detail::check_axis(f.qheads_axis_name, "qheads_axis_name", mesh);
  detail::check_axis(f.batch_axis_name, "batch_axis_name", mesh);
  detail::check_axis(seq, "sequence_axis_name", mesh);
  MaskSharding s;
  if (f.attention_mask) {
    if (f.attention_mask->rank() != 4) {
      piecrust::detail::fail<InvalidArgument>("Attention mask must be a 4D array for sharding computation, but got ",
                                              f.attention_mask->rank(), "D array with shape ",
                                              shape_repr(f.attention_mask->shape()));
    }
    s.attention_mask =
        corrected_spec(f.attention_mask->shape(), {f.batch_axis_name, f.qheads_axis_name, seq, AxisName::none()}, mesh);
  }
  auto bs = [&](std::optional<IntTensor> const& t) -> std::optional<PartitionSpec> {
    if (!t) return std::nullopt;
    return corrected_spec(t->shape(), {f.batch_axis_name, seq}, mesh);
  };
  s.q_segment_ids = bs(f.q_segment_ids);
  s.kv_segment_ids = bs(f.kv_segment_ids);
  s.q_positions = bs(f.q_positions);
  s.kv_positions = bs(f.kv_positions);
  return s;
}

/// get_empty_sharding (upstream's staticmethod): every field None.
[[nodiscard]] inline MaskSharding get_empty_sharding() { return {}; }

}  // namespace piecrust::maskinfo
