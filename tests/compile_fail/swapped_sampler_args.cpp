// Must not compile: Pie writes top_p(temperature, p), piecrust top_p(p, temperature); with plain numbers one
// of them would silently swap, so the samplers take typed arguments (TopP, Temperature) and no plain floats.
// With PIECRUST_COMPILE_FAIL_CONTROL defined, the typed call (in Pie's order) is used instead and the file compiles.
#include <piecrust/runtime/sampler.hpp>

piecrust::SamplerSpec pie_style_sampler() {
#ifdef PIECRUST_COMPILE_FAIL_CONTROL
  return piecrust::samplers::top_p(piecrust::Temperature{0.7f}, piecrust::TopP{0.9f});
#else
  return piecrust::samplers::top_p(0.7f, 0.9f);  // Pie's (temperature, p), untyped
#endif
}
