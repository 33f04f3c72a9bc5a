// piecrust-chat: chat with a Llama-family GGUF model on the CPU, streaming tokens as they come.
//
//   piecrust-chat --prompt "What is the capital of France?"     one question, one answer
//   piecrust-chat                                               interactive (/reset, /quit)
//
// Until the runtime's Engine exists this drives the model directly: one sequence, pages from a PagePool.

#include <piecrust/backends/host.hpp>
#include <piecrust/model.hpp>
#include <piecrust/model/detail/sequence_runner.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace piecrust;
using Clock = std::chrono::steady_clock;
using Llama = LlamaModel<Host>;

struct Options {
  std::string model = default_model_path();
  std::optional<std::string> prompt;
  std::optional<std::string> system;
  std::size_t max_tokens = 256;
  float temperature = 0.0f;  // 0 = greedy
  std::size_t top_k = 0;     // 0 = off
  float top_p = 1.0f;        // 1 = off
  std::uint64_t seed = 0;
  std::size_t threads = 0;  // 0 = one per hardware thread
  std::size_t context = 2048;
  bool raw = false;  // no chat template: the prompt is completed as plain text
};

void usage() {
  std::fprintf(stderr,
               "usage: piecrust-chat [--model FILE.gguf] [--prompt TEXT] [--system TEXT] [--max-tokens N]\n"
               "                     [--temperature T] [--top-k K] [--top-p P] [--seed S] [--threads N]\n"
               "                     [--context N] [--raw]\n"
               "  --model        GGUF file (default: $PIECRUST_MODEL or the cache of scripts/fetch-model.sh)\n"
               "  --prompt       answer this one message and exit; without it, chat interactively\n"
               "  --temperature  0 (default) is greedy; > 0 samples with --top-k / --top-p / --seed\n"
               "  --raw          complete the prompt as plain text instead of a chat turn\n");
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string const a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "piecrust-chat: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    try {
      if (a == "--model") o.model = value();
      else if (a == "--prompt" || a == "-p") o.prompt = value();
      else if (a == "--system") o.system = value();
      else if (a == "--max-tokens" || a == "-n") o.max_tokens = std::stoul(value());
      else if (a == "--temperature") o.temperature = std::stof(value());
      else if (a == "--top-k") o.top_k = std::stoul(value());
      else if (a == "--top-p") o.top_p = std::stof(value());
      else if (a == "--seed") o.seed = std::stoull(value());
      else if (a == "--threads" || a == "-t") o.threads = std::stoul(value());
      else if (a == "--context") o.context = std::stoul(value());
      else if (a == "--raw") o.raw = true;
      else if (a == "--help" || a == "-h") {
        usage();
        std::exit(0);
      } else {
        std::fprintf(stderr, "piecrust-chat: unknown option %s\n", a.c_str());
        usage();
        std::exit(2);
      }
    } catch (std::logic_error const&) {
      std::fprintf(stderr, "piecrust-chat: bad value for %s\n", a.c_str());
      std::exit(2);
    }
  }
  if (o.temperature < 0 || !(o.top_p > 0 && o.top_p <= 1)) {
    std::fprintf(stderr, "piecrust-chat: --temperature must be >= 0 and --top-p in (0, 1]\n");
    std::exit(2);
  }
  return o;
}

/// Greedy at temperature 0; otherwise softmax(logits / T) restricted to the top-k, then to the smallest
/// set whose mass reaches top-p (Holtzman et al. 2019, "The Curious Case of Neural Text Degeneration").
class Sampler {
 public:
  explicit Sampler(Options const& o) : o_(o), rng_(o.seed) {}

  TokenId sample(std::vector<float> const& logits) {
    if (o_.temperature == 0.0f) {
      return static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }
    std::vector<TokenId> idx(logits.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::size_t k = o_.top_k == 0 ? idx.size() : std::min(o_.top_k, idx.size());
    std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k), idx.end(),
                      [&](TokenId a, TokenId b) { return logits[a] > logits[b]; });
    idx.resize(k);
    std::vector<double> p(k);
    double const mx = logits[idx[0]];
    double z = 0;
    for (std::size_t i = 0; i < k; ++i) z += p[i] = std::exp((logits[idx[i]] - mx) / o_.temperature);
    double mass = 0;
    std::size_t keep = 0;
    while (keep < k && mass < o_.top_p * z) mass += p[keep++];
    std::discrete_distribution<std::size_t> pick(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(std::max<std::size_t>(keep, 1)));
    return idx[pick(rng_)];
  }

 private:
  Options const& o_;
  std::mt19937_64 rng_;
};

