# tests/stream/run.cmake — the online runtime and topic replay on the suite's broker (a real
# Kafka, or librdkafka's in-process mock: kafka.cmake); the runtimes under test are `streamrec`
# child processes. test_run: the runtime's contract; test_cluster: what only a real broker can
# show (a consumer group of three, SASL/SCRAM and ACLs, a broker restart).
if(TARGET sr_stream)
  sr_add_test(test_run SOURCES test_run.c LIBS sr_mock_broker PkgConfig::RDKAFKA PkgConfig::JANSSON m)
  add_dependencies(test_run streamrec)
  set_tests_properties(test_run PROPERTIES TIMEOUT 900)
  sr_kafka_test(test_run)
endif()
if(TARGET sr_stream)
  sr_add_test(test_cluster SOURCES test_cluster.c LIBS sr_mock_broker PkgConfig::RDKAFKA PkgConfig::JANSSON m
              Threads::Threads)
  add_dependencies(test_cluster streamrec)
  set_tests_properties(test_cluster PROPERTIES TIMEOUT 900)
  sr_kafka_test(test_cluster)
endif()
# test_changelog: the state changelog's log and restore (long changelog, tombstones, a local
# store the changelog does not describe, a healthy checkpoint) on the suite's broker.
if(TARGET sr_stream)
  sr_add_test(test_changelog SOURCES test_changelog.c LIBS sr_mock_broker PkgConfig::RDKAFKA
              PkgConfig::JANSSON m)
  set_tests_properties(test_changelog PROPERTIES TIMEOUT 300)
  sr_kafka_test(test_changelog)
endif()
# test_run_registry: `run` with a Schema Registry (avro-confluent in and out) on the suite's
# broker and its real registry (tests/schemas/registry_fixture.sh); skips without a registry.
if(TARGET sr_stream AND TARGET test_registry)
  sr_add_test(test_run_registry SOURCES test_run_registry.c LIBS sr_mock_broker PkgConfig::RDKAFKA
              PkgConfig::JANSSON m)
  add_dependencies(test_run_registry streamrec)
  target_compile_definitions(test_run_registry PRIVATE
    SR_REGISTRY_ENV_FILE="${CMAKE_BINARY_DIR}/registry-test/registry.env")
  set_tests_properties(test_run_registry PROPERTIES TIMEOUT 600)
  sr_kafka_test(test_run_registry)
  set_tests_properties(test_run_registry PROPERTIES FIXTURES_REQUIRED "kafka;schema_registry")
endif()
