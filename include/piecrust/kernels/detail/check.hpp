#pragma once
// Argument checks shared by every kernel interface: they run before dispatch, so a kernel either
// rejects its input with a typed error naming the argument and value, or runs; never half of it.

#include <cstddef>
#include <string_view>

#include "piecrust/core/error.hpp"

namespace piecrust::detail {

/// Throws InvalidArgument "<op>: <what> = <got>, expected <expected>" unless got == expected.
inline void check_extent(std::string_view op, std::string_view what, std::size_t got, std::size_t expected) {
  if (got != expected) {
    fail<InvalidArgument>(op, ": ", what, " = ", got, ", expected ", expected);
  }
}

/// Throws InvalidArgument unless got >= minimum.
inline void check_at_least(std::string_view op, std::string_view what, std::size_t got, std::size_t minimum) {
  if (got < minimum) {
    fail<InvalidArgument>(op, ": ", what, " = ", got, ", expected at least ", minimum);
  }
}

/// Throws InvalidArgument unless ptr is non-null (for a non-empty argument).
inline void check_data(std::string_view op, std::string_view what, void const* ptr, std::size_t size) {
  if (ptr == nullptr && size != 0) {
    fail<InvalidArgument>(op, ": ", what, " has ", size, " elements but a null data pointer");
  }
}

}  // namespace piecrust::detail
