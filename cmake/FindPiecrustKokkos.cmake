# Finds Kokkos for piecrust's Kokkos adapter and provides the imported target piecrust_kokkos_core.
#
# First tries Kokkos' own CMake package. Debian's libtrilinos-kokkos-dev (Kokkos 3.4 inside Trilinos 13)
# ships a KokkosConfig.cmake whose include path points at a folder that does not exist, so when that
# package is missing or broken we look in the real locations: headers under the Trilinos include
# folder (Kokkos_Core.hpp) and the library trilinos_kokkoscore.
#
# Sets PiecrustKokkos_FOUND, PiecrustKokkos_INCLUDE_DIR, PiecrustKokkos_LIBRARY.

include(FindPackageHandleStandardArgs)

if(NOT TARGET piecrust_kokkos_core)
  find_package(Kokkos QUIET CONFIG)
  set(_pk_config_ok FALSE)
  if(Kokkos_FOUND AND TARGET Kokkos::kokkoscore)
    get_target_property(_pk_inc Kokkos::kokkoscore INTERFACE_INCLUDE_DIRECTORIES)
    set(_pk_config_ok TRUE)
    if(_pk_inc)
      foreach(_d IN LISTS _pk_inc)
        if(NOT _d MATCHES "^\\$<" AND NOT EXISTS "${_d}")
          set(_pk_config_ok FALSE)  # the Debian package's dangling include path
        endif()
      endforeach()
    endif()
  endif()

  if(_pk_config_ok)
    add_library(piecrust_kokkos_core INTERFACE IMPORTED GLOBAL)
    target_link_libraries(piecrust_kokkos_core INTERFACE Kokkos::kokkoscore)
    set(PiecrustKokkos_INCLUDE_DIR "<from Kokkos config>")
    set(PiecrustKokkos_LIBRARY "Kokkos::kokkoscore")
  else()
    find_path(PiecrustKokkos_INCLUDE_DIR Kokkos_Core.hpp
              PATH_SUFFIXES trilinos kokkos include/trilinos)
    find_library(PiecrustKokkos_LIBRARY NAMES kokkoscore trilinos_kokkoscore)
    if(PiecrustKokkos_INCLUDE_DIR AND PiecrustKokkos_LIBRARY)
      add_library(piecrust_kokkos_core UNKNOWN IMPORTED GLOBAL)
      set_target_properties(piecrust_kokkos_core PROPERTIES
        IMPORTED_LOCATION "${PiecrustKokkos_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${PiecrustKokkos_INCLUDE_DIR}")
      find_package(Threads REQUIRED)
      target_link_libraries(piecrust_kokkos_core INTERFACE Threads::Threads ${CMAKE_DL_LIBS})
    endif()
  endif()
endif()

find_package_handle_standard_args(PiecrustKokkos REQUIRED_VARS PiecrustKokkos_INCLUDE_DIR PiecrustKokkos_LIBRARY)
