#pragma once
// ChatTemplate: renders chat messages into the prompt text a model family was trained on, per family
// (no Jinja engine).
//
//  * ChatML (SmolLM2, Qwen2): "<|im_start|>{role}\n{content}<|im_end|>\n", generation prompt
//    "<|im_start|>assistant\n". Source: the tokenizer.chat_template of SmolLM2-135M-Instruct and Qwen2.
//    SmolLM2 inserts a default system message when the first message is not one.
//  * Llama-3: "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>", preceded once by
//    "<|begin_of_text|>"; generation prompt "<|start_header_id|>assistant<|end_header_id|>\n\n".
//    Source: Meta-Llama-3-8B-Instruct tokenizer_config.json chat_template.
//  * Gemma (Gemma, Gemma 2, Gemma 3): "<start_of_turn>{role}\n{content}<end_of_turn>\n" with "assistant"
//    written "model" and content trimmed of surrounding whitespace, preceded once by "<bos>"; a leading system
//    message is not a turn of its own: its content and "\n\n" open the first turn's content. Generation prompt
//    "<start_of_turn>model\n". Source: the chat_template of google/gemma-3-270m-it (llama.cpp's built-in
//    "gemma" template renders the same without "<bos>", which its tokenizer adds instead). One message at a
//    time (append_message) has no first turn to merge into, so there a system message is a user turn.
//
// The begin markup is the BOS token written as text: encode the spans without add_special, or BOS comes twice.
//
// Role injection. The span forms (message_spans, render_spans) keep the template's markup apart from the
// caller's role and content: Tokenizer::encode_spans turns markup into control tokens and role and content
// into plain text, so "<|im_end|>\n<|im_start|>system" inside a user message stays text. The string forms
// (message, render) are the same text joined, for display and for comparison with the Jinja output;
// encoding them with parse_special trusts every message's content.

#include <piecrust/core/error.hpp>
#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/tokenizer.hpp>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace piecrust {

enum class ChatFamily { chatml, llama3, gemma };

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (any role string is passed through)
  std::string content;
};

class ChatTemplate {
 public:
  explicit ChatTemplate(ChatFamily family, std::string default_system = {})
      : family_(family), default_system_(std::move(default_system)) {}

  /// Picks the family from tokenizer.chat_template (markers it contains) or, failing that, the vocabulary
  /// of the architecture; SmolLM2's default system prompt is taken from its template. Unsupported otherwise.
  [[nodiscard]] static ChatTemplate from_gguf(GgufFile const& f) {
    auto const tmpl = f.get_or<std::string>("tokenizer.chat_template", "");
    if (tmpl.find("<|im_start|>") != std::string::npos) {
      // SmolLM2's template: "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n...<|im_end|>\n' }}"
      std::string sys;
      std::string_view const marker = "<|im_start|>system\n";
      if (auto const a = tmpl.find(marker); a != std::string::npos && tmpl.find("messages[0]['role'] != 'system'") != std::string::npos) {
        auto const b = tmpl.find("<|im_end|>", a);
        if (b != std::string::npos) sys = tmpl.substr(a + marker.size(), b - a - marker.size());
      }
      return ChatTemplate(ChatFamily::chatml, std::move(sys));
    }
    if (tmpl.find("<|start_header_id|>") != std::string::npos) return ChatTemplate(ChatFamily::llama3);
    if (tmpl.find("<start_of_turn>") != std::string::npos) return ChatTemplate(ChatFamily::gemma);
    auto const arch = f.get_or<std::string>("general.architecture", "");
    if (!tmpl.empty()) {
      auto const first = std::string_view(tmpl).substr(0, std::min(tmpl.find('\n'), std::size_t{120}));
      detail::fail<Unsupported>(f.source(), ": tokenizer.chat_template starting '", first,
                                "' is not a supported family (ChatML, Llama-3, Gemma)");
    }
    // Files without a template: the family their architecture's vocabulary was trained with.
    if (arch == "qwen2") return ChatTemplate(ChatFamily::chatml);
    if (arch == "gemma" || arch == "gemma2" || arch == "gemma3") return ChatTemplate(ChatFamily::gemma);
    detail::fail<Unsupported>(f.source(), ": no tokenizer.chat_template and no supported chat template (ChatML, Llama-3, "
                              "Gemma) for architecture '", arch, "'");
  }

  [[nodiscard]] ChatFamily family() const noexcept { return family_; }
  [[nodiscard]] std::string const& default_system() const noexcept { return default_system_; }

  /// Appends one message as spans: markup (parse_special) around `role` and `content` (plain text). The
  /// spans view `role`, `content` and static markup.
  void append_message(std::vector<TextSpan>& out, std::string_view role, std::string_view content) const {
    switch (family_) {
      case ChatFamily::chatml:
        out.insert(out.end(), {{"<|im_start|>", true}, {role, false}, {"\n", true}, {content, false}, {"<|im_end|>\n", true}});
        break;
      case ChatFamily::llama3:
        out.insert(out.end(), {{"<|start_header_id|>", true}, {role, false}, {"<|end_header_id|>\n\n", true},
                               {content, false}, {"<|eot_id|>", true}});
        break;
      case ChatFamily::gemma: append_gemma(out, role == "system" ? std::string_view("user") : role, std::nullopt, content); break;
    }
  }

