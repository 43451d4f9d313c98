# `losatok features` on a real recording, with a config override, then `inspect` of the output.
set(out ${WORKDIR}/cli_features_speech.safetensors)
execute_process(COMMAND ${BIN} --log-level warn features --frontend dasheng ${AUDIO} ${out} frontend.dasheng.n_mels=32
  RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "features failed (${rc}): ${err}")
endif()
execute_process(COMMAND ${BIN} --log-level warn inspect ${out} RESULT_VARIABLE rc OUTPUT_VARIABLE listing)
if(NOT listing MATCHES "mel\tF32\t\\[32, [0-9]+\\]" OR NOT listing MATCHES "# frontend: dasheng")
  message(FATAL_ERROR "unexpected features output: ${listing}")
endif()
execute_process(COMMAND ${BIN} --log-level warn features ${AUDIO} ${out} frontend.dasheng.n_mels=zero
  RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "frontend.dasheng.n_mels")
  message(FATAL_ERROR "a bad override must fail naming the key, got (${rc}): ${err}")
endif()
