#pragma once
// piecrust's error hierarchy. Every bad input throws a subclass of piecrust::Error whose message names
// the argument and the offending value; the operation that threw leaves all state as it was.

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace piecrust {

/// Base of every error piecrust throws on bad input or misuse.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An argument has a value the operation does not accept (wrong length, wrong shape, malformed runs).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

/// An index, token id, position or range lies outside what is held.
class OutOfRange : public Error {
 public:
  using Error::Error;
};

/// The page pool cannot satisfy an allocation; nothing was allocated.
class OutOfPages : public Error {
 public:
  using Error::Error;
};

/// The operation is not allowed in the object's current state (commit of a non-full page, double free).
class InvalidState : public Error {
 public:
  using Error::Error;
};

/// A file or serialized blob is malformed, truncated or inconsistent.
class FormatError : public Error {
 public:
  using Error::Error;
};

/// A valid request that this build does not support (a head_dim with no kernel, a tensor type).
class Unsupported : public Error {
 public:
  using Error::Error;
};

/// An input would cost more than a documented limit allows (regex size or nesting, automaton states, metadata
/// bytes, text length); the limit's name and value are in the message.
class LimitExceeded : public Error {
 public:
  using Error::Error;
};

namespace detail {

/// Concatenates streamable values into one message: message("page_size = ", n, " must be > 0").
template <class... Args>
[[nodiscard]] std::string message(Args const&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

/// Throws E with the concatenated message.
template <class E, class... Args>
[[noreturn]] void fail(Args const&... args) {
  throw E(message(args...));
}

}  // namespace detail
}  // namespace piecrust
