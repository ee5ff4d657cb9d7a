# Fail when PROGRAM (linked with --no-as-needed) has a NEEDED entry for one
# of FORBIDDEN (library name prefixes: librdkafka, libpq, libuv).
execute_process(COMMAND ${READELF} -d ${PROGRAM}
                OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "could not read the dynamic section of ${PROGRAM}")
endif()
string(REGEX MATCHALL "\\(NEEDED\\)[^[]*\\[([^]]+)\\]" entries "${out}")
if(NOT entries)
  message(FATAL_ERROR "${PROGRAM} has no NEEDED entry: not a dynamic "
                      "program, so this check would prove nothing")
endif()
set(bad "")
foreach(e ${entries})
  string(REGEX REPLACE ".*\\[([^]]+)\\]" "\\1" lib "${e}")
  foreach(f ${FORBIDDEN})
    if(lib MATCHES "^${f}[.-]")
      list(APPEND bad ${lib})
    endif()
  endforeach()
endforeach()
if(bad)
  message(FATAL_ERROR "${PROGRAM} links ${bad}: a pure library's link "
          "closure holds an I/O library (docs/internals/layout.md)")
endif()
message(STATUS "${PROGRAM}: no NEEDED entry of ${FORBIDDEN}")
