#pragma once
// Host: piecrust's CPU execution space. Kernels run on a thread pool and are complete when they return.

#include <cstddef>
#include <memory>
#include <utility>

#include "piecrust/backends/host/thread_pool.hpp"
#include "piecrust/exec/execution_space.hpp"
#include "piecrust/exec/host_memory.hpp"

namespace piecrust {

/// The host execution space: a cheap handle to a ThreadPool. `Host{}` shares one process-wide pool
/// with one thread per hardware thread (created on first use); `Host{n}` owns a pool of n threads
/// (n = 1: everything on the calling thread).
class Host {
 public:
  using execution_space = Host;
  using memory_space = HostMemory;

  Host() : pool_(default_pool()) {}
  explicit Host(std::size_t num_threads) : pool_(std::make_shared<host::ThreadPool>(num_threads)) {}

  static constexpr char const* name() noexcept { return "Host"; }
  /// Host kernels finish before they return; nothing to wait for.
  void fence() const noexcept {}

  [[nodiscard]] std::size_t concurrency() const noexcept { return pool_->size(); }
  [[nodiscard]] host::ThreadPool& pool() const noexcept { return *pool_; }

  /// pool().parallel_for(n, f, grain): f(begin, end) over chunks of [0, n).
  template <class F>
  void parallel_for(std::size_t n, F&& f, std::size_t grain = 1) const {
    pool_->parallel_for(n, std::forward<F>(f), grain);
  }

 private:
  static std::shared_ptr<host::ThreadPool> const& default_pool() {
    static std::shared_ptr<host::ThreadPool> const pool = std::make_shared<host::ThreadPool>();
    return pool;
  }
  std::shared_ptr<host::ThreadPool> pool_;
};

static_assert(ExecutionSpace<Host>);

}  // namespace piecrust
