#pragma once
// SqliteStore: a Store in an SQLite database file, so exported KV pages survive a process restart.
// Schema: one table `piecrust_store(key TEXT PRIMARY KEY, value BLOB NOT NULL)`. Writes are atomic.

#include <piecrust/core/error.hpp>
#include <piecrust/runtime/store.hpp>

#include <sqlite3.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace piecrust {

class SqliteStore final : public Store {
 public:
  /// Opens (creating if needed) the database at `path`. Throws piecrust::Error naming the path on failure.
  explicit SqliteStore(std::string const& path) {
    sqlite3* db = nullptr;
    int const rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    db_.reset(db);
    if (rc != SQLITE_OK) detail::fail<Error>("SqliteStore: cannot open \"", path, "\": ", sqlite3_errstr(rc));
    exec("CREATE TABLE IF NOT EXISTS piecrust_store (key TEXT PRIMARY KEY, value BLOB NOT NULL)");
  }

  void set(std::string const& key, std::vector<std::uint8_t> const& value) override {
    Statement st(db_.get(), "INSERT OR REPLACE INTO piecrust_store (key, value) VALUES (?1, ?2)");
    sqlite3_bind_text(st.get(), 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    sqlite3_bind_blob64(st.get(), 2, value.data(), value.size(), SQLITE_TRANSIENT);
    st.done("set");
  }

  [[nodiscard]] std::optional<std::vector<std::uint8_t>> get(std::string const& key) const override {
    Statement st(db_.get(), "SELECT value FROM piecrust_store WHERE key = ?1");
    sqlite3_bind_text(st.get(), 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    if (!st.row("get")) return std::nullopt;
    auto const* p = static_cast<std::uint8_t const*>(sqlite3_column_blob(st.get(), 0));
    auto const n = static_cast<std::size_t>(sqlite3_column_bytes(st.get(), 0));
    return std::vector<std::uint8_t>(p, p + n);
  }

  bool erase(std::string const& key) override {
    Statement st(db_.get(), "DELETE FROM piecrust_store WHERE key = ?1");
    sqlite3_bind_text(st.get(), 1, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
    st.done("erase");
    return sqlite3_changes(db_.get()) > 0;
  }

  [[nodiscard]] std::vector<std::string> list(std::string const& prefix = {}) const override {
    Statement st(db_.get(), "SELECT key FROM piecrust_store WHERE substr(key, 1, ?2) = ?1 ORDER BY key");
    sqlite3_bind_text(st.get(), 1, prefix.data(), static_cast<int>(prefix.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(st.get(), 2, static_cast<sqlite3_int64>(prefix.size()));
    std::vector<std::string> keys;
    while (st.row("list")) {
      auto const* t = reinterpret_cast<char const*>(sqlite3_column_text(st.get(), 0));
      keys.emplace_back(t, static_cast<std::size_t>(sqlite3_column_bytes(st.get(), 0)));
    }
    return keys;
  }

 private:
  struct CloseDb {
    void operator()(sqlite3* db) const { sqlite3_close(db); }
  };

  class Statement {
   public:
    Statement(sqlite3* db, char const* sql) : db_(db) {
      if (sqlite3_prepare_v2(db, sql, -1, &st_, nullptr) != SQLITE_OK) {
        detail::fail<Error>("SqliteStore: cannot prepare \"", sql, "\": ", sqlite3_errmsg(db));
      }
    }
    ~Statement() { sqlite3_finalize(st_); }
    Statement(Statement const&) = delete;
    Statement& operator=(Statement const&) = delete;
    [[nodiscard]] sqlite3_stmt* get() const { return st_; }
    void done(char const* what) {
      if (sqlite3_step(st_) != SQLITE_DONE) detail::fail<Error>("SqliteStore::", what, ": ", sqlite3_errmsg(db_));
    }
    bool row(char const* what) {
      int const rc = sqlite3_step(st_);
      if (rc == SQLITE_ROW) return true;
      if (rc != SQLITE_DONE) detail::fail<Error>("SqliteStore::", what, ": ", sqlite3_errmsg(db_));
      return false;
    }

   private:
    sqlite3* db_;
    sqlite3_stmt* st_ = nullptr;
  };

  void exec(char const* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string const msg = err ? err : "unknown error";
      sqlite3_free(err);
      detail::fail<Error>("SqliteStore: ", msg);
    }
  }

  std::unique_ptr<sqlite3, CloseDb> db_;
};

}  // namespace piecrust
