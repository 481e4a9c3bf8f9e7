// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The library version: CMake's PROJECT_VERSION (major.minor.patch), kept equal to it by
// tests/core/version_test.cpp. Files latentkv writes record it (e.g. the compressed checkpoint's
// "latentkv_version"); macros so that the preprocessor can test it as well.
#pragma once

#include <string_view>

#define LATENTKV_VERSION_MAJOR 0
#define LATENTKV_VERSION_MINOR 1
#define LATENTKV_VERSION_PATCH 0
#define LATENTKV_VERSION_STRING "0.1.0"

namespace latentkv {

/// "major.minor.patch", as LATENTKV_VERSION_STRING.
inline constexpr std::string_view kVersionString = LATENTKV_VERSION_STRING;

}  // namespace latentkv
