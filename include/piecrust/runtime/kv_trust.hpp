#pragma once
// KvTrust: whether K/V read from a store may be shared with pages other contexts computed.
//
// An exported entry carries K/V bytes that nothing can check short of recomputing them. By default imported
// pages stay private to the importing context and its forks: a forged entry that claims a common prefix can
// mislead only the program that chose to import it, never a context that computed that prefix itself.

namespace piecrust {

enum class KvTrust {
  /// Imported pages are neither matched to nor found by other contexts' pages (the default).
  untrusted,
  /// The store holds only entries this deployment exported itself (nobody else can write to it): its pages
  /// join content-addressed sharing as if this engine had computed them.
  trusted,
};

}  // namespace piecrust
