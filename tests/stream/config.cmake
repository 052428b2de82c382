# tests/stream/config.cmake — `streamrec config -c FILE` and the start-up checks of run and
# replay: each bad value is one line naming key, value and allowed values (DESIGN §5).
add_test(NAME test_config_cli
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_config.sh $<TARGET_FILE:streamrec>
                 ${CMAKE_SOURCE_DIR}/tests/data/gru4rec-small)
set_tests_properties(test_config_cli PROPERTIES TIMEOUT 60)
# test_cli_args: the one argument parser: unknown option, missing value and bad number in one
# wording over every command.
add_test(NAME test_cli_args
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_cli_args.sh $<TARGET_FILE:streamrec>)
set_tests_properties(test_cli_args PROPERTIES TIMEOUT 60)
