// piecrust-chat: chat with a Llama-family GGUF model on the CPU, streaming tokens as they come.
//
//   piecrust-chat --prompt "What is the capital of France?"     one question, one answer
//   piecrust-chat                                               interactive (/reset, /quit)
//
// It runs on piecrust's runtime: an Engine owns the model and the KV pages, the conversation is a Context,
// and each token is one Forward pass (input_pending + sample), streamed as it is produced. Sampling: the
// model file's recommendation, else llama.cpp-like defaults with a repeat penalty (chat_options.hpp).

#include "chat/chat_options.hpp"
#include "common/host_model.hpp"

#include <piecrust/backends/host.hpp>
#include <piecrust/model.hpp>
#include <piecrust/runtime.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <numeric>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace piecrust;
using piecrust::examples::chat::ChatOptions;
using piecrust::examples::chat::TurnPlan;
using Clock = std::chrono::steady_clock;
using Llama = LlamaModel<Host>;
using Options = ChatOptions;

/// The command line, or exit: status 2 with the error and the usage for a bad one, 0 after --help.
Options parse(int argc, char** argv) {
  try {
    Options o = examples::chat::parse_chat_args(
        std::span<char const* const>(argv + 1, static_cast<std::size_t>(argc > 0 ? argc - 1 : 0)));
    if (o.help) {
      std::fputs(examples::chat::usage_text, stderr);
      std::exit(0);
    }
    return o;
  } catch (Error const& e) {
    std::fprintf(stderr, "piecrust-chat: %s\n", e.what());
    std::fputs(examples::chat::usage_text, stderr);
    std::exit(2);
  }
}

struct Stats {
  std::size_t prompt_tokens = 0, generated = 0;
  double prompt_s = 0, gen_s = 0;
};

/// KV pages for `o.context` tokens, once the model's own limits are known to allow it (nothing is reserved
/// before: a --context past the model would otherwise size the page pool for it).
EngineOptions engine_options(Options const& o, Llama const& model, Tokenizer const& tok) {
  examples::chat::check_against_model(o, model.shape().context_length, tok.vocab_size());
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
        engine_(model_, engine_options(o, model_, tok_), &tok_, tmpl_),
        ctx_(engine_.create_context()),
        sampling_(examples::chat::chat_sampling(o, examples::chat::recommended_sampling(*file))),
        sampler_(examples::chat::make_sampler(sampling_)) {}

  /// Sends one user message (or raw text) and streams the reply to stdout. False when the message cannot fit
  /// the context even in a new conversation: the chat should end.
  bool turn(std::string const& user) { return engine_.block_on(run_turn(user)); }

  void reset() { ctx_ = engine_.create_context(); }
  [[nodiscard]] examples::chat::ChatSampling const& sampling() const { return sampling_; }
  [[nodiscard]] Stats const& stats() const { return stats_; }

 private:
  Task<bool> run_turn(std::string user) {
    bool const fresh = ctx_.seq_len() == 0 && ctx_.pending_tokens().empty();
    fill_turn(user, fresh);
    TurnPlan const plan = examples::chat::plan_turn(ctx_.seq_len() + ctx_.pending_tokens().size(), fresh, o_.context,
                                                    o_.max_tokens);
    if (plan.kind == TurnPlan::Kind::restart) {
      std::fprintf(stderr, "[context of %zu tokens is full: starting a new conversation]\n", o_.context);
      reset();
      fill_turn(user, true);
    }
    // A new conversation is planned once more; it never restarts again, so this cannot loop.
    TurnPlan const now = plan.kind == TurnPlan::Kind::restart
                             ? examples::chat::plan_turn(ctx_.pending_tokens().size(), true, o_.context, o_.max_tokens)
                             : plan;
    if (now.kind == TurnPlan::Kind::too_long) {
      std::fprintf(stderr, "[the message needs %zu tokens with the chat prompt, and --context is %zu: ending the chat]\n",
                   ctx_.pending_tokens().size(), o_.context);
      reset();
      co_return false;
    }
    std::size_t const prompt = ctx_.pending_tokens().size();
    StreamingDetokenizer out(tok_);
    auto t0 = Clock::now();
    bool ended = false;
    for (std::size_t n = 0; n < now.budget; ++n) {
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
        ended = true;
        break;
      }
      std::cout << out.push(static_cast<TokenId>(next)) << std::flush;
    }
    std::cout << out.flush() << std::endl;
    stats_.gen_s += std::chrono::duration<double>(Clock::now() - t0).count();
    if (!ended && now.budget < o_.max_tokens) {
      std::fprintf(stderr, "[the reply stopped at the end of the context of %zu tokens]\n", o_.context);
    }
    co_return true;
  }

  /// The message as the chat template writes it (the system prompt first in a new conversation).
  void fill_turn(std::string const& user, bool fresh) {
    if (o_.raw) {  // plain completion: the text as it is, after BOS where the vocabulary starts texts with one
      if (fresh && tok_.adds_bos() && tok_.bos()) ctx_.fill({static_cast<std::uint32_t>(*tok_.bos())});
      ctx_.fill(user);
      return;
    }
    if (fresh) {
      std::string const sys = o_.system.value_or(tmpl_.default_system());
      if (!sys.empty()) ctx_.fill_system(sys);
    }
    ctx_.fill_user(user);
    ctx_.fill_generation_prompt();
  }

  Options const& o_;
  Tokenizer tok_;
  ChatTemplate tmpl_;
  Llama model_;
  Engine<Llama> engine_;
  Context<Llama> ctx_;
  examples::chat::ChatSampling sampling_;
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
  int status = 0;
  try {
    auto const file = std::make_shared<piecrust::GgufFile const>(piecrust::GgufFile::open(o.model));
    Chat chat(o, file);
    auto const& sm = chat.sampling();
    if (sm.greedy) {
      std::fprintf(stderr, "[sampling: greedy]\n");
    } else {
      std::fprintf(stderr, "[sampling%s: temperature %.2f, top-k %u, top-p %.2f, min-p %.2f, repeat penalty %.2f over %u tokens, seed %llu]\n",
                   sm.from_model ? " (the model's)" : "", static_cast<double>(sm.temperature), sm.top_k,
                   static_cast<double>(sm.top_p), static_cast<double>(sm.min_p), static_cast<double>(sm.repeat_penalty),
                   sm.repeat_last_n, static_cast<unsigned long long>(o.seed));
    }
    if (o.prompt) {
      if (!chat.turn(*o.prompt)) status = 1;
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
        if (!chat.turn(line)) {
          status = 1;
          break;
        }
      }
    }
    auto const& s = chat.stats();
    std::fprintf(stderr, "[prompt: %zu tokens, %.1f tokens/s | generated: %zu tokens, %.1f tokens/s]\n", s.prompt_tokens,
                 s.prompt_s > 0 ? static_cast<double>(s.prompt_tokens) / s.prompt_s : 0.0, s.generated,
                 s.gen_s > 0 ? static_cast<double>(s.generated) / s.gen_s : 0.0);
  } catch (piecrust::Error const& e) {
    std::fprintf(stderr, "piecrust-chat: %s\n", e.what());
    return 1;
  } catch (std::exception const& e) {
    // Not piecrust's errors: the system refusing threads or memory (std::system_error, std::bad_alloc).
    std::fprintf(stderr, "piecrust-chat: %s\n", e.what());
    return 1;
  }
  return status;
}
