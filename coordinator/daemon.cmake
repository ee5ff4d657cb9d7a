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