struct Stats {
  std::size_t prompt_tokens = 0, generated = 0;
  double prompt_s = 0, gen_s = 0;
};

class Chat {
 public:
  Chat(Options const& o, std::shared_ptr<GgufFile const> file)
      : o_(o),
        tok_(Tokenizer::from_gguf(*file)),
        tmpl_(o.raw ? ChatTemplate(ChatFamily::chatml) : ChatTemplate::from_gguf(*file)),
        model_(LlamaWeights::from_gguf(file), o.threads == 0 ? Host{} : Host{o.threads}),
        runner_(model_, (o.context + 15) / 16, 16),
        seq_(runner_.add_sequence()),
        sampler_(o) {}

  /// Sends one user message (or raw text) and streams the reply to stdout.
  void turn(std::string const& user) {
    std::string text;
    if (o_.raw) {
      text = user;
    } else {
      if (runner_.length(seq_) == 0) {
        text = tmpl_.begin();
        std::string const sys = o_.system.value_or(tmpl_.default_system());
        if (!sys.empty()) text += tmpl_.message("system", sys);
      }
      text += tmpl_.message("user", user) + tmpl_.generation_prompt();
    }
    auto const ids = tok_.encode(text, {.add_special = runner_.length(seq_) == 0, .parse_special = !o_.raw});
    if (runner_.length(seq_) + ids.size() + o_.max_tokens > o_.context) {
      std::fprintf(stderr, "[context of %zu tokens is full: starting a new conversation]\n", o_.context);
      runner_.reset(seq_);
      return turn(user);
    }
    auto t0 = Clock::now();
    auto logits = runner_.step(seq_, ids);
    stats_.prompt_s += std::chrono::duration<double>(Clock::now() - t0).count();
    stats_.prompt_tokens += ids.size();
    StreamingDetokenizer out(tok_);
    t0 = Clock::now();
    for (std::size_t n = 0; n < o_.max_tokens; ++n) {
      TokenId const next = sampler_.sample(logits);
      ++stats_.generated;
      if (tok_.is_eog(next)) {
        // Keep the end-of-turn token in the context so the next turn continues the conversation.
        logits = runner_.step(seq_, std::span(&next, 1));
        if (!o_.raw) (void)runner_.step(seq_, tok_.encode("\n"));
        break;
      }
      std::cout << out.push(next) << std::flush;
      logits = runner_.step(seq_, std::span(&next, 1));
    }
    std::cout << out.flush() << std::endl;
    stats_.gen_s += std::chrono::duration<double>(Clock::now() - t0).count();
  }

  void reset() { runner_.reset(seq_); }
  [[nodiscard]] Stats const& stats() const { return stats_; }

 private:
  Options const& o_;
  Tokenizer tok_;
  ChatTemplate tmpl_;
  Llama model_;
  detail::SequenceRunner<Llama> runner_;
  std::size_t seq_;
  Sampler sampler_;
  Stats stats_;
};

}  // namespace

int main(int argc, char** argv) {
  auto const o = parse(argc, argv);
  if (!std::filesystem::exists(o.model)) {
    std::fprintf(stderr, "piecrust-chat: model file %s is missing: %s\n", o.model.c_str(), piecrust::fetch_model_hint);
    return 1;
  }
  try {
    auto const file = std::make_shared<piecrust::GgufFile const>(piecrust::GgufFile::open(o.model));
    Chat chat(o, file);
    if (o.prompt) {
      chat.turn(*o.prompt);
    } else {
      std::fprintf(stderr, "piecrust-chat: %s — type a message, /reset for a new conversation, /quit to leave\n",
                   file->get_or<std::string>("general.name", o.model).c_str());
      std::string line;
      while (true) {
        std::fprintf(stderr, "> ");
        if (!std::getline(std::cin, line) || line == "/quit" || line == "/exit") break;
        if (line == "/reset") {
          chat.reset();
          continue;
        }
        if (line.empty()) continue;
        chat.turn(line);
      }
    }
    auto const& s = chat.stats();
    std::fprintf(stderr, "[prompt: %zu tokens, %.1f tokens/s | generated: %zu tokens, %.1f tokens/s]\n", s.prompt_tokens,
                 s.prompt_s > 0 ? static_cast<double>(s.prompt_tokens) / s.prompt_s : 0.0, s.generated,
                 s.gen_s > 0 ? static_cast<double>(s.generated) / s.gen_s : 0.0);
  } catch (piecrust::Error const& e) {
    std::fprintf(stderr, "piecrust-chat: %s\n", e.what());
    return 1;
  }
  return 0;
}
