#pragma once
// LoraAdapter: low-rank updates of a Llama-family model's attention projections (Hu et al., "LoRA:
// Low-Rank Adaptation of Large Language Models", ICLR 2022). A projection y = x W^T (W: [out][in]) becomes
//
//   y = x W^T + scale * (x A^T) B^T,    A: [rank][in], B: [out][rank],   scale = alpha / rank
//
// for any of the q, k, v and output projections of any layer; the others are left as they are.
//
// From a file: a GGUF LoRA adapter in the layout llama.cpp's convert_lora_to_gguf.py writes and
// src/llama-adapter.cpp reads: `general.type = "adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha`
// (f32), `general.architecture` of the base model, and per adapted weight `W` of the base model two tensors
// `W.lora_a` (ggml dims {in, rank}: [rank][in]) and `W.lora_b` ({rank, out}: [out][rank]), e.g.
// `blk.3.attn_q.weight.lora_a`. A missing or zero alpha means scale 1, as in llama.cpp
// (src/llama-graph.cpp, build_lora_mm: `alpha ? alpha / rank : 1`); the rank is each pair's own.
// Or built in code (`set`, or `random` for tests).

#include <piecrust/core/error.hpp>
#include <piecrust/model/dequantize.hpp>
#include <piecrust/model/gguf_file.hpp>
#include <piecrust/model/llama_config.hpp>

#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace piecrust {

/// The attention projections an adapter can update.
enum class LoraTarget : std::uint8_t { q = 0, k = 1, v = 2, o = 3 };
inline constexpr std::size_t lora_target_count = 4;

/// The base-model tensor a target adapts (llama.cpp src/llama-arch.cpp names), without "blk.N." and ".weight".
[[nodiscard]] constexpr std::string_view lora_target_tensor(LoraTarget t) noexcept {
  switch (t) {
    case LoraTarget::q: return "attn_q";
    case LoraTarget::k: return "attn_k";
    case LoraTarget::v: return "attn_v";
    case LoraTarget::o: return "attn_output";
  }
  return "?";
}

/// The shapes of a model's attention projections: what an adapter must match.
struct LoraShape {
  std::size_t num_layers = 0;
  std::size_t hidden = 0;  // input of q, k, v; output of o
  std::size_t q_dim = 0;   // num_heads * head_dim: output of q, input of o
  std::size_t kv_dim = 0;  // num_kv_heads * head_dim: output of k and v

  [[nodiscard]] static LoraShape of(LlamaConfig const& c) {
    return {c.num_layers, c.hidden, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim};
  }
  /// Input features of the target's projection.
  [[nodiscard]] std::size_t in(LoraTarget t) const noexcept { return t == LoraTarget::o ? q_dim : hidden; }
  /// Output features of the target's projection.
  [[nodiscard]] std::size_t out(LoraTarget t) const noexcept {
    return t == LoraTarget::q ? q_dim : t == LoraTarget::o ? hidden : kv_dim;
  }
  friend bool operator==(LoraShape const&, LoraShape const&) = default;
};

/// One low-rank update of one projection.
struct LoraPair {
  std::size_t rank = 0;
  std::size_t in = 0;
  std::size_t out = 0;
  std::vector<float> a;  // [rank][in]
  std::vector<float> b;  // [out][rank]
  float scale = 1.0f;    // alpha / rank (1 when alpha = 0)
};

class LoraAdapter {
 public:
  /// An adapter with no pairs yet, for models of shape `shape`. alpha = 0 means scale 1 for every pair.
  /// Throws InvalidArgument for a shape with a zero dimension or a non-finite alpha.
  LoraAdapter(LoraShape shape, float alpha) : shape_(shape), alpha_(alpha), layers_(shape.num_layers) {
    if (shape.num_layers == 0 || shape.hidden == 0 || shape.q_dim == 0 || shape.kv_dim == 0) {
      detail::fail<InvalidArgument>("LoraAdapter: shape {num_layers ", shape.num_layers, ", hidden ", shape.hidden,
                                    ", q_dim ", shape.q_dim, ", kv_dim ", shape.kv_dim, "} has a zero dimension");
    }
    if (!std::isfinite(alpha)) detail::fail<InvalidArgument>("LoraAdapter: alpha = ", alpha, " is not finite");
  }

