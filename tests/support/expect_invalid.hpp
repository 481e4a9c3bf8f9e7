// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// expect_invalid(fn, fragment): fn() must throw InvalidArgument whose message contains fragment
// (the option, tensor or layer a bad input names).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "latentkv/core/error.hpp"

namespace latentkv::testing {

template <class Fn>
void expect_invalid(Fn&& fn, const std::string& fragment) {
  try {
    fn();
    ADD_FAILURE() << "expected InvalidArgument containing \"" << fragment << "\"";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

}  // namespace latentkv::testing
