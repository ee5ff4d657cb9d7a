# The shapes the tree's CMake files would otherwise write again and again:
# a library shipped as a static archive and a shared library, a program a
# user runs, files compiled in as C byte arrays, and a folder whose
# sub-folders each build something.

# saga_add_product_library(<name> SOURCES <src...> [PARTS <targets...>]
#                          [PUBLIC <deps...>] [PRIVATE <deps...>]
#                          [DEFINITIONS <defs...>] [INCLUDES <dirs...>])
#
# Two targets from one list: <name>, the static archive (used inside the
# project and installed), holding the objects of the PARTS libraries too so
# a user links one archive; and <name>_shared, lib<name>.so.N with the
# project's version, built with -Wl,--no-undefined and exporting only what
# the sources mark visible (CMAKE_C_VISIBILITY_PRESET is hidden). Both link
# the PARTS privately and are installed with their namelink.
function(saga_add_product_library name)
  cmake_parse_arguments(L "" ""
                        "SOURCES;PARTS;PUBLIC;PRIVATE;DEFINITIONS;INCLUDES"
                        ${ARGN})
  add_library(${name} STATIC ${L_SOURCES})
  foreach(part ${L_PARTS})
    target_sources(${name} PRIVATE $<TARGET_OBJECTS:${part}>)
  endforeach()
  add_library(${name}_shared SHARED ${L_SOURCES})
  set_target_properties(${name}_shared PROPERTIES
    OUTPUT_NAME ${name}
    VERSION ${PROJECT_VERSION}
    SOVERSION ${PROJECT_VERSION_MAJOR}
    LINK_FLAGS "-Wl,--no-undefined")
  foreach(t ${name} ${name}_shared)
    target_include_directories(${t} PRIVATE ${L_INCLUDES})
    target_compile_definitions(${t} PRIVATE ${L_DEFINITIONS})
    target_link_libraries(${t} PUBLIC ${L_PUBLIC}
                          PRIVATE ${L_PARTS} ${L_PRIVATE} saga_warnings)
  endforeach()
  install(TARGETS ${name} ${name}_shared
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
                  NAMELINK_COMPONENT Development)
endfunction()

# saga_add_program(<name> SOURCES <src...> [LIBS <targets...>]
#                  [OUTPUT_DIR <dir>])
#
# A program built with the project's warnings into OUTPUT_DIR (default
# <build>/bin, where the programs a user runs land; install rules are in
# SagaInstall.cmake).
function(saga_add_program name)
  cmake_parse_arguments(P "" "OUTPUT_DIR" "SOURCES;LIBS" ${ARGN})
  if(NOT P_OUTPUT_DIR)
    set(P_OUTPUT_DIR ${SAGA_BIN_DIR})
  endif()
  add_executable(${name} ${P_SOURCES})
  target_link_libraries(${name} PRIVATE ${P_LIBS} saga_warnings)
  set_target_properties(${name} PROPERTIES
                        RUNTIME_OUTPUT_DIRECTORY ${P_OUTPUT_DIR})
endfunction()

# saga_c_bytes(<var> <file>): the bytes of file as a C initializer list
# ("0x2d,0x2d,..."), for files compiled into a program. Usable from a
# cmake -P script too.
function(saga_c_bytes var file)
  file(READ ${file} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  set(${var} "${hex}" PARENT_SCOPE)
endfunction()

# saga_add_subdirectories(): add every sub-folder of the current source
# folder that has a CMakeLists.txt (tests/, examples/, bench/: one folder
# per area, picked up without a list to keep).
function(saga_add_subdirectories)
  file(GLOB lists CONFIGURE_DEPENDS
       ${CMAKE_CURRENT_SOURCE_DIR}/*/CMakeLists.txt)
  foreach(f ${lists})
    get_filename_component(dir ${f} DIRECTORY)
    add_subdirectory(${dir})
  endforeach()
endfunction()
