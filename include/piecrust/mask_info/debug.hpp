#pragma once
// ejKernel's MaskInfo debug trace: off unless the environment variable EJKERNEL_MASK_DEBUG is "1" when
// first consulted, or set_debug_mode(true) is called. Traced calls print
// "[MaskInfo Debug] Calling <Type>.<function>()" to standard output, as upstream's @_debug_trace does
// ("type.from_segments()" for factories, "MaskInfo.apply_causal()" for methods, "ArrayImpl.<fn>()" for
// module functions).

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <iostream>

namespace piecrust::maskinfo {

namespace detail {
inline std::atomic<bool>& debug_flag() {
  static std::atomic<bool> flag{[] {
    char const* v = std::getenv("EJKERNEL_MASK_DEBUG");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }()};
  return flag;
}

inline void trace(char const* type_name, char const* fn) {
  if (debug_flag().load(std::memory_order_relaxed)) {
    std::cout << "[MaskInfo Debug] Calling " << type_name << '.' << fn << "()\n";
  }
}

inline void trace_property(char const* name) {
  if (debug_flag().load(std::memory_order_relaxed)) std::cout << "[MaskInfo Debug] Property access: " << name << '\n';
}
}  // namespace detail

/// Turns the trace on or off and says so, like upstream's set_debug_mode.
inline void set_debug_mode(bool enabled) {
  detail::debug_flag().store(enabled);
  std::cout << "[MaskInfo Debug] Debug mode " << (enabled ? "enabled" : "disabled") << '\n';
}

[[nodiscard]] inline bool get_debug_mode() { return detail::debug_flag().load(); }

}  // namespace piecrust::maskinfo
