# With Debian's reference BLAS forced in front of OpenBLAS, start-up must warn loudly.
execute_process(COMMAND ${CMAKE_COMMAND} -E env LD_PRELOAD=${REFBLAS} ${BIN} --log-level info config
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "exit ${rc}: ${err}")
endif()
if(NOT err MATCHES "BLAS reference" OR NOT err MATCHES "40x slower")
  message(FATAL_ERROR "no reference-BLAS warning in: ${err}")
endif()
# And without the preload: no warning.
execute_process(COMMAND ${BIN} --log-level info config RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(err MATCHES "40x slower")
  message(FATAL_ERROR "warned about the BLAS with OpenBLAS in use: ${err}")
endif()
