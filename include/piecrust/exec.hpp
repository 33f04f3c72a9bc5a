#pragma once
// The exec layer: execution and memory spaces, buffers, shaped views, the kernel dispatch point.

#include "piecrust/exec/buffer.hpp"
#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/host_memory.hpp"
#include "piecrust/exec/kernel_impl.hpp"
#include "piecrust/exec/memory_space.hpp"
#include "piecrust/exec/shaped_view.hpp"
