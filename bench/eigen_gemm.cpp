// Eigen's product, compiled once per GEMM object with that object's flags (see
// CMakeLists.txt): bench_kernels' same-flags reference for each kernel. Defines
// RNNEXT_EIGEN_GEMM; the build renames Eigen's namespace per object.
#include <Eigen/Core>

#include "gemm_types.hpp"

namespace rnnext {

template <class T>
static void eigen_product(Index M, Index N, Index K, const T* A, const T* B, T* C) {
    using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<Mat> c(C, M, N);
    c.noalias() = Eigen::Map<const Mat>(A, M, K) * Eigen::Map<const Mat>(B, K, N);
}

// C (M, N) = A (M, K) B (K, N), all row-major and dense.
void RNNEXT_EIGEN_GEMM(Index M, Index N, Index K, const float* A, const float* B, float* C) {
    eigen_product<float>(M, N, K, A, B, C);
}

}  // namespace rnnext
