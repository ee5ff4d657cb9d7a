# ctest driver of one libFuzzer run (SAGA_FUZZ=ON): fresh scratch corpus
# seeded from the checked-in one, SECONDS of fuzzing, failure on any crash.
# cmake -DFUZZER=... -DSEEDS=dir -DWORK=dir -DSECONDS=n -P run_fuzzer.cmake
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts)
execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048
          -print_final_stats=1 -artifact_prefix=${WORK}/artifacts/
          ${WORK}/corpus ${SEEDS}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "fuzzer exited with ${rc}; crashing inputs in ${WORK}/artifacts")
endif()
