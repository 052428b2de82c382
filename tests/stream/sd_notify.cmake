# tests/stream/sd_notify.cmake — systemd's notification protocol (stream/runtime/sd_notify.c):
# the exact datagrams received on a unix socket named by NOTIFY_SOCKET. Compiled from the one
# source file, so it needs neither Kafka nor a running systemd.
sr_add_test(test_sd_notify SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_sd_notify.c
            ${PROJECT_SOURCE_DIR}/stream/runtime/sd_notify.c)
target_include_directories(test_sd_notify PRIVATE ${PROJECT_SOURCE_DIR}/stream/runtime)
