# tests/stream/run.cmake — the online runtime and topic replay against librdkafka's in-process
# mock cluster; the runtimes under test are `streamrec` child processes.
if(TARGET sr_stream)
  sr_add_test(test_run SOURCES test_run.c LIBS PkgConfig::RDKAFKA PkgConfig::JANSSON m)
  add_dependencies(test_run streamrec)
  set_tests_properties(test_run PROPERTIES TIMEOUT 600)
endif()
