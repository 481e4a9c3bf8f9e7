// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Build-wide macros shared by host and device code. std-only: included by .cuh kernels too.
#pragma once

#define LATENTKV_VERSION_MAJOR 0
#define LATENTKV_VERSION_MINOR 1
#define LATENTKV_VERSION_PATCH 0
#define LATENTKV_VERSION_STRING "0.1.0"

#if defined(__CUDACC__) || defined(__HIPCC__)
#define LATENTKV_HOST_DEVICE __host__ __device__
#define LATENTKV_DEVICE __device__
#else
#define LATENTKV_HOST_DEVICE
#define LATENTKV_DEVICE
#endif
