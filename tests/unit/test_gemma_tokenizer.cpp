// Gemma 3's SentencePiece vocabulary (262,144 tokens, add_bos, no space prefix, user-defined whitespace runs)
// against llama.cpp: the ids of every string of tests/data/gemma3_tokenizer.txt (tests/reference/
// gen_gemma_tokenizer.py) with the flags recorded there, and decode against llama.cpp's detokenize.
// Also the prompts of tests/data/gemma3_greedy.txt.
// The file: $PIECRUST_GEMMA_MODEL, else <cache>/models/gemma-3-270m-q4_k_m.gguf (scripts/fetch-model.sh gemma3-270m).

#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/model_paths.hpp>
#include <piecrust/model/tokenizer.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace piecrust;

namespace {

std::string gemma_path() {
  if (char const* m = std::getenv("PIECRUST_GEMMA_MODEL"); m != nullptr && *m != '\0') return m;
  return cache_dir() + "/models/gemma-3-270m-q4_k_m.gguf";
}

std::string unhex(std::string const& h) {
  std::string out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return out;
}

struct Case {
  std::string text;
  bool add_bos, special;
  std::vector<TokenId> ids;
  std::string decoded;  // llama.cpp's detokenize of ids without BOS
};

std::vector<Case> load_cases() {
  std::ifstream in(std::string(PIECRUST_SOURCE_DIR) + "/tests/data/gemma3_tokenizer.txt");
  REQUIRE(in.good());
  std::vector<Case> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto const j = nlohmann::json::parse(line);
    out.push_back({unhex(j.at("text_hex").get<std::string>()), j.at("add_bos").get<bool>(), j.at("special").get<bool>(),
                   j.at("ids").get<std::vector<TokenId>>(), unhex(j.at("decoded_hex").get<std::string>())});
  }
  return out;
}

Tokenizer const& gemma_tokenizer() {
  static Tokenizer const t = [] {
    auto const path = gemma_path();
    if (!std::filesystem::exists(path)) {
      FAIL("model file " << path << " is missing: fetch it with scripts/fetch-model.sh gemma3-270m "
                         "(or point PIECRUST_GEMMA_MODEL at a gemma-3-270m-q4_k_m.gguf)");
    }
    return Tokenizer::from_gguf(GgufFile::open(path));
  }();
  return t;
}

}  // namespace

TEST_CASE("gemma3 tokenizer: ids equal llama.cpp's on the recorded corpus", "[tokenizer][model-file]") {
  auto const& tok = gemma_tokenizer();
  auto const cases = load_cases();
  REQUIRE(cases.size() >= 400);  // >= 200 strings, each plain with BOS and as markup without
  REQUIRE(tok.adds_bos());
  for (auto const& c : cases) {
    INFO("text '" << c.text << "' add_bos " << c.add_bos << " special " << c.special);
    auto const ids = tok.encode(c.text, {.add_special = c.add_bos, .parse_special = c.special});
    REQUIRE(ids == c.ids);
  }
}

TEST_CASE("gemma3 tokenizer: decode equals llama.cpp's detokenize, and round trips where llama.cpp's does",
          "[tokenizer][model-file]") {
  auto const& tok = gemma_tokenizer();
  std::size_t round_trips = 0;
  for (auto const& c : load_cases()) {
    INFO("text '" << c.text << "' add_bos " << c.add_bos << " special " << c.special);
    std::vector<TokenId> body = c.ids;
    if (c.add_bos && !body.empty() && body.front() == *tok.bos()) body.erase(body.begin());
    auto const text = tok.decode(body);
    REQUIRE(text == c.decoded);
    if (c.decoded == c.text) {
      ++round_trips;
      REQUIRE(tok.decode(tok.encode(c.text, {.add_special = false, .parse_special = c.special})) == c.text);
    }
  }
  CHECK(round_trips >= 300);
}

TEST_CASE("gemma3 tokenizer: random mixtures of the corpus's plain texts round trip", "[tokenizer][model-file]") {
  // Plain text (no control parsing) of normal and user-defined tokens decodes back to itself: concatenations
  // of corpus strings that llama.cpp round trips, joined by random whitespace, must too.
  auto const& tok = gemma_tokenizer();
  std::vector<std::string> pieces;
  for (auto const& c : load_cases()) {
    if (!c.special && c.decoded == c.text) pieces.push_back(c.text);
  }
  REQUIRE(pieces.size() >= 150);
  std::mt19937 rng(std::random_device{}());
  std::vector<std::string> const glue = {"", " ", "  ", "\n", "\t", " \n\n", "   "};
  for (int trial = 0; trial < 200; ++trial) {
    std::string text;
    int const n = std::uniform_int_distribution<int>(1, 6)(rng);
    for (int k = 0; k < n; ++k) {
      text += pieces[std::uniform_int_distribution<std::size_t>(0, pieces.size() - 1)(rng)];
      text += glue[std::uniform_int_distribution<std::size_t>(0, glue.size() - 1)(rng)];
    }
    INFO("text '" << text << "'");
    auto const ids = tok.encode(text);
    for (auto id : ids) REQUIRE(tok.token_type(id) != TokenType::control);
    REQUIRE(tok.decode(ids) == text);
  }
}

TEST_CASE("gemma3 tokenizer: the greedy reference's prompts tokenize as llama.cpp did", "[tokenizer][model-file]") {
  // tests/data/gemma3_greedy.txt (tests/reference/gen_gemma_greedy.py): name, special, text_hex, prompt_ids,
  // greedy_ids, top5, tab separated; prompt_ids are llama.cpp's with BOS.
  auto const& tok = gemma_tokenizer();
  std::ifstream in(std::string(PIECRUST_SOURCE_DIR) + "/tests/data/gemma3_greedy.txt");
  REQUIRE(in.good());
  auto split = [](std::string const& s, char sep) {
    std::vector<std::string> out;
    std::string item;
    std::istringstream is(s);
    while (std::getline(is, item, sep)) out.push_back(item);
    return out;
  };
  std::size_t prompts = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto const f = split(line, '\t');
    REQUIRE(f.size() == 6);
    INFO("prompt " << f[0]);
    std::vector<TokenId> want;
    for (auto const& id : split(f[3], ',')) want.push_back(std::stoi(id));
    auto const got = tok.encode(unhex(f[2]), {.add_special = true, .parse_special = f[1] == "1"});
    REQUIRE(got == want);
    REQUIRE(split(f[4], ',').size() == 32);
    REQUIRE(split(f[5], ',').size() == 5);
    ++prompts;
  }
  CHECK(prompts >= 24);
}
