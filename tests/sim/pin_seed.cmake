# Run one pinned seed (a bug the simulator found, fixed): it must pass, and
# its trace must still show the scenario (MARKER, a regular expression), or
# a change to the simulator has re-rolled the seed and the pin guards
# nothing any more -- then find the scenario's new seed and pin that.
execute_process(COMMAND ${SIM} --seed ${SEED} --sagas 8 --verbose
                OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  string(REGEX MATCH "seed ${SEED}: [^\n]*" verdict "${out}")
  message(FATAL_ERROR "pinned seed ${SEED} fails again: ${verdict}\n"
                      "replay: ${SIM} --seed ${SEED} --verbose")
endif()
if(DEFINED MARKER AND NOT out MATCHES "${MARKER}")
  message(FATAL_ERROR "pinned seed ${SEED} no longer shows its scenario "
                      "(\"${MARKER}\"): the simulator re-rolled it")
endif()
message(STATUS "seed ${SEED} passes and shows \"${MARKER}\"")