  /// Sets the pair of (layer, target): a is [rank][in], b is [out][rank] (row-major). Throws InvalidArgument
  /// (the adapter unchanged) for rank 0, a layer past the shape, or sizes that do not match.
  LoraAdapter& set(std::size_t layer, LoraTarget target, std::size_t rank, std::vector<float> a, std::vector<float> b) {
    std::string const name = tensor_name(layer, target);
    if (layer >= shape_.num_layers) {
      detail::fail<InvalidArgument>("LoraAdapter::set: layer = ", layer, " >= num_layers = ", shape_.num_layers, " (", name, ")");
    }
    if (rank == 0) detail::fail<InvalidArgument>("LoraAdapter::set: ", name, " has rank 0");
    std::size_t const in = shape_.in(target), out = shape_.out(target);
    std::size_t const a_size = values_of(rank, in, name), b_size = values_of(rank, out, name);
    if (a.size() != a_size) {
      detail::fail<InvalidArgument>("LoraAdapter::set: ", name, ".lora_a has ", a.size(), " values, [rank ", rank, "][in ",
                                    in, "] needs ", a_size);
    }
    if (b.size() != b_size) {
      detail::fail<InvalidArgument>("LoraAdapter::set: ", name, ".lora_b has ", b.size(), " values, [out ", out, "][rank ",
                                    rank, "] needs ", b_size);
    }
    LoraPair p;
    p.rank = rank;
    p.in = in;
    p.out = out;
    p.a = std::move(a);
    p.b = std::move(b);
    p.scale = alpha_ != 0.0f ? alpha_ / static_cast<float>(rank) : 1.0f;
    layers_[layer][static_cast<std::size_t>(target)] = std::move(p);
    revision_ = next_revision();
    return *this;
  }

  /// Random pairs of rank `rank` on `targets` of every layer: A ~ U(-1, 1) / sqrt(in) (so x A^T has unit
  /// scale), B ~ U(-b_range, b_range) / sqrt(rank). Deterministic in seed. b_range = 0 gives B = 0.
  [[nodiscard]] static LoraAdapter random(LoraShape shape, std::size_t rank, float alpha, std::uint64_t seed,
                                          std::initializer_list<LoraTarget> targets = {LoraTarget::q, LoraTarget::k,
                                                                                       LoraTarget::v, LoraTarget::o},
                                          float b_range = 1.0f) {
    LoraAdapter ad(shape, alpha);
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (std::size_t l = 0; l < shape.num_layers; ++l) {
      for (LoraTarget const t : targets) {
        std::size_t const in = shape.in(t), out = shape.out(t);
        std::string const name = tensor_name(l, t);
        std::vector<float> a(values_of(rank, in, name));   // [rank][in]
        std::vector<float> b(values_of(rank, out, name));  // [out][rank]
        float const sa = 1.0f / std::sqrt(static_cast<float>(in));
        float const sb = rank == 0 ? 0.0f : b_range / std::sqrt(static_cast<float>(rank));
        for (auto& x : a) x = sa * u(rng);
        for (auto& x : b) x = sb * u(rng);
        ad.set(l, t, rank, std::move(a), std::move(b));
      }
    }
    return ad;
  }

