// piecrust-chat: chat with a Llama-family GGUF model on the CPU, streaming tokens as they come.
//
//   piecrust-chat --prompt "What is the capital of France?"     one question, one answer
//   piecrust-chat                                               interactive (/reset, /quit)
//
// It runs on piecrust's runtime: an Engine owns the model and the KV pages, the conversation is a Context,
// and each token is one Forward pass (input_pending + sample), streamed as it is produced.

#include <piecrust/backends/host.hpp>
#include <piecrust/model.hpp>
#include <piecrust/runtime.hpp>

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

/// Greedy at temperature 0; otherwise the runtime's top-k / top-p samplers at the given temperature
/// (Holtzman et al. 2019, "The Curious Case of Neural Text Degeneration").
SamplerSpec make_sampler(Options const& o) {
  if (o.temperature == 0.0f) return samplers::greedy();
  auto const k = static_cast<std::uint32_t>(o.top_k);
  if (k > 0 && o.top_p < 1.0f) return samplers::top_k_top_p(k, o.top_p, o.temperature);
  if (k > 0) return samplers::top_k(k, o.temperature);
  if (o.top_p < 1.0f) return samplers::top_p(o.top_p, o.temperature);
  return samplers::temperature(o.temperature);
}

struct Stats {
  std::size_t prompt_tokens = 0, generated = 0;
  double prompt_s = 0, gen_s = 0;
};

EngineOptions engine_options(Options const& o) {
  EngineOptions e;
  e.page_size = 16;
  e.num_pages = (o.context + e.page_size - 1) / e.page_size + 1;
  e.seed = o.seed;
  return e;
}

/// A conversation on piecrust's runtime: one Engine, one Context; each turn is a program the engine runs.
class Chat {
 public:
  Chat(Options const& o, std::shared_ptr<GgufFile const> file)
      : o_(o),
        tok_(Tokenizer::from_gguf(*file)),
        tmpl_(o.raw ? ChatTemplate(ChatFamily::chatml) : ChatTemplate::from_gguf(*file)),
        model_(LlamaWeights::from_gguf(file), o.threads == 0 ? Host{} : Host{o.threads}),
        engine_(model_, engine_options(o), &tok_, tmpl_),
        ctx_(engine_.create_context()),
        sampler_(make_sampler(o)) {}

  /// Sends one user message (or raw text) and streams the reply to stdout.
  void turn(std::string const& user) { engine_.block_on(run_turn(user)); }

  void reset() { ctx_ = engine_.create_context(); }
  [[nodiscard]] Stats const& stats() const { return stats_; }

 private:
  Task<void> run_turn(std::string user) {
    bool const fresh = ctx_.seq_len() == 0 && ctx_.pending_tokens().empty();
    if (o_.raw) {
      ctx_.fill(user);
    } else {
      if (fresh) {
        std::string const sys = o_.system.value_or(tmpl_.default_system());
        if (!sys.empty()) ctx_.fill_system(sys);
      }
      ctx_.fill_user(user);
      ctx_.fill_generation_prompt();
    }
    if (ctx_.seq_len() + ctx_.pending_tokens().size() + o_.max_tokens > o_.context) {
      std::fprintf(stderr, "[context of %zu tokens is full: starting a new conversation]\n", o_.context);
      reset();
      co_await run_turn(std::move(user));
      co_return;
    }
    std::size_t const prompt = ctx_.pending_tokens().size();
    StreamingDetokenizer out(tok_);
    auto t0 = Clock::now();
    for (std::size_t n = 0; n < o_.max_tokens; ++n) {
      // One pass: feed what is pending (the prompt, then each sampled token) and sample after its last token.
      auto fwd = ctx_.forward();
      fwd.input_pending();
      auto const h = fwd.sample({ctx_.pending_tokens().size() - 1}, sampler_);
      ForwardOutput const result = co_await fwd.execute();
      auto const next = result.token(h);
      if (n == 0) {
        stats_.prompt_s += std::chrono::duration<double>(Clock::now() - t0).count();
        stats_.prompt_tokens += prompt;
        t0 = Clock::now();
      }
      ++stats_.generated;
      ctx_.fill({next});  // kept in the context so the next turn continues the conversation
      if (tok_.is_eog(static_cast<TokenId>(next))) {
        if (!o_.raw) ctx_.fill("\n");
        break;
      }
      std::cout << out.push(static_cast<TokenId>(next)) << std::flush;
    }
    std::cout << out.flush() << std::endl;
    stats_.gen_s += std::chrono::duration<double>(Clock::now() - t0).count();
  }

  Options const& o_;
  Tokenizer tok_;
  ChatTemplate tmpl_;
  Llama model_;
  Engine<Llama> engine_;
  Context<Llama> ctx_;
  SamplerSpec sampler_;
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
