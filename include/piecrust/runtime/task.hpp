#pragma once
// Task<T>: the coroutine type of piecrust programs (Pie's inferlets, as C++20 coroutines).
//
// A Task is lazy: it starts when it is awaited or when an Engine spawns it. `co_await other_task` runs the
// other task to its end (symmetric transfer: no stack growth in optimized builds) and yields its value or rethrows its exception.
// A program suspends at `co_await fwd.execute()`; the engine resumes it once the batched step that carried
// its pass is done. Tasks are move-only and own their coroutine frame.

#include <piecrust/core/error.hpp>

#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace piecrust {

template <class T = void>
class Task;

namespace detail {

struct TaskPromiseBase {
  std::coroutine_handle<> continuation = std::noop_coroutine();
  std::exception_ptr error;

  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> h) const noexcept {
      return h.promise().continuation;  // resume whoever awaited us (a no-op for a spawned root task)
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() const noexcept { return {}; }
  FinalAwaiter final_suspend() const noexcept { return {}; }
  void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <class T>
struct TaskPromise : TaskPromiseBase {
  std::optional<T> value;
  Task<T> get_return_object() noexcept;
  template <class U>
    requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
  T take() {
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }
};

template <>
struct TaskPromise<void> : TaskPromiseBase {
  Task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void take() const {
    if (error) std::rethrow_exception(error);
  }
};

}  // namespace detail

template <class T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::TaskPromise<T>;
  using handle_type = std::coroutine_handle<promise_type>;
  using value_type = T;

  Task() = default;
  explicit Task(handle_type h) noexcept : handle_(h) {}
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Task(Task const&) = delete;
  Task& operator=(Task const&) = delete;
  ~Task() { destroy(); }

  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(handle_); }
  [[nodiscard]] bool done() const noexcept { return !handle_ || handle_.done(); }

  /// Runs the coroutine until its next suspension point (used by the engine for a root task).
  void resume() const { handle_.resume(); }

  /// The result of a finished task: its value, or its exception rethrown.
  decltype(auto) result() { return handle_.promise().take(); }

  /// The raw handle (the engine keeps it to resume the program).
  [[nodiscard]] handle_type handle() const noexcept { return handle_; }

  // Awaiting a task starts it and resumes the awaiter when it finishes.
  auto operator co_await() && noexcept {
    struct Awaiter {
      handle_type h;
      bool await_ready() const noexcept { return !h || h.done(); }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
        h.promise().continuation = awaiting;
        return h;
      }
      decltype(auto) await_resume() { return h.promise().take(); }
    };
    return Awaiter{handle_};
  }

 private:
  void destroy() noexcept {
    if (handle_) handle_.destroy();
    handle_ = {};
  }
  handle_type handle_;
};

namespace detail {
template <class T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<TaskPromise<T>>::from_promise(*this));
}
inline Task<void> TaskPromise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<TaskPromise<void>>::from_promise(*this));
}
}  // namespace detail

/// Runs a task that never suspends on an engine (pure computation) to completion on this thread and returns its
/// result. Throws InvalidState if the task suspends waiting for an engine step (spawn it on an Engine).
template <class T>
T run_detached(Task<T> task) {
  task.resume();
  if (!task.done()) detail::fail<InvalidState>("run_detached: the task suspended; spawn it on an Engine instead");
  return task.result();
}

}  // namespace piecrust
