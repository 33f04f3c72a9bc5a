// The real Gemma 3 270M Q4_K_M file (F32, Q5_0, Q4_K, Q6_K and Q8_0 tensors): every tensor's type is one
// piecrust supports, and sampled rows of every tensor (first, last and seven evenly spaced) dequantize to the
// values of the PyPI gguf package's numpy dequantizer, exactly: the SHA-256 of their f32 bytes equals the
// digest recorded in tests/data/gemma3_270m_rows.txt (tests/quant/gen_gemma_reference.py).
// The file: $PIECRUST_GEMMA_MODEL, else <cache>/models/gemma-3-270m-q4_k_m.gguf (scripts/fetch-model.sh gemma3-270m).

#include <piecrust/kernels/weight_type.hpp>
#include <piecrust/model/dequantize.hpp>
#include <piecrust/model/detail/sha256.hpp>
#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/model_paths.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#ifndef PIECRUST_GEMMA_ROWS
#error "PIECRUST_GEMMA_ROWS (tests/data/gemma3_270m_rows.txt) must be defined by the build"
#endif

using namespace piecrust;

static_assert(std::endian::native == std::endian::little, "the digests are of little-endian f32 bytes");

namespace {

std::string gemma_path() {
  if (char const* m = std::getenv("PIECRUST_GEMMA_MODEL"); m != nullptr && *m != '\0') return m;
  return cache_dir() + "/models/gemma-3-270m-q4_k_m.gguf";
}

struct Recorded {
  std::string type;                 // ggml name, e.g. Q4_K
  std::vector<std::uint64_t> dims;  // ggml order
  std::vector<std::uint64_t> rows;  // sampled rows
  std::string sha256;               // hex
};

std::vector<std::uint64_t> numbers(std::string const& csv) {
  std::vector<std::uint64_t> out;
  std::istringstream in(csv);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoull(item));
  return out;
}

std::string hex(detail::Sha256::Digest const& d) {
  static char const digits[] = "0123456789abcdef";
  std::string out;
  for (std::uint8_t b : d) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

}  // namespace

TEST_CASE("gemma3 270m: every tensor has a supported type and dequantizes as the gguf package does", "[gguf][model-file]") {
  auto const path = gemma_path();
  if (!std::filesystem::exists(path)) {
    FAIL("model file " << path << " is missing: fetch it with scripts/fetch-model.sh gemma3-270m "
                       "(or point PIECRUST_GEMMA_MODEL at a gemma-3-270m-q4_k_m.gguf)");
  }
  std::map<std::string, Recorded> want;
  {
    std::ifstream in(PIECRUST_GEMMA_ROWS);
    REQUIRE(in.good());
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream f(line);
      std::string name, dims, rows;
      Recorded r;
      f >> name >> r.type >> dims >> rows >> r.sha256;
      REQUIRE(r.sha256.size() == 64);
      r.dims = numbers(dims);
      r.rows = numbers(rows);
      want.emplace(name, std::move(r));
    }
  }
  REQUIRE(want.size() == 236);

  auto const f = GgufFile::open(path);
  CHECK(f.get<std::string>("general.architecture") == "gemma3");
  REQUIRE(f.tensors().size() == want.size());
  std::set<std::string> types;
  for (auto const& t : f.tensors()) {
    INFO("tensor " << t.name);
    auto const it = want.find(t.name);
    REQUIRE(it != want.end());
    auto const& r = it->second;
    CHECK(std::string(ggml_type_name(t.type)) == r.type);
    REQUIRE(t.n_dims == r.dims.size());
    for (std::uint32_t d = 0; d < t.n_dims; ++d) CHECK(t.dims[d] == r.dims[d]);
    CHECK(weight_type_from_id(static_cast<std::uint32_t>(t.type)).has_value());
    types.insert(r.type);

    auto const data = f.tensor_data(t);
    std::size_t const cols = t.dims[0], row_bytes = t.row_bytes();
    REQUIRE(data.size() == t.num_rows() * row_bytes);
    std::vector<float> row(cols);  // [cols]
    detail::Sha256 sha;
    for (std::uint64_t k : r.rows) {
      REQUIRE(k < t.num_rows());
      dequantize_row(t.type, data.subspan(k * row_bytes, row_bytes), std::span<float>(row));
      // Little-endian f32 bytes, as the generator hashed them.
      sha.update(row.data(), row.size() * sizeof(float));
    }
    CHECK(hex(sha.finish()) == r.sha256);
  }
  CHECK(types == std::set<std::string>{"F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"});
}
