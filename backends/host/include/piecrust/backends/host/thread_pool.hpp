#pragma once
// ThreadPool: the fixed set of worker threads that every host kernel runs on.
//
// Why a pool of std::threads and not OpenMP: piecrust is header-only, so OpenMP would force -fopenmp on
// every consumer and make the thread count a process-global setting; a pool is plain C++ (Threads is
// already a dependency), one per Host space, with a size the program chooses and deterministic static
// partitioning of work.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "piecrust/core/error.hpp"

namespace piecrust::host {

class ThreadPool {
 public:
  /// `num_threads` counts the calling thread: a pool of n starts n - 1 workers. 0 means one per
  /// hardware thread.
  explicit ThreadPool(std::size_t num_threads = 0) {
    if (num_threads == 0) num_threads = std::max(1u, std::thread::hardware_concurrency());
    workers_.reserve(num_threads - 1);
    for (std::size_t i = 0; i + 1 < num_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  ThreadPool(ThreadPool const&) = delete;
  ThreadPool& operator=(ThreadPool const&) = delete;
  ~ThreadPool() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  /// Threads that run a parallel_for, the caller included.
  [[nodiscard]] std::size_t size() const noexcept { return workers_.size() + 1; }

  /// Calls f(begin, end) over disjoint chunks covering [0, n), in parallel, and returns when all are
  /// done. Chunks hold at least `grain` indices. A call from inside a running parallel_for (nested) runs
  /// serially on the calling thread. The first exception thrown by f is rethrown here.
  template <class F>
  void parallel_for(std::size_t n, F&& f, std::size_t grain = 1) {
    if (n == 0) return;
    grain = std::max<std::size_t>(grain, 1);
    std::size_t const max_chunks = (n + grain - 1) / grain;
    if (workers_.empty() || inside_pool() || max_chunks == 1) {
      f(std::size_t{0}, n);
      return;
    }
    // Four chunks per thread balance uneven work (ragged attention rows) without much overhead.
    std::size_t const chunks = std::min(max_chunks, size() * 4);
    std::size_t const chunk = (n + chunks - 1) / chunks;
    std::unique_lock submit(submit_mutex_);
    Job job;
    job.n = n;
    job.chunk = chunk;
    job.num_chunks = (n + chunk - 1) / chunk;
    job.context = &f;
    job.call = [](void* ctx, std::size_t b, std::size_t e) { (*static_cast<std::remove_reference_t<F>*>(ctx))(b, e); };
    {
      std::lock_guard lock(mutex_);
      job_ = &job;
      ++generation_;
    }
    wake_.notify_all();
    run_chunks(job);
    {
      std::unique_lock lock(mutex_);
      done_.wait(lock, [&] { return job.active_workers == 0 && job.finished_chunks.load() == job.num_chunks; });
      job_ = nullptr;
    }
    if (job.error) std::rethrow_exception(job.error);
  }

 private:
  struct Job {
    std::size_t n = 0;
    std::size_t chunk = 0;
    std::size_t num_chunks = 0;
    void* context = nullptr;
    void (*call)(void*, std::size_t, std::size_t) = nullptr;
    std::atomic<std::size_t> next_chunk{0};
    std::atomic<std::size_t> finished_chunks{0};
    std::size_t active_workers = 0;  // guarded by mutex_
    std::exception_ptr error;        // guarded by error_mutex
    std::mutex error_mutex;
  };

  static bool& inside_pool() noexcept {
    thread_local bool inside = false;
    return inside;
  }

  static void run_chunks(Job& job) {
    bool& inside = inside_pool();
    bool const was_inside = inside;
    inside = true;
    for (;;) {
      std::size_t const c = job.next_chunk.fetch_add(1);
      if (c >= job.num_chunks) break;
      std::size_t const b = c * job.chunk;
      std::size_t const e = std::min(job.n, b + job.chunk);
      try {
        job.call(job.context, b, e);
      } catch (...) {
        std::lock_guard lock(job.error_mutex);
        if (!job.error) job.error = std::current_exception();
      }
      job.finished_chunks.fetch_add(1);
    }
    inside = was_inside;
  }

  void worker_loop() {
    std::size_t seen = 0;
    for (;;) {
      Job* job = nullptr;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || (generation_ != seen && job_ != nullptr); });
        if (stop_) return;
        seen = generation_;
        job = job_;
        ++job->active_workers;
      }
      run_chunks(*job);
      {
        std::lock_guard lock(mutex_);
        --job->active_workers;
      }
      done_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex submit_mutex_;  // one parallel_for at a time per pool
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  Job* job_ = nullptr;  // guarded by mutex_
  std::size_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace piecrust::host
