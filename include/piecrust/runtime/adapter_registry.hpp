#pragma once
// AdapterRegistry: the LoRA adapters an engine has loaded, by name and AdapterId. Adapters are checked against
// the model's projection shapes when they are loaded, and keep a stable address while loaded (a step holds
// pointers to the ones its passes use).

#include <piecrust/core/error.hpp>
#include <piecrust/model/llama_config.hpp>
#include <piecrust/model/lora_adapter.hpp>
#include <piecrust/runtime/adapter_id.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace piecrust::detail {

class AdapterRegistry {
 public:
  /// Registers `adapter` under `name` for a model of config `c`. Throws InvalidArgument (nothing registered)
  /// for an empty or taken name, or an adapter whose shapes do not fit (naming the tensor and both shapes).
  AdapterId load(std::string name, LoraAdapter adapter, LlamaConfig const& c) {
    constexpr char const* op = "Engine::load_adapter";
    if (name.empty()) fail<InvalidArgument>(op, ": the adapter name is empty");
    if (find(name)) fail<InvalidArgument>(op, ": an adapter named \"", name, "\" is already loaded");
    LoraShape const want = LoraShape::of(c);
    if (adapter.shape().num_layers != want.num_layers) {
      fail<InvalidArgument>(op, ": adapter \"", name, "\" has ", adapter.shape().num_layers, " layers, the model has ",
                            want.num_layers);
    }
    adapter.check_fits(want, message(op, " \"", name, "\""));
    AdapterId const id = next_adapter_id();
    entries_.emplace(id.value, Entry{std::move(name), std::make_unique<LoraAdapter const>(std::move(adapter))});
    return id;
  }

  [[nodiscard]] std::optional<AdapterId> find(std::string_view name) const {
    for (auto const& [id, e] : entries_) {
      if (e.name == name) return AdapterId{id};
    }
    return std::nullopt;
  }
  [[nodiscard]] bool contains(AdapterId id) const { return entries_.contains(id.value); }

  /// The adapter `id`, or nullptr when it is not loaded.
  [[nodiscard]] LoraAdapter const* get(AdapterId id) const {
    auto const it = entries_.find(id.value);
    return it == entries_.end() ? nullptr : it->second.adapter.get();
  }

  /// Unloads `id`; false when it was not loaded.
  bool unload(AdapterId id) { return entries_.erase(id.value) != 0; }

 private:
  struct Entry {
    std::string name;
    std::unique_ptr<LoraAdapter const> adapter;  // stable address: steps hold pointers to it
  };
  std::map<std::uint64_t, Entry> entries_;  // by AdapterId::value
};

}  // namespace piecrust::detail
