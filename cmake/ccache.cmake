# Use ccache when it is installed: rebuilds on 2 cores are the daily tax. With a precompiled
# header, ccache needs these sloppiness settings at build time and GCC needs -fpch-preprocess.
find_program(LOSATOK_CCACHE ccache)
if(LOSATOK_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      ${LOSATOK_CCACHE})
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    add_compile_options(-fpch-preprocess)
  endif()
  message(STATUS "losatok: using ccache ${LOSATOK_CCACHE}")
endif()
