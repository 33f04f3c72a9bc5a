#pragma once
// The kernels layer: kernel interfaces as non-member functions over an execution space. Include a
// backend (piecrust/backends/host.hpp, ...) for implementations.

#include "piecrust/kernels/append_kv.hpp"
#include "piecrust/kernels/bfloat16.hpp"
#include "piecrust/kernels/dequantize.hpp"
#include "piecrust/kernels/embedding.hpp"
#include "piecrust/kernels/gemm.hpp"
#include "piecrust/kernels/merge_states.hpp"
#include "piecrust/kernels/paged_attention.hpp"
#include "piecrust/kernels/paged_kv.hpp"
#include "piecrust/kernels/philox.hpp"
#include "piecrust/kernels/probe.hpp"
#include "piecrust/kernels/rms_norm.hpp"
#include "piecrust/kernels/rope.hpp"
#include "piecrust/kernels/sample.hpp"
#include "piecrust/kernels/sampling_params.hpp"
#include "piecrust/kernels/swiglu.hpp"
#include "piecrust/kernels/weight_matrix.hpp"
