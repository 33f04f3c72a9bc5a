# Helpers for the backend targets (piecrust::cuda, piecrust::hip, piecrust::kokkos).

# piecrust_backend_enabled(<var> <setting> <found>): resolves ON / OFF / AUTO against whether the backend's
# compiler or library was found; ON without it is a configure error naming what is missing.
function(piecrust_backend_enabled out setting found what)
  string(TOUPPER "${setting}" setting)
  if(setting STREQUAL "OFF")
    set(${out} FALSE PARENT_SCOPE)
  elseif(setting STREQUAL "ON")
    if(NOT found)
      message(FATAL_ERROR "piecrust: ${what} was requested (ON) but not found")
    endif()
    set(${out} TRUE PARENT_SCOPE)
  else()
    set(${out} ${found} PARENT_SCOPE)
  endif()
endfunction()

# piecrust_backend_target(<name>): INTERFACE target piecrust_<name> (alias piecrust::<name>) with the
# backend's public headers as a header set, linked to piecrust::piecrust, added to the export set.
macro(piecrust_backend_target name)
  add_library(piecrust_${name} INTERFACE)
  add_library(piecrust::${name} ALIAS piecrust_${name})
  set_target_properties(piecrust_${name} PROPERTIES EXPORT_NAME ${name})
  file(GLOB_RECURSE _pb_headers CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/include/piecrust/*.hpp")
  target_sources(piecrust_${name} INTERFACE
    FILE_SET HEADERS BASE_DIRS "${CMAKE_CURRENT_SOURCE_DIR}/include" FILES ${_pb_headers})
  target_link_libraries(piecrust_${name} INTERFACE piecrust)
  list(APPEND piecrust_export_targets piecrust_${name})
endmacro()
