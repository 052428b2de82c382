# tests/stream/tools.cmake — `streamrec gen` and `streamrec broker`.
# test_gen: the generator library, the click-log reader and the gen command (file outputs).
sr_add_test(test_gen SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_gen.c LIBS sr_gen)
add_dependencies(test_gen streamrec)
# test_broker: the broker process with real clients (kcat, python3-confluent-kafka) and
# gen --topic; skipped (exit 77) where kcat is missing.
add_test(NAME test_broker
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_broker.sh $<TARGET_FILE:streamrec>)
set_tests_properties(test_broker PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 180)
# test_notify: `run` under a systemd-like supervisor (sd_notify: READY, WATCHDOG, RELOADING,
# STOPPING; SIGHUP does not stop it), on the embedded mock broker.
add_test(NAME test_notify
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_notify.sh $<TARGET_FILE:streamrec>)
set_tests_properties(test_notify PROPERTIES TIMEOUT 120)
