#pragma once
// SqliteStore: a Store in an SQLite database file, so exported KV pages survive a process restart.
// Schema: one table `piecrust_store(key TEXT PRIMARY KEY, value BLOB NOT NULL)`. Writes are atomic.
//
// The file is untrusted input like any store (anyone who can write it can forge entries; see kv_trust.hpp):
// SQLite checks its own format, and failures are typed: FormatError for a file that is not, or is no longer, a
// valid database; InvalidArgument for a path that cannot be opened; LimitExceeded for a key or value larger
// than SQLite holds; InvalidState for the rest (busy, locked, read-only, I/O, disk full).

#include <piecrust/core/error.hpp>
#include <piecrust/runtime/store.hpp>

#include <sqlite3.h>

#include <climits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace piecrust {

namespace detail {

/// Throws the typed error for SQLite result code `rc` (see the header comment).
[[noreturn]] inline void sqlite_fail(int rc, std::string const& what) {
  switch (rc & 0xff) {  // the primary code
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: fail<FormatError>(what);
    case SQLITE_CANTOPEN: fail<InvalidArgument>(what);
    case SQLITE_TOOBIG: fail<LimitExceeded>(what);
    default: fail<InvalidState>(what);
  }
}

}  // namespace detail

class SqliteStore final : public Store {
 public:
  /// Opens (creating if needed) the database at `path`. Throws (typed, naming the path) when it cannot be
  /// opened or is not a database.
  explicit SqliteStore(std::string const& path) : path_(path) {
    sqlite3* db = nullptr;
    int const rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    db_.reset(db);
    if (rc != SQLITE_OK) detail::sqlite_fail(rc, detail::message("SqliteStore: cannot open \"", path, "\": ", sqlite3_errstr(rc)));
    exec("CREATE TABLE IF NOT EXISTS piecrust_store (key TEXT PRIMARY KEY, value BLOB NOT NULL)");
  }

  void set(std::string const& key, std::vector<std::uint8_t> const& value) override {
    Statement st(*this, "INSERT OR REPLACE INTO piecrust_store (key, value) VALUES (?1, ?2)");
    st.bind_key(1, key, "set");
    int const rc = sqlite3_bind_blob64(st.get(), 2, value.data(), value.size(), SQLITE_TRANSIENT);
    if (rc != SQLITE_OK) {
      detail::sqlite_fail(rc, detail::message("SqliteStore::set: value of ", value.size(), " bytes for key \"", key,
                                              "\": ", sqlite3_errstr(rc)));
    }
    st.done("set");
  }

  [[nodiscard]] std::optional<std::vector<std::uint8_t>> get(std::string const& key) const override {
    Statement st(*this, "SELECT value FROM piecrust_store WHERE key = ?1");
    st.bind_key(1, key, "get");
    if (!st.row("get")) return std::nullopt;
    auto const* p = static_cast<std::uint8_t const*>(sqlite3_column_blob(st.get(), 0));
    auto const n = static_cast<std::size_t>(sqlite3_column_bytes(st.get(), 0));
    if (p == nullptr) return std::vector<std::uint8_t>{};  // an empty (or NULL, in a forged file) value
    return std::vector<std::uint8_t>(p, p + n);
  }

  bool erase(std::string const& key) override {
    Statement st(*this, "DELETE FROM piecrust_store WHERE key = ?1");
    st.bind_key(1, key, "erase");
    st.done("erase");
    return sqlite3_changes(db_.get()) > 0;
  }

  [[nodiscard]] std::vector<std::string> list(std::string const& prefix = {}) const override {
    Statement st(*this, "SELECT key FROM piecrust_store WHERE substr(key, 1, ?2) = ?1 ORDER BY key");
    st.bind_key(1, prefix, "list");
    sqlite3_bind_int64(st.get(), 2, static_cast<sqlite3_int64>(prefix.size()));
    std::vector<std::string> keys;
    while (st.row("list")) {
      auto const* t = reinterpret_cast<char const*>(sqlite3_column_text(st.get(), 0));
      if (t == nullptr) continue;  // a NULL key, only in a forged file
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
    Statement(SqliteStore const& store, char const* sql) : db_(store.db_.get()), path_(&store.path_) {
      if (int const rc = sqlite3_prepare_v2(db_, sql, -1, &st_, nullptr); rc != SQLITE_OK) {
        detail::sqlite_fail(rc, detail::message("SqliteStore \"", *path_, "\": cannot prepare \"", sql, "\": ",
                                                sqlite3_errmsg(db_)));
      }
    }
    ~Statement() { sqlite3_finalize(st_); }
    Statement(Statement const&) = delete;
    Statement& operator=(Statement const&) = delete;
    [[nodiscard]] sqlite3_stmt* get() const { return st_; }
    void bind_key(int index, std::string const& key, char const* what) {
      if (key.size() > static_cast<std::size_t>(INT_MAX)) {
        detail::fail<LimitExceeded>("SqliteStore::", what, ": key of ", key.size(), " bytes exceeds ", INT_MAX);
      }
      if (int const rc = sqlite3_bind_text(st_, index, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
          rc != SQLITE_OK) {
        detail::sqlite_fail(rc, detail::message("SqliteStore::", what, ": key of ", key.size(), " bytes: ",
                                                sqlite3_errstr(rc)));
      }
    }
    void done(char const* what) {
      if (int const rc = sqlite3_step(st_); rc != SQLITE_DONE) fail(rc, what);
    }
    bool row(char const* what) {
      int const rc = sqlite3_step(st_);
      if (rc == SQLITE_ROW) return true;
      if (rc != SQLITE_DONE) fail(rc, what);
      return false;
    }

   private:
    [[noreturn]] void fail(int rc, char const* what) const {
      detail::sqlite_fail(rc, detail::message("SqliteStore::", what, " on \"", *path_, "\": ", sqlite3_errmsg(db_)));
    }

    sqlite3* db_;
    std::string const* path_;
    sqlite3_stmt* st_ = nullptr;
  };

  void exec(char const* sql) {
    char* err = nullptr;
    if (int const rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, &err); rc != SQLITE_OK) {
      std::string const msg = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      detail::sqlite_fail(rc, detail::message("SqliteStore \"", path_, "\": ", msg));
    }
  }

  std::string path_;
  std::unique_ptr<sqlite3, CloseDb> db_;
};

}  // namespace piecrust
