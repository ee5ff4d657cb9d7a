# saga_add_test(NAME <name> SOURCES <src...> LABELS <labels...>
#               [LIBS <targets...>] [TIMEOUT <seconds>])
#
# One executable per test unit, registered with ctest under its labels.
# Integration tests get SAGA_PG_CONNINFO / SAGA_KAFKA_BOOTSTRAP from the
# environment that scripts/test.sh sets; they skip (exit 77) without them.
function(saga_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LABELS;LIBS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE saga_warnings saga_defs
                        saga_testsupport PkgConfig::CMOCKA ${T_LIBS})
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  saga_test_properties(${T_NAME} LABELS ${T_LABELS} TIMEOUT ${T_TIMEOUT})
endfunction()

# saga_test_properties(<test> LABELS <labels...> [TIMEOUT <seconds>]
#                      [ENVIRONMENT <VAR=value...>])
#
# What every ctest test of the project carries: its labels, a timeout
# (default 120 s) and exit code 77 meaning skipped.
function(saga_test_properties name)
  cmake_parse_arguments(T "" "TIMEOUT" "LABELS;ENVIRONMENT" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  # Sanitizer and valgrind runs are slower: SAGA_TEST_TIMEOUT_SCALE (read at
  # configure time here, and at run time by the tests' own waits) scales all.
  if(DEFINED ENV{SAGA_TEST_TIMEOUT_SCALE})
    math(EXPR T_TIMEOUT "${T_TIMEOUT} * $ENV{SAGA_TEST_TIMEOUT_SCALE}")
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}"
                       TIMEOUT ${T_TIMEOUT} SKIP_RETURN_CODE 77)
  if(T_ENVIRONMENT)
    set_tests_properties(${name} PROPERTIES ENVIRONMENT "${T_ENVIRONMENT}")
  endif()
endfunction()
