# SPDX-FileCopyrightText: 2026 The latentkv authors
# SPDX-License-Identifier: Apache-2.0
# cmake -DMODE=install|subdir -DSOURCE_DIR=... -DBINARY_DIR=... -DWORK_DIR=... -P run_consumer.cmake
# install: installs BINARY_DIR to WORK_DIR/prefix, builds tests/package/consumer with
#          find_package(latentkv) against it, runs it.
# subdir:  builds tests/package/subdir_consumer (add_subdirectory of SOURCE_DIR), runs it.
# Both build without optimization (no CMAKE_BUILD_TYPE): the test is about packaging (targets,
# include paths, dependencies, every header installed — the program includes the umbrella
# header), and -O3 on Eigen's SVD only made it one of CI's slowest tests.
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
