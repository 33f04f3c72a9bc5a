#pragma once
// HIP entry point: the CUDA backend's sources, compiled by hipcc. The shared dialect header selects HIP's
// names when __HIPCC__ is defined; this header exists so HIP users include a HIP path.
#include <piecrust/backends/cuda/runtime.hpp>
