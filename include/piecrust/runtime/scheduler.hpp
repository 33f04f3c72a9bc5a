#pragma once
// Scheduler: the engine's program loop. Programs are Task coroutines; a program that awaits a forward pass
// suspends with its pass queued here, and the loop runs every ready program until all of them wait on passes,
// then hands the queued passes to the step function as one batch. Single-threaded and deterministic: passes
// are stepped, and their programs resumed, in the order they were submitted.

#include <piecrust/core/error.hpp>
#include <piecrust/runtime/forward.hpp>
#include <piecrust/runtime/task.hpp>

#include <coroutine>
#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace piecrust::detail {

class Scheduler {
 public:
  Scheduler() = default;
  Scheduler(Scheduler const&) = delete;
  Scheduler& operator=(Scheduler const&) = delete;
  ~Scheduler() { clear(); }

  /// Adds a program; it starts at the next run().
  void spawn(Task<void> program) {
    ready_.push_back(program.handle());
    roots_.push_back(std::move(program));
  }

  /// Queues a pass of a suspended program.
  void enqueue(PassRequest* pass) { pending_.push_back(pass); }

  /// Marks a pass answered: its program resumes in the next round.
  void finish(PassRequest* pass) { ready_.push_back(pass->waiter); }

  /// Runs every spawned program to completion; step(std::vector<PassRequest*>) answers each batch of passes
  /// (finish() on every one). Rethrows the first exception a program ended with; throws InvalidState if a
  /// program waits on something that never comes.
  template <class Step>
  void run(Step&& step) {
    for (;;) {
      while (!ready_.empty()) {
        auto const h = ready_.front();
        ready_.pop_front();
        h.resume();
      }
      if (pending_.empty()) break;
      std::vector<PassRequest*> batch = std::move(pending_);
      pending_.clear();
      step(std::move(batch));
    }
    std::vector<Task<void>> roots = std::move(roots_);
    roots_.clear();
    children_.clear();
    for (auto& r : roots) {
      if (!r.done()) fail<InvalidState>("Engine::run: a program is suspended on something other than a pass");
    }
    for (auto& r : roots) r.result();  // rethrows the first failure
  }

  /// `program` as a spawnable task that stores its result in `out` (block_on).
  template <class T, class R>
  static Task<void> capture(Task<T> task, std::optional<R>& out) {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(task);
      out.emplace(0);
    } else {
      out.emplace(co_await std::move(task));
    }
  }

  /// Runs tasks concurrently inside a program: their passes share steps. Results in input order; the first
  /// exception is rethrown after all have finished.
  template <class T>
  Task<std::vector<T>> when_all(std::vector<Task<T>> tasks) {
    auto join = std::make_shared<Join<T>>(tasks.size());
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      Task<void> child = run_child(std::move(tasks[i]), join, i);
      ready_.push_back(child.handle());
      children_.push_back(std::move(child));
    }
    co_await JoinAwaiter<T>{join.get()};
    if (join->error) std::rethrow_exception(join->error);
    std::vector<T> out;
    out.reserve(join->results.size());
    for (auto& r : join->results) out.push_back(std::move(*r));
    co_return out;
  }

  /// Destroys every program frame (they own Contexts: call before the pool they use goes away).
  void clear() {
    roots_.clear();
    children_.clear();
  }

 private:
  template <class T>
  struct Join {
    explicit Join(std::size_t n) : remaining(n), results(n) {}
    std::size_t remaining;
    std::coroutine_handle<> parent;
    std::vector<std::optional<T>> results;
    std::exception_ptr error;
  };

  template <class T>
  struct JoinAwaiter {
    Join<T>* join;
    bool await_ready() const noexcept { return join->remaining == 0; }
    void await_suspend(std::coroutine_handle<> h) const noexcept { join->parent = h; }
    void await_resume() const noexcept {}
  };

  template <class T>
  Task<void> run_child(Task<T> task, std::shared_ptr<Join<T>> join, std::size_t i) {
    try {
      join->results[i].emplace(co_await std::move(task));
    } catch (...) {
      if (!join->error) join->error = std::current_exception();
    }
    if (--join->remaining == 0 && join->parent) ready_.push_back(join->parent);
  }

  std::deque<std::coroutine_handle<>> ready_;
  std::vector<PassRequest*> pending_;
  std::vector<Task<void>> roots_;
  std::vector<Task<void>> children_;
};

}  // namespace piecrust::detail
