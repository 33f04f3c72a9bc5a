#pragma once
// Tree-of-thought search (Yao et al. 2023, "Tree of Thoughts"): expand every kept node into `breadth` sampled
// "thoughts" of `thought_len` tokens, evaluate each path, keep the best `keep`, repeat for `depth` levels.
//
// Every expansion is a fork of its parent (the shared prefix is never recomputed) and all expansions of a
// level run under Engine::when_all, so a level costs about `thought_len` batched steps whatever its width.
// The evaluation here is the path's mean token log-probability under the model (a self-evaluation prompt
// would be another fork and one more pass per node; the search skeleton is the same).

#include "common/scoring.hpp"

#include <piecrust/runtime.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace piecrust::examples {

struct TreeOfThoughtOptions {
  std::size_t breadth = 3;      // thoughts sampled per kept node
  std::size_t keep = 2;         // nodes kept per level
  std::size_t depth = 3;        // levels
  std::size_t thought_len = 8;  // tokens per thought
  SamplerSpec sampler = samplers::top_p(TopP{0.9f}, Temperature{1.0f});
  std::vector<std::uint32_t> thought_end;  // ids that end a thought early (e.g. every token holding a newline)
  std::vector<std::uint32_t> eos;          // ids that end the whole path: such a node is not expanded again
};

struct Thought {
  bool complete = false;  // the last thought ended with an eos id
  std::vector<std::vector<std::uint32_t>> steps;  // the thoughts along the path, root first
  std::vector<double> logprobs;                   // every token's log-probability along the path
  [[nodiscard]] double score() const {
    double s = 0;
    for (double const l : logprobs) s += l;
    return logprobs.empty() ? 0.0 : s / static_cast<double>(logprobs.size());
  }
  [[nodiscard]] std::vector<std::uint32_t> tokens() const {
    std::vector<std::uint32_t> t;
    for (auto const& s : steps) t.insert(t.end(), s.begin(), s.end());
    return t;
  }
};

struct TreeOfThoughtResult {
  std::vector<Thought> leaves;  // the kept paths of the last level, best first
  std::size_t nodes_expanded = 0;
};

namespace detail {
template <class M>
Task<ScoredGeneration> expand(Context<M>& node, SamplerSpec sampler, StopCondition stop) {
  co_return co_await generate_scored(node, std::move(sampler), std::move(stop));
}
}  // namespace detail

template <class M>
Task<TreeOfThoughtResult> tree_of_thought(Engine<M>& engine, Context<M>& root, std::span<std::uint32_t const> prompt,
                                          TreeOfThoughtOptions opt) {
  struct Node {
    Context<M> ctx;
    Thought path;
  };
  co_await prefill_all_but_last(root, prompt);
  std::vector<Node> frontier;
  frontier.push_back({root.fork(), Thought{}});
  TreeOfThoughtResult result;
  std::vector<std::uint32_t> ends = opt.thought_end;
  ends.insert(ends.end(), opt.eos.begin(), opt.eos.end());
  StopCondition const stop = ends.empty() ? max_len(opt.thought_len) : max_len(opt.thought_len) || ends_with_any(ends);
  for (std::size_t level = 0; level < opt.depth; ++level) {
    // Expand: `breadth` forks of every open frontier node, all generating together. Complete paths stay as
    // they are and keep competing.
    std::vector<Node> children, complete;
    for (Node& n : frontier) {
      if (n.path.complete) {
        complete.push_back(std::move(n));
        continue;
      }
      for (std::size_t b = 0; b < opt.breadth; ++b) children.push_back({n.ctx.fork(), n.path});
    }
    std::vector<Task<ScoredGeneration>> work;
    for (Node& c : children) work.push_back(detail::expand(c.ctx, opt.sampler, stop));
    auto const thoughts = co_await engine.when_all(std::move(work));
    for (std::size_t i = 0; i < children.size(); ++i) {
      Thought& path = children[i].path;
      path.steps.push_back(thoughts[i].tokens);
      path.logprobs.insert(path.logprobs.end(), thoughts[i].logprobs.begin(), thoughts[i].logprobs.end());
      path.complete = std::find(opt.eos.begin(), opt.eos.end(), thoughts[i].tokens.back()) != opt.eos.end();
    }
    result.nodes_expanded += children.size();
    for (Node& n : complete) children.push_back(std::move(n));
    // Evaluate and prune: the best `keep` paths survive; the others' contexts (and pages) are released.
    std::stable_sort(children.begin(), children.end(),
                     [](Node const& a, Node const& b) { return a.path.score() > b.path.score(); });
    if (children.size() > opt.keep) children.erase(children.begin() + static_cast<std::ptrdiff_t>(opt.keep), children.end());
    frontier = std::move(children);
  }
  for (Node& n : frontier) result.leaves.push_back(std::move(n.path));
  co_return result;
}

}  // namespace piecrust::examples
