# Run one seed twice: the outputs must be the same bytes (and the run must
# pass).
foreach(i 1 2)
  execute_process(COMMAND ${SIM} --seed ${SEED} --sagas 8 --verbose
                  OUTPUT_VARIABLE out${i} RESULT_VARIABLE rc${i})
  if(NOT rc${i} EQUAL 0)
    message(FATAL_ERROR "seed ${SEED} failed (run ${i}):\n${out${i}}")
  endif()
endforeach()
if(NOT out1 STREQUAL out2)
  message(FATAL_ERROR "seed ${SEED} did not replay byte for byte")
endif()
string(LENGTH "${out1}" n)
message(STATUS "seed ${SEED} replayed identically (${n} bytes)")
