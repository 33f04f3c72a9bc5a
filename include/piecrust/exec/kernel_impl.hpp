#pragma once
// The kernel dispatch point: KernelImpl<Op, Space>, declared here and never defined.

#include "piecrust/exec/execution_space.hpp"

namespace piecrust {

/// Each backend specializes KernelImpl<Op, Space> for its space with a static `run(space, args...)`.
/// Op is an empty tag type from piecrust/kernels/ (ops::RmsNorm, ops::PagedAttention, ...). The
/// primary template is declared and never defined: users call the non-member functions
/// (piecrust::rms_norm(space, ...)), which check HasKernel first so that a space without the op fails
/// to compile with a message naming the op.
template <class Op, class Space>
struct KernelImpl;

/// Whether Space has an implementation of Op (a complete KernelImpl specialization is visible).
template <class Op, class Space>
concept HasKernel = ExecutionSpace<Space> && requires { sizeof(KernelImpl<Op, Space>); };

}  // namespace piecrust
