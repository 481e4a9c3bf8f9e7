# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
# cmake -DNVCC=<nvcc> -DSOURCE=<.cu> -DINCLUDE=<include dir> -DARCHS="80;90" -P check_spills.cmake
# Compiles SOURCE for each sm_<arch> with -Xptxas -v and fails when a kernel spills to local
# memory (ptxas: "N bytes spill stores, M bytes spill loads" with N or M > 0) or does not compile.
foreach(_var IN ITEMS NVCC SOURCE INCLUDE ARCHS)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "check_spills.cmake: -D${_var}=... is required")
  endif()
endforeach()
set(_failed "")
set(_kernels 0)
foreach(_arch IN LISTS ARCHS)
  execute_process(
    COMMAND ${NVCC} -std=c++20 --expt-relaxed-constexpr -Werror=all-warnings -O3
            -arch=sm_${_arch} -I${INCLUDE} -c ${SOURCE} -o /dev/null -Xptxas -v
    RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "nvcc failed for sm_${_arch}:\n${_out}\n${_err}")
  endif()
  # ptxas writes per function: "Compiling entry function '<name>' for 'sm_XX'", then
  # "<a> bytes stack frame, <b> bytes spill stores, <c> bytes spill loads".
  string(REPLACE "\n" ";" _lines "${_out}${_err}")
  set(_function "")
  foreach(_line IN LISTS _lines)
    if(_line MATCHES "Compiling entry function '([^']+)'")
      set(_function ${CMAKE_MATCH_1})
      math(EXPR _kernels "${_kernels} + 1")
    elseif(_line MATCHES "([0-9]+) bytes spill stores, ([0-9]+) bytes spill loads")
      if(NOT CMAKE_MATCH_1 EQUAL 0 OR NOT CMAKE_MATCH_2 EQUAL 0)
        list(APPEND _failed "sm_${_arch} ${_function}: ${CMAKE_MATCH_1} bytes spill stores, ${CMAKE_MATCH_2} bytes spill loads")
      endif()
    endif()
  endforeach()
endforeach()
if(_kernels EQUAL 0)
  message(FATAL_ERROR "ptxas reported no entry function: is -Xptxas -v output parsed correctly?")
endif()
if(_failed)
  string(REPLACE ";" "\n  " _report "${_failed}")
  message(FATAL_ERROR "local-memory spills:\n  ${_report}")
endif()
message(STATUS "${_kernels} kernel compilations (${ARCHS}) without spills")
