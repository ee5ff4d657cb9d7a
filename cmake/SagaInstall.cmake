# Install rules: the programs, the public headers (the two libraries,
# static archive and versioned shared library each, install themselves:
# saga_add_product_library in SagaBuild.cmake), their pkg-config
# files, a CMake package (find_package(Saga CONFIG) -> Saga::client,
# Saga::eventstore), the SQL migrations and the definition schema.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(SAGA_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/Saga)

# Called once every target exists (end of the top-level CMakeLists.txt).
function(saga_install_finish)
  install(TARGETS sagad sagactl saga-es-migrate saga-es-archive
          RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(FILES ${PROJECT_SOURCE_DIR}/include/saga/client.h
                ${PROJECT_SOURCE_DIR}/include/saga/protocol.h
                ${PROJECT_SOURCE_DIR}/include/saga/eventstore.h
                ${PROJECT_BINARY_DIR}/include/saga/version.h
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/saga)
  # The .pc files find the prefix from their own place, so an install
  # with `cmake --install --prefix DIR` anywhere is consistent.
  file(RELATIVE_PATH SAGA_PC_PREFIX_REL
       ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
  string(REGEX REPLACE "/$" "" SAGA_PC_PREFIX_REL "${SAGA_PC_PREFIX_REL}")
  foreach(pc saga-client saga-eventstore)
    configure_file(${PROJECT_SOURCE_DIR}/cmake/install/${pc}.pc.in
                   ${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc @ONLY)
    install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/${pc}.pc
            DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
  endforeach()
  configure_package_config_file(
    ${PROJECT_SOURCE_DIR}/cmake/install/SagaConfig.cmake.in
    ${PROJECT_BINARY_DIR}/cmake/SagaConfig.cmake
    INSTALL_DESTINATION ${SAGA_CMAKE_DIR}
    PATH_VARS CMAKE_INSTALL_INCLUDEDIR CMAKE_INSTALL_LIBDIR)
  write_basic_package_version_file(
    ${PROJECT_BINARY_DIR}/cmake/SagaConfigVersion.cmake
    VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
  install(FILES ${PROJECT_BINARY_DIR}/cmake/SagaConfig.cmake
                ${PROJECT_BINARY_DIR}/cmake/SagaConfigVersion.cmake
          DESTINATION ${SAGA_CMAKE_DIR})
  # What a deployment needs besides the programs: the event store's and
  # the coordinator's SQL (sagad applies them itself; a DBA may read or
  # apply them), the definition schema and the wire schema.
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/eventstore/migrations/
          DESTINATION ${CMAKE_INSTALL_DATADIR}/saga/sql/eventstore
          FILES_MATCHING PATTERN "*.sql")
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/coordinator/io/sql/
          DESTINATION ${CMAKE_INSTALL_DATADIR}/saga/sql/coordinator
          FILES_MATCHING PATTERN "*.sql")
  # Man pages made from the programs' own --help and --version (one
  # source: the text a user sees with --help), by help2man at build time.
  find_program(HELP2MAN help2man)
  if(HELP2MAN)
    set(man_pages)
    foreach(spec "sagad;8;the saga coordinator daemon"
                 "sagactl;1;operate the saga coordinator: start, inspect, replay, retry, resolve and cancel sagas"
                 "saga-es-migrate;8;apply the saga event store's schema migrations"
                 "saga-es-archive;8;archive and drop the saga event store's finished old eras")
      list(GET spec 0 prog)
      list(GET spec 1 sec)
      list(GET spec 2 what)
      set(page ${PROJECT_BINARY_DIR}/man/${prog}.${sec})
      add_custom_command(OUTPUT ${page}
        COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
        COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=0
                ${HELP2MAN} --no-info --section=${sec}
                "--name=${what}" --output=${page} $<TARGET_FILE:${prog}>
        DEPENDS ${prog}
        COMMENT "man page ${prog}(${sec})"
        VERBATIM)
      list(APPEND man_pages ${page})
      install(FILES ${page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${sec})
    endforeach()
    add_custom_target(man_pages ALL DEPENDS ${man_pages})
  else()
    message(STATUS "help2man not found: no man pages (scripts/deps.sh installs it)")
  endif()

  # bash completion for sagactl, made by sagactl from its own tables.
  set(completion ${PROJECT_BINARY_DIR}/completion/sagactl)
  add_custom_command(OUTPUT ${completion}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/completion
    COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=0
            sh -c "$<TARGET_FILE:sagactl> completion bash > ${completion}"
    DEPENDS sagactl
    COMMENT "bash completion for sagactl"
    VERBATIM)
  add_custom_target(sagactl_completion ALL DEPENDS ${completion})
  install(FILES ${completion}
          DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)

  # The systemd unit, its ExecStart pointing at the installed sagad.
  configure_file(${PROJECT_SOURCE_DIR}/deploy/systemd/sagad.service
                 ${PROJECT_BINARY_DIR}/systemd/sagad.service @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/systemd/sagad.service
          DESTINATION lib/systemd/system)
  install(FILES ${PROJECT_SOURCE_DIR}/schemas/saga-definition.schema.json
                ${PROJECT_SOURCE_DIR}/schemas/saga.proto
          DESTINATION ${CMAKE_INSTALL_DATADIR}/saga/schemas)
endfunction()
