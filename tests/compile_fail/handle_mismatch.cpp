// Must not compile: reading a probe handle as a sampled token. ForwardOutput's accessors are overloaded on the
// handle type, so a mismatched read is a compile error, not a runtime surprise.
// With PIECRUST_COMPILE_FAIL_CONTROL defined, the matching accessor is used and the file compiles.
#include <piecrust/runtime/forward.hpp>

#include <cstdint>

float read(piecrust::ForwardOutput const& out, piecrust::ProbeHandle<piecrust::Entropy> h) {
#ifdef PIECRUST_COMPILE_FAIL_CONTROL
  return out.entropy(h);
#else
  return static_cast<float>(out.token(h));
#endif
}
