#pragma once
// Store: a key-value store for exported KV pages and program state (Pie's store_set / get / delete / list).
// MemoryStore lives as long as the process; SqliteStore (sqlite_store.hpp) persists across restarts.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace piecrust {

class Store {
 public:
  virtual ~Store() = default;
  virtual void set(std::string const& key, std::vector<std::uint8_t> const& value) = 0;
  [[nodiscard]] virtual std::optional<std::vector<std::uint8_t>> get(std::string const& key) const = 0;
  /// Removes `key`; returns whether it existed.
  virtual bool erase(std::string const& key) = 0;
  /// Keys starting with `prefix`, sorted.
  [[nodiscard]] virtual std::vector<std::string> list(std::string const& prefix = {}) const = 0;

  // Pie's names.
  void store_set(std::string const& key, std::vector<std::uint8_t> const& value) { set(key, value); }
  [[nodiscard]] std::optional<std::vector<std::uint8_t>> store_get(std::string const& key) const { return get(key); }
  bool store_delete(std::string const& key) { return erase(key); }
  [[nodiscard]] std::vector<std::string> store_list(std::string const& prefix = {}) const { return list(prefix); }
};

class MemoryStore final : public Store {
 public:
  void set(std::string const& key, std::vector<std::uint8_t> const& value) override { entries_[key] = value; }
  [[nodiscard]] std::optional<std::vector<std::uint8_t>> get(std::string const& key) const override {
    auto const it = entries_.find(key);
    if (it == entries_.end()) return std::nullopt;
    return it->second;
  }
  bool erase(std::string const& key) override { return entries_.erase(key) > 0; }
  [[nodiscard]] std::vector<std::string> list(std::string const& prefix = {}) const override {
    std::vector<std::string> keys;
    for (auto it = entries_.lower_bound(prefix); it != entries_.end() && it->first.starts_with(prefix); ++it) {
      keys.push_back(it->first);
    }
    return keys;
  }

 private:
  std::map<std::string, std::vector<std::uint8_t>> entries_;
};

}  // namespace piecrust
