// SPDX-FileCopyrightText: 2026 The latentkv authors
// SPDX-License-Identifier: Apache-2.0
//
// Exception hierarchy. Every public entry point checks its preconditions (in release builds too)
// and throws one of these with a message that names the function, the argument and the expected
// range:
//   "latentkv::BdcsvdFactorizer::factorize: rank = 300, expected 1..192 (min(rows, cols))"
//
//   Error                 base of everything latentkv throws (a std::runtime_error)
//   ├─ InvalidArgument    a caller-supplied value is out of range / shapes disagree
//   ├─ FormatError        a file is malformed (message names the file, the tensor and the offset)
//   ├─ NumericalError     a computation failed (non-convergence, not positive definite, NaN
//   produced) └─ CudaError          a CUDA / cuBLAS / cuSOLVER call failed (code, call, file:line)
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace latentkv {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class InvalidArgument : public Error {
 public:
  using Error::Error;
};

class FormatError : public Error {
 public:
  using Error::Error;
};

class NumericalError : public Error {
 public:
  using Error::Error;
};

class CudaError : public Error {
 public:
  CudaError(int code, std::string call, std::string where, const std::string& what)
      : Error(what), code_(code), call_(std::move(call)), where_(std::move(where)) {}

  [[nodiscard]] int code() const noexcept { return code_; }
  [[nodiscard]] const std::string& call() const noexcept { return call_; }
  [[nodiscard]] const std::string& where() const noexcept { return where_; }

 private:
  int code_;
  std::string call_;
  std::string where_;
};

namespace detail {

/// Concatenates streamable parts into one message: concat("rank = ", r, ", expected 1..", n).
template <class... Parts>
[[nodiscard]] std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

/// Throws E(where + ": " + message parts...).
template <class E, class... Parts>
[[noreturn]] void raise(const char* where, const Parts&... parts) {
  throw E(concat(where, ": ", parts...));
}

}  // namespace detail
}  // namespace latentkv
