# tests/fuzz/stream.cmake — libFuzzer harness of the click-log reader behind `gen --from-csv`
# (included by tests/fuzz/CMakeLists.txt). stream/tools/gen.c is compiled into the harness so
# that libFuzzer's coverage sees it.
if(TARGET sr_gen)
  sr_add_fuzz(clicklog SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/clicklog.c
              ${PROJECT_SOURCE_DIR}/stream/tools/gen.c
              ${PROJECT_SOURCE_DIR}/stream/tools/clicklog_prep.c LIBS sr_core sr_schemas m)
  foreach(_t fuzz_clicklog_replay fuzz_clicklog)
    if(TARGET ${_t})
      target_include_directories(${_t} PRIVATE ${PROJECT_SOURCE_DIR}/stream/tools)
    endif()
  endforeach()
endif()
