#pragma once
// ChatTemplate: renders chat messages into the prompt text a model family was trained on, per family
// (no Jinja engine). The text contains special-token markup; encode it with parse_special = true.
//
//  * ChatML (SmolLM2, Qwen2): "<|im_start|>{role}\n{content}<|im_end|>\n", generation prompt
//    "<|im_start|>assistant\n". Source: the tokenizer.chat_template of SmolLM2-135M-Instruct and Qwen2.
//    SmolLM2 inserts a default system message when the first message is not one.
//  * Llama-3: "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>", preceded once by
//    "<|begin_of_text|>"; generation prompt "<|start_header_id|>assistant<|end_header_id|>\n\n".
//    Source: Meta-Llama-3-8B-Instruct tokenizer_config.json chat_template.

#include <piecrust/core/error.hpp>
#include <piecrust/model/gguf_file.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace piecrust {

enum class ChatFamily { chatml, llama3 };

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
    auto const arch = f.get_or<std::string>("general.architecture", "");
    if (tmpl.empty() && arch == "qwen2") return ChatTemplate(ChatFamily::chatml);
    detail::fail<Unsupported>(f.source(), ": no supported chat template (ChatML, Llama-3) for architecture '", arch, "'");
  }

  [[nodiscard]] ChatFamily family() const noexcept { return family_; }
  [[nodiscard]] std::string const& default_system() const noexcept { return default_system_; }

  /// One message, as it appears inside a conversation.
  [[nodiscard]] std::string message(std::string_view role, std::string_view content) const {
    std::string out;
    switch (family_) {
      case ChatFamily::chatml: out.append("<|im_start|>").append(role).append("\n").append(content).append("<|im_end|>\n"); break;
      case ChatFamily::llama3:
        out.append("<|start_header_id|>").append(role).append("<|end_header_id|>\n\n").append(content).append("<|eot_id|>");
        break;
    }
    return out;
  }

  /// Text that starts a conversation (before the first message): Llama-3's BOS marker, else nothing.
  [[nodiscard]] std::string begin() const { return family_ == ChatFamily::llama3 ? "<|begin_of_text|>" : ""; }

  /// Text that opens the assistant's turn.
  [[nodiscard]] std::string generation_prompt() const {
    return family_ == ChatFamily::chatml ? "<|im_start|>assistant\n" : "<|start_header_id|>assistant<|end_header_id|>\n\n";
  }

  /// The token text that ends an assistant turn.
  [[nodiscard]] std::string_view end_of_turn() const noexcept {
    return family_ == ChatFamily::chatml ? "<|im_end|>" : "<|eot_id|>";
  }

  /// A whole conversation; inserts the default system message when the first message is not "system".
  [[nodiscard]] std::string render(std::vector<ChatMessage> const& messages, bool add_generation_prompt = true) const {
    std::string out = begin();
    if (!default_system_.empty() && (messages.empty() || messages.front().role != "system")) {
      out += message("system", default_system_);
    }
    for (auto const& m : messages) out += message(m.role, m.content);
    if (add_generation_prompt) out += generation_prompt();
    return out;
  }

 private:
  ChatFamily family_;
  std::string default_system_;
};

}  // namespace piecrust
