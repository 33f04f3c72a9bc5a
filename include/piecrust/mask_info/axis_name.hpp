#pragma once
// AxisName: one of MaskInfo's mesh-axis slots (batch, q heads, kv heads, sequence), as upstream spells
// them: None, one name ("tp"), or a tuple of names (("dp", "fsdp")). The sharding functions that read
// them are in mask_info/sharding.hpp.

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace piecrust::maskinfo {

/// An axis-name slot: None, one name ("tp"), or a tuple of names (("dp", "fsdp")).
struct AxisName {
  std::vector<std::string> names;  // empty and !tuple: None
  bool tuple = false;

  AxisName() = default;
  AxisName(char const* name) : names{name} {}                              // NOLINT: implicit like Python
  AxisName(std::string name) : names{std::move(name)} {}                   // NOLINT
  AxisName(std::initializer_list<std::string> ns) : names(ns), tuple(true) {}  // a tuple of names
  static AxisName none() { return {}; }
  static AxisName of_tuple(std::vector<std::string> ns) {
    AxisName a;
    a.names = std::move(ns);
    a.tuple = true;
    return a;
  }
  [[nodiscard]] bool is_none() const { return names.empty() && !tuple; }
  friend bool operator==(AxisName const&, AxisName const&) = default;
};

}  // namespace piecrust::maskinfo
