#pragma once
// piecrust's HIP backend: the CUDA backend's space, memory, copies and kernels, compiled by hipcc
// (piecrust::Cuda is then a HIP device + stream). Everything of piecrust/backends/cuda.hpp; gemm is the
// direct kernel (Debian's HIP 5.2 toolchain ships no hipBLAS) and attention uses the decode kernel only.

#include "piecrust/backends/cuda/add_bias.hpp"
#include "piecrust/backends/cuda/append_kv.hpp"
#include "piecrust/backends/cuda/attention/paged_attention.hpp"
#include "piecrust/backends/cuda/copy.hpp"
#include "piecrust/backends/cuda/embedding.hpp"
#include "piecrust/backends/cuda/gemm.hpp"
#include "piecrust/backends/cuda/memory.hpp"
#include "piecrust/backends/cuda/probe.hpp"
#include "piecrust/backends/cuda/rms_norm.hpp"
#include "piecrust/backends/cuda/qkv_rope_append.hpp"
#include "piecrust/backends/cuda/rope.hpp"
#include "piecrust/backends/cuda/sample.hpp"
#include "piecrust/backends/cuda/scratch.hpp"
#include "piecrust/backends/cuda/space.hpp"
#include "piecrust/backends/cuda/geglu.hpp"
#include "piecrust/backends/cuda/swiglu.hpp"
#include "piecrust/backends/hip/runtime.hpp"
