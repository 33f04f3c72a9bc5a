#pragma once
// piecrust's Kokkos adapter: any Kokkos execution space as a piecrust ExecutionSpace, with
// rms_norm, fused_add_rms_norm and rope on every Kokkos space (team / MDRange patterns) and sample and
// the probes on Kokkos spaces with host-accessible memory (RangePolicy over rows).
// Supported: Kokkos 3.4 and later (tested with Debian's Trilinos 13.2 Kokkos 3.4.1, Serial space).
// Call Kokkos::initialize (or hold a Kokkos::ScopeGuard) before using a Kokkos space.

#include "piecrust/backends/kokkos/rms_norm.hpp"
#include "piecrust/backends/kokkos/rope.hpp"
#include "piecrust/backends/kokkos/sample.hpp"
#include "piecrust/backends/kokkos/space.hpp"
