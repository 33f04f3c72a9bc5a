#pragma once
// piecrust's CUDA backend: the Cuda execution space, CudaMemory, copies, and its implementation of every
// kernel the model and runtime call, attention included (piecrust/backends/cuda/attention/). The kernels
// are compiled only in a translation unit that nvcc (or hipcc, through piecrust/backends/hip.hpp) compiles;
// in a plain C++ translation unit this header provides the space, the memory space and the copy helpers.

#include "piecrust/backends/cuda/add_bias.hpp"
#include "piecrust/backends/cuda/append_kv.hpp"
#include "piecrust/backends/cuda/attention/merge_states.hpp"
#include "piecrust/backends/cuda/attention/paged_attention.hpp"
#include "piecrust/backends/cuda/copy.hpp"
#include "piecrust/backends/cuda/embedding.hpp"
#include "piecrust/backends/cuda/gemm.hpp"
#include "piecrust/backends/cuda/memory.hpp"
#include "piecrust/backends/cuda/probe.hpp"
#include "piecrust/backends/cuda/rms_norm.hpp"
#include "piecrust/backends/cuda/qkv_rope_append.hpp"
#include "piecrust/backends/cuda/rope.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/sample.hpp"
#include "piecrust/backends/cuda/scratch.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/backends/cuda/geglu.hpp"
#include "piecrust/backends/cuda/swiglu.hpp"