  /// Reads a GGUF LoRA adapter (layout above) for a base model with config `model`. Throws FormatError for
  /// a file that is not a LoRA adapter, a tensor name that is not `blk.N.<target>.weight.lora_{a,b}`, a pair
  /// with one half missing, or halves whose ranks disagree; InvalidArgument (naming the tensor and its shape)
  /// for another architecture, a layer the model lacks, or a tensor whose shape does not fit the model;
  /// Unsupported for an adapted weight outside the attention projections (ffn, embeddings, norms) or a tensor
  /// type with no decoder. Sizes that overflow or do not fit the file are refused by GgufFile (FormatError).
  [[nodiscard]] static LoraAdapter from_gguf(GgufFile const& f, LlamaConfig const& model) {
    auto const str = [&](char const* key) {
      auto const* v = f.find(key);
      return v == nullptr ? std::string() : v->as<std::string>(key);
    };
    if (str("general.type") != "adapter") {
      detail::fail<FormatError>(f.source(), ": general.type = '", str("general.type"), "', a LoRA adapter has 'adapter'");
    }
    if (str("adapter.type") != "lora") {
      detail::fail<FormatError>(f.source(), ": adapter.type = '", str("adapter.type"), "', expected 'lora'");
    }
    if (auto const arch = str("general.architecture"); !arch.empty() && arch != model.arch) {
      detail::fail<InvalidArgument>(f.source(), ": the adapter is for architecture '", arch, "', the model is '", model.arch, "'");
    }
    float const alpha = f.get_or<float>("adapter.lora.alpha", 0.0f);
    LoraShape const shape = LoraShape::of(model);
    LoraAdapter ad(shape, alpha);

    struct Halves {
      GgufTensorInfo const* a = nullptr;
      GgufTensorInfo const* b = nullptr;
    };
    std::map<std::pair<std::size_t, std::size_t>, Halves> pairs;  // (layer, target) -> tensors
    for (GgufTensorInfo const& t : f.tensors()) {
      auto const [layer, target, is_a] = parse_name(f, t.name);
      if (layer >= shape.num_layers) {
        detail::fail<InvalidArgument>(f.source(), ": tensor '", t.name, "' adapts layer ", layer, " but the model has ",
                                      shape.num_layers, " layers");
      }
      auto& h = pairs[{layer, static_cast<std::size_t>(target)}];
      (is_a ? h.a : h.b) = &t;
    }
    // Check every pair's shapes and types against the model before any tensor is decoded.
    for (auto const& [key, h] : pairs) {
      auto const target = static_cast<LoraTarget>(key.second);
      std::string const base = tensor_name(key.first, target);
      if (h.a == nullptr || h.b == nullptr) {
        detail::fail<FormatError>(f.source(), ": LoRA pair of '", base, "' lacks its ", h.a == nullptr ? "lora_a" : "lora_b",
                                  " tensor");
      }
      std::size_t const in = shape.in(target), out = shape.out(target);
      GgufTensorInfo const& a = *h.a;
      GgufTensorInfo const& b = *h.b;
      auto const shape_of = [](GgufTensorInfo const& t) {
        return detail::message("[", t.dims[3], "][", t.dims[2], "][", t.dims[1], "][", t.dims[0], "]");
      };
      if (a.dims[2] != 1 || a.dims[3] != 1 || a.dims[0] != in) {
        detail::fail<InvalidArgument>(f.source(), ": tensor '", a.name, "' has shape ", shape_of(a), ", expected [rank][", in,
                                      "] for this model");
      }
      if (b.dims[2] != 1 || b.dims[3] != 1 || b.dims[1] != out) {
        detail::fail<InvalidArgument>(f.source(), ": tensor '", b.name, "' has shape ", shape_of(b), ", expected [", out,
                                      "][rank] for this model");
      }
      if (a.dims[1] != b.dims[0]) {
        detail::fail<FormatError>(f.source(), ": tensor '", a.name, "' has rank ", a.dims[1], " but '", b.name, "' has rank ",
                                  b.dims[0]);
      }
      check_type(f, a);
      check_type(f, b);
    }
    for (auto const& [key, h] : pairs) {
      ad.set(key.first, static_cast<LoraTarget>(key.second), static_cast<std::size_t>(h.a->dims[1]), decode(f, *h.a),
             decode(f, *h.b));
    }
    return ad;
  }

  /// Opens and reads a GGUF LoRA adapter file (see from_gguf).
  [[nodiscard]] static LoraAdapter from_file(std::string const& path, LlamaConfig const& model) {
    return from_gguf(GgufFile::open(path), model);
  }

  /// The pair of (layer, target), or nullptr when that projection is not adapted (or layer is past the shape).
  [[nodiscard]] LoraPair const* pair(std::size_t layer, LoraTarget target) const noexcept {
    if (layer >= layers_.size()) return nullptr;
    auto const& p = layers_[layer][static_cast<std::size_t>(target)];
    return p ? &*p : nullptr;
  }
  [[nodiscard]] LoraShape const& shape() const noexcept { return shape_; }
  [[nodiscard]] float alpha() const noexcept { return alpha_; }
  /// Names these contents: unique to this adapter, renewed by every `set`, shared by its copies (which hold
  /// the same values). A model that keeps the adapter in its space's memory recognizes it by this.
  [[nodiscard]] std::uint64_t revision() const noexcept { return revision_; }
  /// Adapted projections over all layers.
  [[nodiscard]] std::size_t num_pairs() const noexcept {
    std::size_t n = 0;
    for (auto const& l : layers_) {
      for (auto const& p : l) n += p ? 1 : 0;
    }
    return n;
  }

