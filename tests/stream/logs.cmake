# tests/stream/logs.cmake — test_logs: `run` with log.format=json on the embedded mock broker
# (every stderr line a JSON object; a broker going down logs each failure once).
add_test(NAME test_logs
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_logs.sh $<TARGET_FILE:streamrec>)
set_tests_properties(test_logs PROPERTIES TIMEOUT 120)
# test_kafka_glue: the offset wording of log lines and the once-only broker failure (kafka.c,
# no broker needed).
if(TARGET sr_stream)
  sr_add_test(test_kafka_glue SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_kafka_glue.c
              LIBS sr_stream PkgConfig::RDKAFKA)
endif()
