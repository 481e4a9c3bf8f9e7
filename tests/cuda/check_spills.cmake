# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
# cmake -DNVCC=<nvcc> -DSOURCE=<.cu> -DINCLUDE=<include dir> -DARCHS="80;90" -P check_spills.cmake
# Compiles SOURCE for every sm_<arch> (one nvcc call) with -Xptxas -v and fails when a kernel spills to local
# memory (ptxas: "N bytes spill stores, M bytes spill loads" with N or M > 0) or does not compile.
cmake_minimum_required(VERSION 3.25)  # IN_LIST below
foreach(_var IN ITEMS NVCC SOURCE INCLUDE ARCHS)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "check_spills.cmake: -D${_var}=... is required")
  endif()
endforeach()
set(_failed "")
set(_kernels 0)
# One nvcc call for every architecture: the host side is compiled once, each sm_XX's device code
# by its own cicc/ptxas pass (ptxas names the architecture on each function's line).
set(_gencode "")
foreach(_arch IN LISTS ARCHS)
  list(APPEND _gencode -gencode arch=compute_${_arch},code=sm_${_arch})
endforeach()
execute_process(
  COMMAND ${NVCC} -std=c++20 --expt-relaxed-constexpr -Werror=all-warnings -O3 ${_gencode}
          -I${INCLUDE} -c ${SOURCE} -o /dev/null -Xptxas -v
  RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "nvcc failed (${ARCHS}):\n${_out}\n${_err}")
endif()
# ptxas writes per function: "Compiling entry function '<name>' for 'sm_XX'", then
# "<a> bytes stack frame, <b> bytes spill stores, <c> bytes spill loads".
string(REPLACE "\n" ";" _lines "${_out}${_err}")
set(_function "")
set(_seen_archs "")
foreach(_line IN LISTS _lines)
  if(_line MATCHES "Compiling entry function '([^']+)' for '(sm_[0-9a-z]+)'")
    set(_function "${CMAKE_MATCH_2} ${CMAKE_MATCH_1}")
    list(APPEND _seen_archs ${CMAKE_MATCH_2})
    math(EXPR _kernels "${_kernels} + 1")
  elseif(_line MATCHES "([0-9]+) bytes spill stores, ([0-9]+) bytes spill loads")
    if(NOT CMAKE_MATCH_1 EQUAL 0 OR NOT CMAKE_MATCH_2 EQUAL 0)
      list(APPEND _failed "${_function}: ${CMAKE_MATCH_1} bytes spill stores, ${CMAKE_MATCH_2} bytes spill loads")
    endif()
  endif()
endforeach()
foreach(_arch IN LISTS ARCHS)
  if(NOT "sm_${_arch}" IN_LIST _seen_archs)
    message(FATAL_ERROR "ptxas reported no entry function for sm_${_arch}: is -Xptxas -v output parsed correctly?")
  endif()
endforeach()
if(_kernels EQUAL 0)
  message(FATAL_ERROR "ptxas reported no entry function: is -Xptxas -v output parsed correctly?")
endif()
if(_failed)
  string(REPLACE ";" "\n  " _report "${_failed}")
  message(FATAL_ERROR "local-memory spills:\n  ${_report}")
endif()
message(STATUS "${_kernels} kernel compilations (${ARCHS}) without spills")
