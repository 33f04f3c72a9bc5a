# Third-party libraries that piecrust's host headers use. Shared by the build and by the installed
# piecrustConfig.cmake, so that a consumer finds exactly what the build used.
#
#   OpenBLAS (host f32 GEMM)           Debian: libopenblas-dev   -> BLAS::BLAS
#   PCRE2 8-bit (tokenizer regexes)    Debian: libpcre2-dev      -> PkgConfig::PCRE2
#   SQLite 3 (persistent KV Store)     Debian: libsqlite3-dev    -> SQLite::SQLite3

macro(piecrust_find_host_dependencies)
  set(BLA_VENDOR OpenBLAS)
  find_package(BLAS REQUIRED)
  find_package(SQLite3 REQUIRED)
  find_package(PkgConfig REQUIRED)
  if(NOT TARGET PkgConfig::PCRE2)
    pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET GLOBAL libpcre2-8)
  endif()
endmacro()

function(piecrust_link_host_dependencies target)
  piecrust_find_host_dependencies()
  target_link_libraries(${target} INTERFACE BLAS::BLAS SQLite::SQLite3 PkgConfig::PCRE2)
endfunction()
