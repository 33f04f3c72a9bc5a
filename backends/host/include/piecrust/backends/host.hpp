#pragma once
// piecrust's host backend: the Host execution space and its implementation of every kernel.

#include "piecrust/backends/host/append_kv.hpp"
#include "piecrust/backends/host/dequantize.hpp"
#include "piecrust/backends/host/embedding.hpp"
#include "piecrust/backends/host/gemm.hpp"
#include "piecrust/backends/host/host_space.hpp"
#include "piecrust/backends/host/merge_states.hpp"
#include "piecrust/backends/host/paged_attention.hpp"
#include "piecrust/backends/host/probe.hpp"
#include "piecrust/backends/host/rms_norm.hpp"
#include "piecrust/backends/host/rope.hpp"
#include "piecrust/backends/host/sample.hpp"
#include "piecrust/backends/host/swiglu.hpp"
#include "piecrust/backends/host/thread_pool.hpp"
