# tests/stream/kafka.cmake — the suite's real Kafka broker as a CTest fixture: started once per
# ctest run (deploy/kafka/kafka-local.sh in build/kafka-test) before the tests that need a
# broker, stopped after them. SR_TEST_KAFKA=real|mock|auto and SR_TEST_BOOTSTRAP choose the
# broker (kafka_fixture.sh, kafka_test_util.h). sr_kafka_test(TARGET) marks a test as one.
set(SR_KAFKA_TEST_DIR ${CMAKE_BINARY_DIR}/kafka-test)
add_test(NAME kafka_broker_start
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/kafka_fixture.sh start ${SR_KAFKA_TEST_DIR})
add_test(NAME kafka_broker_stop
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/kafka_fixture.sh stop ${SR_KAFKA_TEST_DIR})
# The first start fetches Apache Kafka's jars with Maven (a cold cache takes minutes).
set_tests_properties(kafka_broker_start PROPERTIES FIXTURES_SETUP kafka TIMEOUT 900)
set_tests_properties(kafka_broker_stop PROPERTIES FIXTURES_CLEANUP kafka TIMEOUT 120)

function(sr_kafka_test name)
  if(TARGET ${name})
    target_compile_definitions(${name} PRIVATE
      SR_KAFKA_ENV_FILE="${SR_KAFKA_TEST_DIR}/bootstrap.env"
      SR_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  endif()
  # One broker test at a time: each runs several runtimes beside the broker's JVM on the CI
  # machine's 2 cores; two at once would test the scheduler, not the runtime.
  set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED kafka RESOURCE_LOCK kafka_runtimes)
endfunction()
