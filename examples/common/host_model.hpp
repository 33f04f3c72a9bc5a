#pragma once
// The examples' model and engine types. Every example program compiles the model's forward pass and the engine
// for these types; with PIECRUST_EXAMPLES_EXTERN_MODEL (set by examples/CMakeLists.txt) they are instantiated
// once, in host_model.cpp, instead of once per program, which keeps the examples' build short.

#include <piecrust/backends/host.hpp>
#include <piecrust/model.hpp>
#include <piecrust/runtime.hpp>

namespace piecrust::examples {
using Llama = LlamaModel<Host>;
}  // namespace piecrust::examples

#ifdef PIECRUST_EXAMPLES_EXTERN_MODEL
extern template class piecrust::LlamaModel<piecrust::Host>;
extern template class piecrust::Engine<piecrust::LlamaModel<piecrust::Host>>;
#endif
