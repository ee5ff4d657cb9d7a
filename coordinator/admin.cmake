# The admin side of sagad (issue 7): metrics registry, admin HTTP server,
# admin API handlers over a source interface, and their PostgreSQL source.
# No engine code here: sagad links saga_admin and plugs it into its loop.
add_library(saga_admin STATIC
  ${CMAKE_CURRENT_LIST_DIR}/admin_buf.c
  ${CMAKE_CURRENT_LIST_DIR}/metrics.c
  ${CMAKE_CURRENT_LIST_DIR}/admin_http.c
  ${CMAKE_CURRENT_LIST_DIR}/admin_api.c)
target_include_directories(saga_admin PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(saga_admin
  PUBLIC saga_defs PkgConfig::LIBUV PkgConfig::CJSON
  PRIVATE saga_common saga_warnings m)

# admin_pg: the saga reads (GET /sagas, GET /sagas/{id}) over saga_index
# and the event store, on the libuv thread pool.
add_library(saga_admin_pg STATIC ${CMAKE_CURRENT_LIST_DIR}/admin_pg.c)
target_include_directories(saga_admin_pg PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(saga_admin_pg
  PUBLIC saga_admin saga_core saga_eventstore PkgConfig::LIBPQ
  PRIVATE saga_warnings)

# admin_ui: the saga timeline page, its files embedded as C arrays.
set(admin_web_files ${CMAKE_CURRENT_LIST_DIR}/web/index.html
    ${CMAKE_CURRENT_LIST_DIR}/web/app.js ${CMAKE_CURRENT_LIST_DIR}/web/app.css)
add_custom_command(
  OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/admin_web.c
  COMMAND ${CMAKE_COMMAND} -DOUT=${CMAKE_CURRENT_BINARY_DIR}/admin_web.c
          "-DINPUTS=${admin_web_files}"
          -P ${CMAKE_CURRENT_LIST_DIR}/web/embed.cmake
  DEPENDS ${admin_web_files} ${CMAKE_CURRENT_LIST_DIR}/web/embed.cmake
  COMMENT "Embedding the timeline page"
  VERBATIM)
add_library(saga_admin_ui STATIC ${CMAKE_CURRENT_LIST_DIR}/admin_ui.c
            ${CMAKE_CURRENT_BINARY_DIR}/admin_web.c)
target_include_directories(saga_admin_ui PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(saga_admin_ui PUBLIC saga_admin PRIVATE saga_warnings)

# otlp: the OTLP/HTTP JSON trace exporter on the loop.
add_library(saga_otlp STATIC ${CMAKE_CURRENT_LIST_DIR}/otlp.c)
target_include_directories(saga_otlp PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(saga_otlp PUBLIC saga_admin PkgConfig::LIBUV
                      PRIVATE saga_common saga_warnings)

# observe: sagad's glue between the engine's hooks and the pieces above
# (metrics, admin endpoint and its PostgreSQL reads, timeline page, spans).
add_library(saga_observe STATIC ${CMAKE_CURRENT_LIST_DIR}/observe.c)
target_include_directories(saga_observe PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(saga_observe
  PUBLIC saga_admin saga_admin_pg saga_admin_ui saga_otlp saga_shell
  PRIVATE saga_warnings)
if(TARGET sagad)
  target_link_libraries(sagad PRIVATE saga_observe)
endif()
if(TARGET sagad-faults)
  target_link_libraries(sagad-faults PRIVATE saga_observe)
endif()
