# The coordinator's pure core: definitions, the saga state machine and the
# event codec. No I/O libraries: the daemon shell and the simulator both
# link this same library.
add_library(saga_core STATIC
  ${CMAKE_CURRENT_LIST_DIR}/core_error.c
  ${CMAKE_CURRENT_LIST_DIR}/definition.c
  ${CMAKE_CURRENT_LIST_DIR}/saga_machine.c
  ${CMAKE_CURRENT_LIST_DIR}/saga_codec.c)
target_include_directories(saga_core PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(saga_core
  PUBLIC saga_defs saga_proto PkgConfig::CJSON
  PRIVATE saga_warnings m)
