# Use ccache when it is installed: rebuilds on 2 cores are the daily tax.
find_program(LOSATOK_CCACHE ccache)
if(LOSATOK_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER "${LOSATOK_CCACHE}")
  # Precompiled headers change the preprocessor output ccache hashes; let it cope.
  set(ENV{CCACHE_SLOPPINESS} "pch_defines,time_macros,include_file_mtime,include_file_ctime")
  message(STATUS "losatok: using ccache ${LOSATOK_CCACHE}")
endif()
