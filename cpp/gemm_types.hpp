// Plain types shared by the engine and the per-instruction-set GEMM objects
// (cpp/gemm_isa.cpp). No inline functions on purpose: an object compiled for AVX-512 must
// not emit a copy of a shared inline function that the linker could pick for all callers.
#pragma once

#include <cstddef>

namespace rnnext {

using Index = std::ptrdiff_t;

template <class T>
struct GemmArgs {
    Index M, N, K;
    const T* A;
    Index lda;
    bool transA;     // A is stored as (K, M)
    const T* B;      // ignored when Bp is given
    Index ldb;
    bool transB;     // B is stored as (N, K)
    const T* Bp;     // B packed by pack_b, or nullptr
    T* C;
    Index ldc;
    bool accumulate; // C += ... instead of C = ...
    const T* bias = nullptr;  // (N): C = bias + ... (rows broadcast) when not accumulating
};

// Blocking sizes of the packed product, derived from the running CPU's caches.
struct GemmBlocking {
    Index kc, mc, nc;  // depth of a K block, rows of an A block, columns of a B block
};

template <class T>
struct GemmFns {
    Index nr;  // packed panel width
    void (*gemm)(const GemmArgs<T>&);  // on the calling thread
    GemmBlocking (*blocking)();
    // Packs B (K, N) (stored as (N, K) when trans) into dst of packed_size(K, N) elements:
    // panels of nr columns, each K rows of nr contiguous values (zero-padded past N).
    void (*pack_b)(T* dst, const T* B, Index ldb, bool trans, Index K, Index N);
};

struct GemmTable {
    const char* isa;
    GemmFns<float> f32;
    GemmFns<double> f64;
};

}  // namespace rnnext
