// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The header's version is CMake's project(VERSION ...), passed in as LATENTKV_PROJECT_VERSION.
#include "latentkv/core/version.hpp"

#include <gtest/gtest.h>

#include <string>

namespace latentkv {
namespace {

TEST(Version, MatchesTheCMakeProjectVersion) {
  EXPECT_EQ(std::string(LATENTKV_VERSION_STRING), LATENTKV_PROJECT_VERSION);
  EXPECT_EQ(kVersionString, LATENTKV_VERSION_STRING);
  EXPECT_EQ(std::to_string(LATENTKV_VERSION_MAJOR) + "." + std::to_string(LATENTKV_VERSION_MINOR) +
                "." + std::to_string(LATENTKV_VERSION_PATCH),
            LATENTKV_VERSION_STRING);
}

}  // namespace
}  // namespace latentkv
