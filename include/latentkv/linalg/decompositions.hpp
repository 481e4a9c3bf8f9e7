// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Eigen's dense decompositions, as latentkv uses them: every header that factors a matrix takes
// them from here, and may have them compiled once per program instead of once per translation
// unit.
//
// Why: GCC spends most of a latentkv tool's compile time instantiating these (one TU that only
// constructs BDCSVD<MatrixXd>, BDCSVD<MatrixXf> and SelfAdjointEigenSolver<MatrixXd/f> takes
// 160 s of CPU at -O3 with GCC 12, 4.4 s with the declarations below). A header-only library
// pays that in every TU that factors; a program with several such TUs can opt out:
//
//   - compile every TU with -DLATENTKV_EXTERN_DECOMPOSITIONS: the specializations listed below
//     become explicit instantiation declarations (`extern template`), so no TU instantiates them;
//   - in exactly one TU, compiled with the same flags (-march above all: Eigen's allocation and
//     alignment differ between instruction sets), instantiate them:
//         #define LATENTKV_INSTANTIATE_DECOMPOSITIONS
//         #include <latentkv/linalg/decompositions.hpp>
//     (it must be the TU's first latentkv include). In this repository that TU is
//     src/decompositions.cpp, the static library latentkv_decompositions (CMakeLists.txt), which
//     the tests and tools link.
//
// Without either macro (the default) this header only includes Eigen's modules, and the library
// stays header-only. Only the exact specializations below are covered: plain column-major
// ColMatrix<float|double> (Eigen::MatrixXf/d) arguments; a call with an expression argument
// still instantiates its own member template in its TU (latentkv's headers pass plain matrices).
#pragma once

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <Eigen/QR>
#include <Eigen/SVD>

#if defined(LATENTKV_INSTANTIATE_DECOMPOSITIONS)
#define LATENTKV_DECOMPOSITION_INSTANCE template
#elif defined(LATENTKV_EXTERN_DECOMPOSITIONS)
#define LATENTKV_DECOMPOSITION_INSTANCE extern template
#endif

#ifdef LATENTKV_DECOMPOSITION_INSTANCE
// The member templates (compute(const EigenBase<Input>&)) are named with Input = the matrix type
// itself; their constructors are inline and forward to them.
#define LATENTKV_DECOMPOSITIONS_OF(T)                                                            \
  LATENTKV_DECOMPOSITION_INSTANCE class Eigen::BDCSVD<Eigen::Matrix<T, -1, -1>>;                 \
  LATENTKV_DECOMPOSITION_INSTANCE class Eigen::JacobiSVD<                                        \
      Eigen::Matrix<T, -1, -1>, Eigen::ColPivHouseholderQRPreconditioner>;                       \
  LATENTKV_DECOMPOSITION_INSTANCE class Eigen::SelfAdjointEigenSolver<Eigen::Matrix<T, -1, -1>>; \
  LATENTKV_DECOMPOSITION_INSTANCE Eigen::SelfAdjointEigenSolver<Eigen::Matrix<T, -1, -1>>&       \
  Eigen::SelfAdjointEigenSolver<Eigen::Matrix<T, -1, -1>>::compute<Eigen::Matrix<T, -1, -1>>(    \
      const Eigen::EigenBase<Eigen::Matrix<T, -1, -1>>&, int);                                   \
  LATENTKV_DECOMPOSITION_INSTANCE class Eigen::HouseholderQR<Eigen::Matrix<T, -1, -1>>;          \
  LATENTKV_DECOMPOSITION_INSTANCE class Eigen::LLT<Eigen::Matrix<T, -1, -1>>;                    \
  LATENTKV_DECOMPOSITION_INSTANCE Eigen::LLT<Eigen::Matrix<T, -1, -1>>&                          \
  Eigen::LLT<Eigen::Matrix<T, -1, -1>>::compute<Eigen::Matrix<T, -1, -1>>(                       \
      const Eigen::EigenBase<Eigen::Matrix<T, -1, -1>>&);                                        \
  LATENTKV_DECOMPOSITION_INSTANCE class Eigen::LDLT<Eigen::Matrix<T, -1, -1>>;                   \
  LATENTKV_DECOMPOSITION_INSTANCE Eigen::LDLT<Eigen::Matrix<T, -1, -1>>&                         \
  Eigen::LDLT<Eigen::Matrix<T, -1, -1>>::compute<Eigen::Matrix<T, -1, -1>>(                      \
      const Eigen::EigenBase<Eigen::Matrix<T, -1, -1>>&);

LATENTKV_DECOMPOSITIONS_OF(float)
LATENTKV_DECOMPOSITIONS_OF(double)

#undef LATENTKV_DECOMPOSITIONS_OF
#undef LATENTKV_DECOMPOSITION_INSTANCE
#endif
