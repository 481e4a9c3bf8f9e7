// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// The one translation unit that instantiates Eigen's dense decompositions for latentkv's own
// tests and tools (static library latentkv_decompositions; they are compiled with
// LATENTKV_EXTERN_DECOMPOSITIONS). See include/latentkv/linalg/decompositions.hpp.
#define LATENTKV_INSTANTIATE_DECOMPOSITIONS
#include "latentkv/linalg/decompositions.hpp"
