# tests/stream/cli.cmake — the one argument parser (stream/cli/args.c): unknown option, missing
# value and bad number in one wording over every command.
add_test(NAME test_cli_args
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/test_cli_args.sh $<TARGET_FILE:streamrec>)
set_tests_properties(test_cli_args PROPERTIES TIMEOUT 60)
