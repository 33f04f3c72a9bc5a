// The one instantiation of the examples' model and engine (see host_model.hpp).
#include "common/host_model.hpp"

template class piecrust::LlamaModel<piecrust::Host>;
template class piecrust::Engine<piecrust::LlamaModel<piecrust::Host>>;
