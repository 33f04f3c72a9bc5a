#pragma once
// ThreadPool: the fixed set of worker threads that every host kernel runs on.
//
// Why a pool of std::threads and not OpenMP: piecrust is header-only, so OpenMP would force -fopenmp on
// every consumer and make the thread count a process-global setting; a pool is plain C++ (Threads is
// already a dependency), one per Host space, with a size the program chooses and deterministic static
// partitioning of work.
//
// Hand-off. A model step issues a few hundred short parallel_for calls (one per matmul, norm, attention
// call) separated by microseconds of serial work. Waking a sleeping worker through a condition variable
// costs a futex call and a scheduler round trip, tens of microseconds, which is the size of the work
// itself. So workers first spin on an atomic job counter for a bounded time (`spin_duration`) after each
// job, and only then sleep on the condition variable; the caller likewise spins, then yields, while the
// last chunks finish. A pool that stays idle costs one spin period per worker after its last job.
//
// Publication protocol (all atomics sequentially consistent, two Dekker-style handshakes):
//   * job lifetime: a worker increments `busy_` before it reads `job_`; the caller clears `job_` and
//     then waits for `busy_ == 0`, so no worker can touch a Job after parallel_for returns.
//   * sleeping: a worker increments `sleepers_` under `mutex_` before testing the job counter; the caller
//     bumps the job counter before reading `sleepers_`, and notifies under `mutex_` when it is non-zero,
//     so a wake-up is never lost.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace piecrust::host {

class ThreadPool {
 public:
  /// How long an idle worker polls for the next job before it sleeps.
  static constexpr std::chrono::microseconds spin_duration{200};

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
      stop_.store(true);
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
    std::lock_guard submit(submit_mutex_);
    Job job;
    job.n = n;
    job.chunk = chunk;
    job.num_chunks = (n + chunk - 1) / chunk;
    job.context = &f;
    job.call = [](void* ctx, std::size_t b, std::size_t e) { (*static_cast<std::remove_reference_t<F>*>(ctx))(b, e); };

    job_.store(&job);
    generation_.fetch_add(1);
    if (sleepers_.load() > 0) {
      { std::lock_guard lock(mutex_); }  // a worker between its predicate test and its wait holds mutex_
      wake_.notify_all();
    }
    run_chunks(job);
    wait_until([&] { return job.finished_chunks.load() == job.num_chunks; });
    job_.store(nullptr);
    wait_until([&] { return busy_.load() == 0; });
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
    std::exception_ptr error;  // guarded by error_mutex
    std::mutex error_mutex;
  };

  static bool& inside_pool() noexcept {
    thread_local bool inside = false;
    return inside;
  }

  static void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  /// Polls `done` for up to spin_duration; true as soon as it holds, false when the time is up.
  template <class Pred>
  static bool spin_until(Pred done) {
    auto const start = std::chrono::steady_clock::now();
    for (unsigned i = 1; !done(); ++i) {
      cpu_relax();
      if (i % 64 == 0 && std::chrono::steady_clock::now() - start > spin_duration) return false;
    }
    return true;
  }

  /// Spins on `done` for spin_duration, then yields the core between tests.
  template <class Pred>
  static void wait_until(Pred done) {
    if (spin_until(done)) return;
    while (!done()) std::this_thread::yield();
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

  /// Waits until the job counter moves past `seen` or the pool is stopping (spinning first, then
  /// sleeping) and returns the counter's value then.
  std::uint64_t await_generation(std::uint64_t seen) {
    if (spin_until([&] { return generation_.load() != seen || stop_.load(); })) return generation_.load();
    std::unique_lock lock(mutex_);
    sleepers_.fetch_add(1);
    wake_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
    sleepers_.fetch_sub(1);
    return generation_.load();
  }

  void worker_loop() {
    std::uint64_t seen = 0;
    for (;;) {
      seen = await_generation(seen);
      if (stop_.load()) return;
      busy_.fetch_add(1);
      if (Job* job = job_.load()) run_chunks(*job);
      busy_.fetch_sub(1);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex submit_mutex_;                  // one parallel_for at a time per pool
  std::atomic<Job*> job_{nullptr};           // the running job, null between jobs
  std::atomic<std::uint64_t> generation_{0}; // bumped once per job
  std::atomic<std::size_t> busy_{0};         // workers that may be reading job_
  std::atomic<std::size_t> sleepers_{0};     // workers inside (or entering) wake_.wait
  std::atomic<bool> stop_{false};
  std::mutex mutex_;  // pairs with wake_
  std::condition_variable wake_;
};

}  // namespace piecrust::host
