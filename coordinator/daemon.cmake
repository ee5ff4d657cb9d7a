# The daemon shell: configuration, logging and the loop/signal/shutdown
# sequencing (saga_daemon_base), and the sagad program. The Kafka and store
# bridges join saga_daemon_base and plug into sagad through daemon.h hooks.
add_library(saga_daemon_base STATIC
  ${CMAKE_CURRENT_LIST_DIR}/config.c
  ${CMAKE_CURRENT_LIST_DIR}/log.c
  ${CMAKE_CURRENT_LIST_DIR}/daemon.c)
target_include_directories(saga_daemon_base PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_compile_definitions(saga_daemon_base PRIVATE
  SAGA_VERSION="${PROJECT_VERSION}")
target_link_libraries(saga_daemon_base
  PUBLIC saga_defs PkgConfig::LIBUV PkgConfig::RDKAFKA PkgConfig::LIBPQ
  PRIVATE saga_warnings)

add_executable(sagad ${CMAKE_CURRENT_LIST_DIR}/main.c)
target_compile_definitions(sagad PRIVATE SAGA_VERSION="${PROJECT_VERSION}")
target_link_libraries(sagad PRIVATE saga_daemon_base saga_warnings)

# The engine (engine.c: saga table, group commit, effects after append,
# timers, recovery) and its wire codec: no I/O, driven through ports.h, so
# the daemon and the simulator link the same library.
add_library(saga_engine STATIC
  ${CMAKE_CURRENT_LIST_DIR}/engine.c
  ${CMAKE_CURRENT_LIST_DIR}/msg_codec.c)
target_include_directories(saga_engine PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(saga_engine
  PUBLIC saga_core saga_daemon_base saga_wire saga_common
  PRIVATE saga_warnings)

# SQL of the coordinator's own tables (coordinator/sql/NNNN_name.sql),
# compiled in as strings and applied at start after the event store's.
file(GLOB sagad_sql_files CONFIGURE_DEPENDS
     ${CMAKE_CURRENT_LIST_DIR}/sql/*.sql)
list(SORT sagad_sql_files)
# an edit to one of them re-runs this (the glob only sees added files)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${sagad_sql_files})
set(sagad_sql_gen "/* Generated from coordinator/sql: do not edit. */\n")
string(APPEND sagad_sql_gen "#include <stddef.h>\n")
set(sagad_sql_table "")
set(sagad_sql_i 0)
foreach(f ${sagad_sql_files})
  file(READ ${f} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(APPEND sagad_sql_gen "static const char s${sagad_sql_i}[] = {${hex} 0};\n")
  string(APPEND sagad_sql_table "s${sagad_sql_i}, ")
  math(EXPR sagad_sql_i "${sagad_sql_i} + 1")
endforeach()
string(APPEND sagad_sql_gen
  "extern const char *const sagad__sql_migrations[];\n"
  "extern const size_t sagad__n_sql_migrations;\n"
  "const char *const sagad__sql_migrations[] = {${sagad_sql_table}NULL};\n"
  "const size_t sagad__n_sql_migrations = ${sagad_sql_i};\n")
file(CONFIGURE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/sagad_sql.c
     CONTENT "${sagad_sql_gen}")

# The real ports: PostgreSQL, Kafka, libuv.
add_library(saga_shell STATIC
  ${CMAKE_CURRENT_LIST_DIR}/store_pg.c
  ${CMAKE_CURRENT_LIST_DIR}/broker_kafka.c
  ${CMAKE_CURRENT_LIST_DIR}/clock_uv.c
  ${CMAKE_CURRENT_BINARY_DIR}/sagad_sql.c)
target_link_libraries(saga_shell
  PUBLIC saga_engine saga_eventstore saga_kafka_loop
  PRIVATE saga_warnings)
target_link_libraries(sagad PRIVATE saga_shell)

# sagad-faults: the same program with compile-time fault points
# (fault_point.h) for the fault tests (tests/faults). Test builds only; the
# product's sagad never contains them. It takes sagad's sources, definitions
# and libraries as they stand at generate time; its own engine objects take
# the place of saga_engine's in the link.
if(SAGA_BUILD_TESTS)
  add_executable(sagad-faults
    ${CMAKE_CURRENT_LIST_DIR}/engine.c
    ${CMAKE_CURRENT_LIST_DIR}/msg_codec.c
    ${CMAKE_CURRENT_LIST_DIR}/fault_point.c)
  target_sources(sagad-faults PRIVATE $<TARGET_PROPERTY:sagad,SOURCES>)
  target_compile_definitions(sagad-faults PRIVATE SAGA_FAULT_POINTS
    $<TARGET_PROPERTY:sagad,COMPILE_DEFINITIONS>)
  target_link_libraries(sagad-faults PRIVATE
    $<TARGET_PROPERTY:sagad,LINK_LIBRARIES>)
endif()
