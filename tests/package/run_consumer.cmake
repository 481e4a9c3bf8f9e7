# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
# cmake -DMODE=install|subdir -DSOURCE_DIR=... -DBINARY_DIR=... -DWORK_DIR=... -P run_consumer.cmake
# install: installs BINARY_DIR to WORK_DIR/prefix, builds tests/package/consumer with
#          find_package(latentkv) against it, runs it.
# subdir:  builds tests/package/subdir_consumer (add_subdirectory of SOURCE_DIR), runs it.
# install also checks that every public header (include/**/*.hpp, *.cuh) was installed.
# Both build without optimization (no CMAKE_BUILD_TYPE) a program that includes one header: the
# test is about packaging (targets, include paths, dependencies); compiling the umbrella header
# here twice made these two of CI's slowest tests, and HeadersAreSelfContained compiles it.
cmake_minimum_required(VERSION 3.25)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}")
  endif()
endfunction()

if(MODE STREQUAL "install")
  run(${CMAKE_COMMAND} --install ${BINARY_DIR} --prefix ${WORK_DIR}/prefix)
  file(GLOB_RECURSE _source RELATIVE ${SOURCE_DIR}/include ${SOURCE_DIR}/include/*.hpp
       ${SOURCE_DIR}/include/*.cuh)
  file(GLOB_RECURSE _installed RELATIVE ${WORK_DIR}/prefix/include
       ${WORK_DIR}/prefix/include/*.hpp ${WORK_DIR}/prefix/include/*.cuh)
  list(REMOVE_ITEM _source ${_installed})
  if(_source)
    string(REPLACE ";" ", " _missing "${_source}")
    message(FATAL_ERROR "not installed under ${WORK_DIR}/prefix/include: ${_missing}")
  endif()
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/package/consumer -B ${WORK_DIR}/build
      -DCMAKE_BUILD_TYPE= -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
elseif(MODE STREQUAL "subdir")
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/package/subdir_consumer -B ${WORK_DIR}/build
      -DCMAKE_BUILD_TYPE= -DLATENTKV_SOURCE_DIR=${SOURCE_DIR})
else()
  message(FATAL_ERROR "MODE must be install or subdir, got '${MODE}'")
endif()
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)
