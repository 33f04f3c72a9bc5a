// A space that does not implement an op must fail to compile with a message naming the op.
// Control: the same call compiles once the space specializes KernelImpl for that op.

#include "piecrust/exec/host_memory.hpp"
#include "piecrust/kernels/rms_norm.hpp"

namespace {
struct BareSpace {
  using execution_space = BareSpace;
  using memory_space = piecrust::HostMemory;
  void fence() const {}
  static char const* name() { return "BareSpace"; }
};
}  // namespace

#ifdef PIECRUST_COMPILE_FAIL_CONTROL
template <>
struct piecrust::KernelImpl<piecrust::ops::RmsNorm, BareSpace> {
  static void run(BareSpace const&, piecrust::ShapedView<float const, 2>, piecrust::ShapedView<float const, 1>,
                  piecrust::ShapedView<float, 2>, float) {}
};
#endif

void use_bare_space(float* x, float const* w) {
  piecrust::rms_norm(BareSpace{}, piecrust::ShapedView<float const, 2>(x, 1, 4), piecrust::ShapedView<float const, 1>(w, 4),
                     piecrust::ShapedView<float, 2>(x, 1, 4));
}
