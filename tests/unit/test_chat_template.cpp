// Chat templates: ChatML (SmolLM2, Qwen2) and Llama-3, compared with the text the families' Jinja
// templates produce.

#include <piecrust/model/chat_template.hpp>
#include <piecrust/model/gguf_writer.hpp>
#include <piecrust/model/model_paths.hpp>

#include <catch2/catch.hpp>

#include <filesystem>

using namespace piecrust;

TEST_CASE("chat template: ChatML", "[chat]") {
  ChatTemplate const t(ChatFamily::chatml);
  CHECK(t.render({{"system", "S"}, {"user", "Hi"}}) ==
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  CHECK(t.render({{"user", "Hi"}, {"assistant", "Yo"}}, false) ==
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n");
  CHECK(t.end_of_turn() == "<|im_end|>");
}

TEST_CASE("chat template: Llama-3", "[chat]") {
  ChatTemplate const t(ChatFamily::llama3);
  CHECK(t.render({{"system", "S"}, {"user", "Hi"}}) ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK(t.end_of_turn() == "<|eot_id|>");
}

TEST_CASE("chat template: family detection from GGUF metadata", "[chat]") {
  auto detect = [](std::string tmpl, std::string arch) {
    GgufWriter w;
    w.set("general.architecture", {arch});
    if (!tmpl.empty()) w.set("tokenizer.chat_template", {tmpl});
    return ChatTemplate::from_gguf(GgufFile::parse(w.bytes()));
  };
  CHECK(detect("{{ '<|start_header_id|>' }}", "llama").family() == ChatFamily::llama3);
  CHECK(detect("", "qwen2").family() == ChatFamily::chatml);
  CHECK_THROWS_AS(detect("", "llama"), Unsupported);
}

TEST_CASE("chat template: SmolLM2's default system prompt", "[chat][model-file]") {
  auto const path = default_model_path();
  if (!std::filesystem::exists(path)) FAIL("model file " << path << " is missing: " << fetch_model_hint);
  auto const t = ChatTemplate::from_gguf(GgufFile::open(path));
  CHECK(t.family() == ChatFamily::chatml);
  CHECK(t.default_system() == "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  // Exactly what the file's Jinja template renders for [user: "Hi"] with add_generation_prompt.
  CHECK(t.render({{"user", "Hi"}}) ==
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  CHECK(t.render({{"system", "X"}, {"user", "Hi"}}).starts_with("<|im_start|>system\nX<|im_end|>"));
}
