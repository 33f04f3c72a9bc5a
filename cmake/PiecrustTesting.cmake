# Helpers for piecrust's own tests, examples and benchmarks.

# piecrust_target_options(<target>): warnings (-Wall -Wextra [-Werror]) and, with PIECRUST_SANITIZE,
# AddressSanitizer + UndefinedBehaviorSanitizer with no recovery (any finding fails the test); with
# PIECRUST_SANITIZE_THREAD, ThreadSanitizer (run with TSAN_OPTIONS=halt_on_error=1 so a race fails the test).
function(piecrust_target_options target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>)
  if(PIECRUST_WERROR)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
  endif()
  if(PIECRUST_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize-recover=all
                                             -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
  if(PIECRUST_SANITIZE_THREAD)
    target_compile_options(${target} PRIVATE -fsanitize=thread -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=thread)
  endif()
endfunction()

# piecrust_add_compile_fail_test(<name> SOURCE <file> REGEX <regex> [LINK <targets...>])
# Adds a ctest that builds <file> and passes only if the build fails with a diagnostic matching <regex>.
# The regex proves the build failed for the intended reason (a violated concept, a static_assert), not
# for a typo. The object target is excluded from `all`, so a normal build stays green.
function(piecrust_add_compile_fail_test name)
  cmake_parse_arguments(arg "" "SOURCE;REGEX" "LINK" ${ARGN})
  set(target compile_fail_${name})
  add_library(${target} OBJECT EXCLUDE_FROM_ALL "${arg_SOURCE}")
  target_link_libraries(${target} PRIVATE piecrust::piecrust ${arg_LINK})
  add_test(NAME compile_fail.${name}
           COMMAND "${CMAKE_COMMAND}" --build "${CMAKE_BINARY_DIR}" --target ${target} --config $<CONFIG>)
  set_tests_properties(compile_fail.${name} PROPERTIES PASS_REGULAR_EXPRESSION "${arg_REGEX}" LABELS compile_fail)
  # A positive control: the same file with PIECRUST_COMPILE_FAIL_CONTROL defined must compile, so that the
  # test cannot pass merely because the file is broken.
  add_library(${target}_control OBJECT "${arg_SOURCE}")
  target_link_libraries(${target}_control PRIVATE piecrust::piecrust ${arg_LINK})
  target_compile_definitions(${target}_control PRIVATE PIECRUST_COMPILE_FAIL_CONTROL=1)
endfunction()
