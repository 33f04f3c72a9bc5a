#pragma once
// piecrust's Kokkos adapter: any Kokkos execution space as a piecrust ExecutionSpace.
// Supported: Kokkos 3.4 and later (tested with Debian's Trilinos 13.2 Kokkos, Serial space).
#include <Kokkos_Core.hpp>
