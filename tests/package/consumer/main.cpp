// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// A downstream program: factorize a K/V-shaped weight and check Eckart–Young. Exit code 0 = OK.
// It includes one header, not the umbrella: what this test checks is the packaging (targets,
// include paths, Eigen found through the package); every header compiling on its own is
// HeadersAreSelfContained's, and every header being installed is run_consumer.cmake's check.
// JacobiSvdFactorizer, not BdcsvdFactorizer: the same exact SVD for this size, and GCC compiles
// JacobiSVD in 16 s at -O0 where BDCSVD takes 47 (linalg/decompositions.hpp).
#include <cmath>
#include <cstdio>
#include <latentkv/core/version.hpp>
#include <latentkv/factorize/exact_svd_factorizer.hpp>

int main() {
  using namespace latentkv;
  RowMatrix<float> w(64, 48);
  for (Index i = 0; i < w.rows(); ++i) {
    for (Index j = 0; j < w.cols(); ++j) {
      w(i, j) = static_cast<float>(((i * 7 + j * 13) % 17) - 8) / (1.0f + static_cast<float>(j));
    }
  }
  const auto f = JacobiSvdFactorizer<float>().factorize(w, 12);
  const double err = (w - f.reconstruct()).norm() / w.norm();
  std::printf("latentkv %s: rank %ld, relative error %.6f (reported %.6f)\n",
              LATENTKV_VERSION_STRING, static_cast<long>(f.rank()), err, f.relative_error);
  return (f.rank() == 12 && std::abs(err - f.relative_error) < 1e-4) ? 0 : 1;
}
