# cmake -DMODE=find_package|add_subdirectory -DSOURCE_DIR=<piecrust> -DBUILD_DIR=<piecrust build> -DWORK_DIR=<scratch>
#       -DGENERATOR=<generator> -P run_consumer.cmake
# Installs piecrust (find_package mode), then configures, builds and runs tests/packaging/consumer.
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()
set(consumer_args -S "${SOURCE_DIR}/tests/packaging/consumer" -B "${WORK_DIR}/build" -G "${GENERATOR}"
    -DCONSUMER_MODE=${MODE} -DPIECRUST_CUDA=OFF -DPIECRUST_HIP=OFF -DPIECRUST_KOKKOS=OFF)
if(MODE STREQUAL "find_package")
  step("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix")
  list(APPEND consumer_args "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix")
else()
  list(APPEND consumer_args "-DPIECRUST_SOURCE_DIR=${SOURCE_DIR}")
endif()
step("${CMAKE_COMMAND}" ${consumer_args})
step("${CMAKE_COMMAND}" --build "${WORK_DIR}/build")
step("${WORK_DIR}/build/consumer")