  /// Throws InvalidArgument naming the first projection whose pair does not fit a model of shape `model`
  /// (the tensor, its shape and the expected one).
  void check_fits(LoraShape const& model, std::string_view op) const {
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      for (std::size_t t = 0; t < lora_target_count; ++t) {
        auto const& p = layers_[l][t];
        if (!p) continue;
        auto const target = static_cast<LoraTarget>(t);
        std::string const name = tensor_name(l, target);
        if (l >= model.num_layers) {
          detail::fail<InvalidArgument>(op, ": the adapter adapts '", name, "' but the model has ", model.num_layers, " layers");
        }
        if (p->in != model.in(target)) {
          detail::fail<InvalidArgument>(op, ": '", name, ".lora_a' has shape [", p->rank, "][", p->in, "], the model needs [",
                                        p->rank, "][", model.in(target), "]");
        }
        if (p->out != model.out(target)) {
          detail::fail<InvalidArgument>(op, ": '", name, ".lora_b' has shape [", p->out, "][", p->rank,
                                        "], the model needs [", model.out(target), "][", p->rank, "]");
        }
      }
    }
  }

  /// "blk.N.attn_q.weight": the base-model tensor a pair adapts.
  [[nodiscard]] static std::string tensor_name(std::size_t layer, LoraTarget target) {
    return "blk." + std::to_string(layer) + "." + std::string(lora_target_tensor(target)) + ".weight";
  }

 private:
  struct ParsedName {
    std::size_t layer;
    LoraTarget target;
    bool is_a;
  };

  static bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
  }

  // "blk.<N>.<target>.weight.lora_<a|b>" -> (N, target, a?).
  static ParsedName parse_name(GgufFile const& f, std::string_view name) {
    auto const unknown = [&]() -> ParsedName {
      detail::fail<FormatError>(f.source(), ": tensor '", name,
                                "' is not a LoRA tensor (expected blk.N.{attn_q,attn_k,attn_v,attn_output}.weight.lora_{a,b})");
    };
    bool is_a = false;
    std::string_view base;
    if (ends_with(name, ".lora_a")) {
      is_a = true;
      base = name.substr(0, name.size() - 7);
    } else if (ends_with(name, ".lora_b")) {
      base = name.substr(0, name.size() - 7);
    } else if (ends_with(name, "_norm.weight") || ends_with(name, "_norm.bias")) {
      detail::fail<Unsupported>(f.source(), ": tensor '", name, "' adapts a norm; only attention projections are supported");
    } else {
      return unknown();
    }
    if (base.substr(0, 4) != "blk.") {
      if (base == "token_embd.weight" || base == "output.weight") {
        detail::fail<Unsupported>(f.source(), ": tensor '", name, "' adapts '", base, "'; only attention projections are supported");
      }
      return unknown();
    }
    std::string_view rest = base.substr(4);
    std::size_t digits = 0;
    while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
    if (digits == 0 || digits > 9 || digits >= rest.size() || rest[digits] != '.') return unknown();
    std::size_t layer = 0;
    for (std::size_t i = 0; i < digits; ++i) layer = layer * 10 + static_cast<std::size_t>(rest[i] - '0');
    std::string_view const weight = rest.substr(digits + 1);
    for (std::size_t t = 0; t < lora_target_count; ++t) {
      auto const target = static_cast<LoraTarget>(t);
      if (weight == std::string(lora_target_tensor(target)) + ".weight") return {layer, target, is_a};
    }
    for (std::string_view const other : {"ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"}) {
      if (weight == other) {
        detail::fail<Unsupported>(f.source(), ": tensor '", name, "' adapts an FFN weight; only attention projections are supported");
      }
    }
    return unknown();
  }

  // Values of a [rank][n] (or [n][rank]) matrix; InvalidArgument when the count overflows, before anything
  // is sized by it.
  static std::size_t values_of(std::size_t rank, std::size_t n, std::string const& name) {
    auto const v = detail::checked_mul(rank, n);
    if (!v || *v > std::vector<float>().max_size()) {
      detail::fail<InvalidArgument>("LoraAdapter: ", name, " rank = ", rank, " x ", n, " values overflows");
    }
    return static_cast<std::size_t>(*v);
  }

  // The storage types dequantize_row decodes.
  static void check_type(GgufFile const& f, GgufTensorInfo const& t) {
    if (!weight_type_from_id(static_cast<std::uint32_t>(t.type))) {
      detail::fail<Unsupported>(f.source(), ": tensor '", t.name, "' has type ", ggml_type_name(t.type), " (id ",
                                static_cast<std::uint32_t>(t.type), "), not a LoRA type (supported: ",
                                supported_weight_types, ")");
    }
  }

  static std::vector<float> decode(GgufFile const& f, GgufTensorInfo const& t) {
    std::vector<float> v(static_cast<std::size_t>(t.num_elements()));  // [dims[1]][dims[0]]
    std::size_t const row = static_cast<std::size_t>(t.dims[0]);
    auto const bytes = f.tensor_data(t);
    std::size_t const rb = static_cast<std::size_t>(t.row_bytes());
    for (std::size_t r = 0; r < static_cast<std::size_t>(t.num_rows()); ++r) {
      dequantize_row(t.type, bytes.subspan(r * rb, rb), std::span<float>(v).subspan(r * row, row));
    }
    return v;
  }

  static std::uint64_t next_revision() noexcept {
    static std::atomic<std::uint64_t> counter{0};
    return counter.fetch_add(1, std::memory_order_relaxed) + 1;
  }

  LoraShape shape_;
  float alpha_;
  std::uint64_t revision_ = next_revision();
  std::vector<std::array<std::optional<LoraPair>, lora_target_count>> layers_;  // [num_layers][q, k, v, o]
};

}  // namespace piecrust
