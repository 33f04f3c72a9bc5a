#pragma once
// The byte format of exported KV pages (Context::export_kv_pages / Context::from_imported).
//
//   "PCKVPAGE" magic, u32 version (2; version 1, without window_released_pages, is still read)
//   u32 fingerprint length, fingerprint bytes   (ModelIdentity::to_string of the model that made the K/V)
//   u32 page_size, u32 num_layers, u32 num_kv_heads, u32 head_dim, u32 element_size, u64 num_pages
//   u64 window_released_pages: leading pages whose sliding-window layers' K/V had left every window and was
//       given back (PageTable::window_floor); those layers' bytes of these pages are zeros and are never read
//   num_pages * page_size token records: u32 token, u32 position, u8 masked
//   K/V bytes: [num_pages][num_layers][2][page_size][num_kv_heads][head_dim] elements of element_size bytes
//   u64 FNV-1a checksum of everything before it
// All integers little-endian. Decoding checks every length against the blob: a truncated or altered entry
// is a FormatError, never a crash. The checksum only catches accidents (anyone can recompute it): what the
// records claim (token ids, positions, the fingerprint) is checked against the engine on import
// (kv_transfer.hpp), and the K/V bytes themselves are never trusted (kv_trust.hpp).

#include <piecrust/core/error.hpp>
#include <piecrust/core/token_meta.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace piecrust {

struct KvExportHeader {
  std::string fingerprint;
  std::uint32_t page_size = 0;
  std::uint32_t num_layers = 0;
  std::uint32_t num_kv_heads = 0;
  std::uint32_t head_dim = 0;
  std::uint32_t element_size = 0;
  std::uint64_t num_pages = 0;
  std::uint64_t window_released_pages = 0;  // <= num_pages (see the format above)

  /// Bytes of K/V of one page, all layers; nullopt when the product does not fit in 64 bits (a forged header).
  [[nodiscard]] std::optional<std::uint64_t> page_bytes() const {
    std::uint64_t n = 2;
    for (std::uint64_t const f : {std::uint64_t{page_size}, std::uint64_t{num_kv_heads}, std::uint64_t{head_dim},
                                  std::uint64_t{element_size}, std::uint64_t{num_layers}}) {
      if (f != 0 && n > UINT64_MAX / f) return std::nullopt;
      n *= f;
    }
    return n;
  }
};

struct KvExport {
  KvExportHeader header;
  std::vector<TokenMeta> tokens;   // [num_pages * page_size]
  std::vector<std::uint8_t> bytes;  // [num_pages][num_layers][layer_page_bytes]
};

namespace detail {

inline constexpr char kv_export_magic[8] = {'P', 'C', 'K', 'V', 'P', 'A', 'G', 'E'};
inline constexpr std::uint32_t kv_export_version = 2;

// FNV-1a, 64-bit. Source: Fowler, Noll, Vo (IETF draft-eastlake-fnv).
inline std::uint64_t fnv1a(std::span<std::uint8_t const> bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::uint8_t const b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

class ByteWriter {
 public:
  void raw(void const* p, std::size_t n) {
    auto const* b = static_cast<std::uint8_t const*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  template <class T>
  void le(T v) {
    for (std::size_t i = 0; i < sizeof(T); ++i) out_.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(v) >> (8 * i)));
  }
  std::vector<std::uint8_t>& bytes() { return out_; }

 private:
  std::vector<std::uint8_t> out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::span<std::uint8_t const> in) : in_(in) {}
  std::span<std::uint8_t const> take(std::size_t n, char const* what) {
    if (n > in_.size() - pos_) {
      fail<FormatError>("KV export: truncated at byte ", pos_, " reading ", what, " (", n, " bytes, ", in_.size() - pos_,
                        " left)");
    }
    auto const s = in_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  template <class T>
  T le(char const* what) {
    auto const s = take(sizeof(T), what);
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) v |= std::uint64_t{s[i]} << (8 * i);
    return static_cast<T>(v);
  }
  [[nodiscard]] std::size_t position() const { return pos_; }
  [[nodiscard]] std::size_t remaining() const { return in_.size() - pos_; }

 private:
  std::span<std::uint8_t const> in_;
  std::size_t pos_ = 0;
};

}  // namespace detail