  /// One message, as it appears inside a conversation, as spans (see append_message).
  [[nodiscard]] std::vector<TextSpan> message_spans(std::string_view role, std::string_view content) const {
    std::vector<TextSpan> out;
    append_message(out, role, content);
    return out;
  }

  /// One message as text (message_spans joined).
  [[nodiscard]] std::string message(std::string_view role, std::string_view content) const { return join(message_spans(role, content)); }

  /// Markup that starts a conversation (before the first message): Llama-3's and Gemma's BOS, else nothing.
  [[nodiscard]] std::string_view begin_markup() const noexcept {
    switch (family_) {
      case ChatFamily::llama3: return "<|begin_of_text|>";
      case ChatFamily::gemma: return "<bos>";
      default: return "";
    }
  }
  [[nodiscard]] std::string begin() const { return std::string(begin_markup()); }

  /// Markup that opens the assistant's turn.
  [[nodiscard]] std::string_view generation_prompt_markup() const noexcept {
    switch (family_) {
      case ChatFamily::chatml: return "<|im_start|>assistant\n";
      case ChatFamily::llama3: return "<|start_header_id|>assistant<|end_header_id|>\n\n";
      case ChatFamily::gemma: return "<start_of_turn>model\n";
    }
    return "";
  }
  [[nodiscard]] std::string generation_prompt() const { return std::string(generation_prompt_markup()); }

  /// The token text that ends an assistant turn.
  [[nodiscard]] std::string_view end_of_turn() const noexcept {
    switch (family_) {
      case ChatFamily::chatml: return "<|im_end|>";
      case ChatFamily::llama3: return "<|eot_id|>";
      case ChatFamily::gemma: return "<end_of_turn>";
    }
    return "";
  }

  /// A whole conversation as spans; inserts the default system message when the first message is not
  /// "system". The spans view `messages` and this template: keep both alive while they are used.
  [[nodiscard]] std::vector<TextSpan> render_spans(std::vector<ChatMessage> const& messages,
                                                   bool add_generation_prompt = true) const {
    std::vector<TextSpan> out;
    if (!begin_markup().empty()) out.push_back({begin_markup(), true});
    if (!default_system_.empty() && (messages.empty() || messages.front().role != "system")) {
      append_message(out, "system", default_system_);
    }
    if (family_ == ChatFamily::gemma && !messages.empty() && messages.front().role == "system") {
      // The system content (untrimmed, as the template's first_user_prefix) opens the first turn.
      for (std::size_t k = 1; k < messages.size(); ++k) {
        auto const prefix = k == 1 ? std::optional<std::string_view>(messages.front().content) : std::nullopt;
        append_gemma(out, messages[k].role, prefix, messages[k].content);
      }
      if (messages.size() == 1) return out;  // the template renders no turn for a lone system message
      if (add_generation_prompt) out.push_back({generation_prompt_markup(), true});
      return out;
    }
    for (auto const& m : messages) append_message(out, m.role, m.content);
    if (add_generation_prompt) out.push_back({generation_prompt_markup(), true});
    return out;
  }

  /// A whole conversation as text (render_spans joined), as the family's Jinja template renders it.
  [[nodiscard]] std::string render(std::vector<ChatMessage> const& messages, bool add_generation_prompt = true) const {
    return join(render_spans(messages, add_generation_prompt));
  }

 private:
  // One Gemma turn; `prefix` (a system message's content), when given, comes first, followed by "\n\n".
  // Content is trimmed as the template's `| trim` does (ASCII whitespace here).
  static void append_gemma(std::vector<TextSpan>& out, std::string_view role, std::optional<std::string_view> prefix,
                           std::string_view content) {
    std::string_view const ws = " \t\n\r\f\v";
    auto const b = content.find_first_not_of(ws);
    content = b == std::string_view::npos ? std::string_view() : content.substr(b, content.find_last_not_of(ws) - b + 1);
    // One push_back per span: GCC 12 at -O3 misreads insert(initializer_list) here (a bogus stringop-overflow).
    out.push_back({"<start_of_turn>", true});
    out.push_back({role == "assistant" ? std::string_view("model") : role, false});
    out.push_back({"\n", true});
    if (prefix) {
      out.push_back({*prefix, false});
      out.push_back({"\n\n", false});
    }
    out.push_back({content, false});
    out.push_back({"<end_of_turn>\n", true});
  }

  [[nodiscard]] static std::string join(std::vector<TextSpan> const& spans) {
    std::string out;
    for (auto const& s : spans) out += s.text;
    return out;
  }

  ChatFamily family_;
  std::string default_system_;
};

}  // namespace piecrust
