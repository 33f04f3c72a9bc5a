#pragma once
// Cuda: piecrust's CUDA execution space (HIP too: hipcc compiles the same sources through
// backends/hip). A cheap handle: a device id, a stream, and a shared per-space scratch arena.
//
// Argument convention for every KernelImpl<Op, Cuda>:
//  * Tensor arguments (ShapedView, std::span of activations, weights, KV pages, logits, outputs) point
//    to DEVICE memory of space.device(), e.g. from Buffer<T, CudaMemory>::view(...).
//  * Small host-side metadata objects stay host objects, exactly as for the host backend: PagedBatch's
//    index spans (kv_indptr, kv_indices, kv_last_page_len, qo_indptr, positions), LogitMask and
//    AttentionMask Brle rows, SamplingParams, SampleKey, probe token-id lists. The implementation packs
//    them into the space's Scratch and uploads them in one copy per call (no cudaMalloc per call).
//  * Results that the kernel interface returns into a host container are documented per op (sample
//    writes its token ids into a span: on Cuda that span is device memory, like every other output).
//  * Every call is asynchronous on space.stream(); space.fence() waits for it.

#include <memory>
#include <utility>

#include "piecrust/backends/cuda/memory.hpp"
#include "piecrust/backends/cuda/runtime.hpp"
#include "piecrust/backends/cuda/scratch.hpp"
#include "piecrust/core/error.hpp"
#include "piecrust/exec/execution_space.hpp"

namespace piecrust {

/// A CUDA device and a stream. `Cuda{}` uses the current device and creates a stream that it and its
/// copies own; `Cuda{device}` does the same on `device`; `Cuda{device, stream}` wraps a stream the caller
/// owns (and must keep alive). Streams created here are blocking streams, so they order against the
/// legacy default stream that `CudaMemory{}` uses. Copies share the stream and the scratch arena.
class Cuda {
 public:
  using execution_space = Cuda;
  using memory_space = CudaMemory;

  Cuda() : Cuda(gpu::current_device()) {}
  explicit Cuda(int device) : state_(make_state(device, nullptr, true)) {}
  Cuda(int device, gpu::stream_t stream) : state_(make_state(device, stream, false)) {}

  static constexpr char const* name() noexcept { return "Cuda"; }

  /// Waits until every operation queued on the stream has finished; a kernel fault surfaces here.
  void fence() const { gpu::stream_synchronize(state_->stream); }

  [[nodiscard]] int device() const noexcept { return state_->device; }
  [[nodiscard]] gpu::stream_t stream() const noexcept { return state_->stream; }
  /// A memory space that allocates on this device, ordered on this stream.
  [[nodiscard]] CudaMemory memory() const noexcept { return CudaMemory{state_->device, state_->stream}; }
  /// The per-space arena for uploaded metadata and kernel workspaces (see scratch.hpp).
  [[nodiscard]] gpu::Scratch& scratch() const noexcept { return *state_->scratch; }
  /// The arena of the step's attention plan (ops::PlanAttention): written once a step, read by every layer,
  /// so kept apart from scratch(), which each kernel call reuses.
  [[nodiscard]] gpu::Scratch& plan_scratch() const noexcept { return *state_->plan_scratch; }

 private:
  struct State {
    int device = 0;
    gpu::stream_t stream = nullptr;
    bool owns_stream = false;
    std::unique_ptr<gpu::Scratch> scratch;
    std::unique_ptr<gpu::Scratch> plan_scratch;
    State() = default;
    State(State const&) = delete;
    State& operator=(State const&) = delete;
    ~State() {
      scratch.reset();  // stream-ordered frees first, while the stream still exists
      plan_scratch.reset();
      if (owns_stream) (void)PIECRUST_GPU_API(StreamDestroy)(stream);
    }
  };

  static std::shared_ptr<State> make_state(int device, gpu::stream_t stream, bool create) {
    int const n = gpu::device_count();
    if (device < 0 || device >= n) {
      detail::fail<OutOfRange>("Cuda: device = ", device, ", expected 0 <= device < ", n);
    }
    auto state = std::make_shared<State>();
    state->device = device;
    if (create) {
      gpu::DeviceGuard guard(device);
      gpu::check(PIECRUST_GPU_API(StreamCreate)(&state->stream), "StreamCreate");
      state->owns_stream = true;
    } else {
      state->stream = stream;
    }
    state->scratch = std::make_unique<gpu::Scratch>(device, state->stream);
    state->plan_scratch = std::make_unique<gpu::Scratch>(device, state->stream, gpu::HostStaging::pinned);
    return state;
  }

  std::shared_ptr<State> state_;
};

static_assert(ExecutionSpace<Cuda>);

}  // namespace piecrust