inline std::vector<std::uint8_t> encode_kv_export(KvExport const& e) {
  KvExportHeader const& h = e.header;
  auto const per_page = h.page_bytes();
  if (!per_page || (h.num_pages > 0 && *per_page > UINT64_MAX / h.num_pages) || h.page_size == 0 ||
      h.num_pages > UINT64_MAX / h.page_size) {
    detail::fail<InvalidArgument>("encode_kv_export: the header's sizes overflow (", h.num_pages, " pages of ",
                                  h.page_size, " tokens, ", h.num_layers, " layers)");
  }
  if (e.tokens.size() != h.num_pages * h.page_size) {
    detail::fail<InvalidArgument>("encode_kv_export: ", e.tokens.size(), " token records for ", h.num_pages, " pages of ",
                                  h.page_size);
  }
  if (h.window_released_pages > h.num_pages) {
    detail::fail<InvalidArgument>("encode_kv_export: window_released_pages = ", h.window_released_pages, " > num_pages = ",
                                  h.num_pages);
  }
  if (e.bytes.size() != h.num_pages * *per_page) {
    detail::fail<InvalidArgument>("encode_kv_export: ", e.bytes.size(), " K/V bytes, expected ", h.num_pages * *per_page);
  }
  detail::ByteWriter w;
  w.raw(detail::kv_export_magic, sizeof(detail::kv_export_magic));
  w.le(detail::kv_export_version);
  w.le(static_cast<std::uint32_t>(h.fingerprint.size()));
  w.raw(h.fingerprint.data(), h.fingerprint.size());
  w.le(h.page_size);
  w.le(h.num_layers);
  w.le(h.num_kv_heads);
  w.le(h.head_dim);
  w.le(h.element_size);
  w.le(h.num_pages);
  w.le(h.window_released_pages);
  for (TokenMeta const& t : e.tokens) {
    w.le(t.token);
    w.le(t.position);
    w.le(static_cast<std::uint8_t>(t.masked ? 1 : 0));
  }
  w.raw(e.bytes.data(), e.bytes.size());
  w.le(detail::fnv1a(w.bytes()));
  return std::move(w.bytes());
}

/// Throws FormatError for a blob that is not a complete, unaltered export.
inline KvExport decode_kv_export(std::span<std::uint8_t const> blob) {
  detail::ByteReader r(blob);
  auto const magic = r.take(sizeof(detail::kv_export_magic), "magic");
  if (std::memcmp(magic.data(), detail::kv_export_magic, magic.size()) != 0) {
    detail::fail<FormatError>("KV export: bad magic (not an exported KV entry)");
  }
  auto const version = r.le<std::uint32_t>("version");
  if (version != 1 && version != detail::kv_export_version) {
    detail::fail<FormatError>("KV export: version ", version, " is not supported (expected 1 or ", detail::kv_export_version, ")");
  }
  KvExport e;
  KvExportHeader& h = e.header;
  auto const flen = r.le<std::uint32_t>("fingerprint length");
  auto const f = r.take(flen, "fingerprint");
  h.fingerprint.assign(reinterpret_cast<char const*>(f.data()), f.size());
  h.page_size = r.le<std::uint32_t>("page_size");
  h.num_layers = r.le<std::uint32_t>("num_layers");
  h.num_kv_heads = r.le<std::uint32_t>("num_kv_heads");
  h.head_dim = r.le<std::uint32_t>("head_dim");
  h.element_size = r.le<std::uint32_t>("element_size");
  h.num_pages = r.le<std::uint64_t>("num_pages");
  if (version >= 2) h.window_released_pages = r.le<std::uint64_t>("window_released_pages");
  if (h.window_released_pages > h.num_pages) {
    detail::fail<FormatError>("KV export: window_released_pages = ", h.window_released_pages, " > num_pages = ", h.num_pages);
  }
  // Bound every count by what the blob can hold before allocating.
  std::uint64_t const record = 9;
  if (h.page_size == 0 || h.num_pages > r.remaining() / record / h.page_size) {
    detail::fail<FormatError>("KV export: truncated: ", h.num_pages, " pages of ", h.page_size, " tokens do not fit in ", r.remaining(),
                              " bytes");
  }
  e.tokens.resize(h.num_pages * h.page_size);
  for (TokenMeta& t : e.tokens) {
    t.token = r.le<std::uint32_t>("token");
    t.position = r.le<std::uint32_t>("position");
    auto const masked = r.le<std::uint8_t>("masked");
    if (masked > 1) {
      detail::fail<FormatError>("KV export: token record ", &t - e.tokens.data(), " has masked = ", unsigned{masked},
                                " (expected 0 or 1)");
    }
    t.masked = masked != 0;
  }
  auto const per_page = h.page_bytes();
  if (!per_page || *per_page == 0) {
    detail::fail<FormatError>("KV export: K/V sizes num_layers = ", h.num_layers, ", num_kv_heads = ", h.num_kv_heads,
                              ", head_dim = ", h.head_dim, ", element_size = ", h.element_size,
                              (per_page ? " give 0 bytes per page" : " overflow 64 bits"));
  }
  if (h.num_pages > 0 && *per_page > r.remaining() / h.num_pages) {
    detail::fail<FormatError>("KV export: truncated: K/V of ", h.num_pages, " pages x ", *per_page,
                              " bytes do not fit in ", r.remaining(), " bytes");
  }
  auto const kv = r.take(h.num_pages * *per_page, "K/V bytes");
  e.bytes.assign(kv.begin(), kv.end());
  std::size_t const covered = r.position();
  auto const sum = r.le<std::uint64_t>("checksum");
  if (sum != detail::fnv1a(blob.first(covered))) detail::fail<FormatError>("KV export: checksum mismatch (corrupt entry)");
  if (r.remaining() != 0) detail::fail<FormatError>("KV export: ", r.remaining(), " trailing bytes");
  return e;
}

}  // namespace piecrust
