# tests/stream/config.cmake — `streamrec config -c FILE` and the start-up checks of run and
# replay: each bad value is one line naming key, value and allowed values (DESIGN §5).
add_test(NAME test_config_cli
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_config.sh $<TARGET_FILE:streamrec>
                 ${CMAKE_SOURCE_DIR}/tests/data/gru4rec-small)
set_tests_properties(test_config_cli PROPERTIES TIMEOUT 60)
