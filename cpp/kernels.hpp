// Kernels of the Elman RNN in the row-vector convention of the reference notes:
//   s_t = f_s(x_t W_x + s_{t-1} W_h + b_h),   y_t = f_o(s_t W_y + b_y).
// Buffers are time-major and row-major, (T, B, .), so each step is one block of B rows.
// A leading dimension `ld` lets a direction write its H columns into a (T, B, D*H) buffer.
// Backward functions add into parameter gradients; zeroing them is the caller's job.
#pragma once

#include <Eigen/Core>

#include <cstdint>
#include <cstring>

namespace rnnext {

using Index = Eigen::Index;

enum class Act { tanh, relu, sigmoid };
enum class OutAct { none, sigmoid, softmax };

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using CMatMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using CRowVec = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>;
template <class T>
using RowVec = Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>;

template <class T>
inline MatMap<T> mat(T* p, Index rows, Index cols, Index ld) {
    return MatMap<T>(p, rows, cols, Eigen::OuterStride<>(ld));
}
template <class T>
inline CMatMap<T> cmat(const T* p, Index rows, Index cols, Index ld) {
    return CMatMap<T>(p, rows, cols, Eigen::OuterStride<>(ld));
}

// Is step t inside sequence b? Without lengths every step is.
inline bool active(const int32_t* lengths, Index b, Index t) {
    return lengths == nullptr || t < lengths[b];
}

template <class T>
inline void activation_forward(MatMap<T> z, Act act) {  // in place, (B, H)
    switch (act) {
        case Act::tanh: z.array() = z.array().tanh(); break;
        case Act::relu: z.array() = z.array().max(T(0)); break;
        case Act::sigmoid: z.array() = z.array().logistic(); break;
    }
}

// g *= f'(z) written through the output s = f(z): tanh' = 1 - s^2, sigmoid' = s (1 - s).
template <class T>
inline void activation_backward(MatMap<T> g, CMatMap<T> s, Act act) {
    switch (act) {
        case Act::tanh: g.array() *= T(1) - s.array().square(); break;
        case Act::relu: g.array() *= (s.array() > T(0)).template cast<T>(); break;
        case Act::sigmoid: g.array() *= s.array() * (T(1) - s.array()); break;
    }
}

// One direction of one layer over all steps. The input projection of every step is one
// GEMM before the loop, so the loop holds only s_{t-1} W_h and the activation.
// Steps at or past lengths[b] leave row b of the carried state alone and store zeros.
template <class T>
void rnn_layer_forward(T* S,                   // (T, B, ldS) out: states s_t in columns [0, H)
                       T* carry,               // (B, H) in: h0, out: h_n
                       const T* X,             // (T, B, I) layer input
                       const T* W_x,           // (I, H)
                       const T* W_h,           // (H, H)
                       const T* b_h,           // (H)
                       const int32_t* lengths, // (B) or nullptr
                       Index Tn, Index B, Index I, Index H, Index ldS, bool reverse, Act act) {
    if (Tn == 0 || B == 0) return;
    auto S_all = mat(S, Tn * B, H, ldS);
    S_all.noalias() = cmat(X, Tn * B, I, I) * cmat(W_x, I, H, H);
    S_all.rowwise() += CRowVec<T>(b_h, H);
    const auto Wh = cmat(W_h, H, H, H);
    const T* prev = carry;  // state entering the step
    Index ld_prev = H;
    for (Index step = 0; step < Tn; ++step) {
        const Index t = reverse ? Tn - 1 - step : step;
        auto St = mat(S + t * B * ldS, B, H, ldS);
        St.noalias() += cmat(prev, B, H, ld_prev) * Wh;
        activation_forward(St, act);
        if (lengths) {
            for (Index b = 0; b < B; ++b) {
                if (active(lengths, b, t))
                    std::memcpy(carry + b * H, St.row(b).data(), sizeof(T) * H);
                else
                    St.row(b).setZero();
            }
        } else {
            prev = St.data();
            ld_prev = ldS;
        }
    }
    if (!lengths) mat(carry, B, H, H) = cmat(prev, B, H, ld_prev);
}

// Backpropagation through time for rnn_layer_forward. Only dL/ds_t W_h^T is left inside
// the loop; dW_x, dW_h, db_h and dX are single GEMMs over all T*B rows afterwards.
template <class T>
void rnn_layer_backward(T* dX,                  // (T, B, I) accumulated, or nullptr
                        T* dW_x,                // (I, H) accumulated
                        T* dW_h,                // (H, H) accumulated
                        T* db_h,                // (H) accumulated
                        T* dcarry,              // (B, H) in: dL/dh_n, out: dL/dh0
                        T* dPre,                // (T, B, H) workspace: dL/d(pre-activation)
                        T* tmp,                 // (B, H) workspace
                        T* norms,               // (T) out: |dL/ds_t| over the batch, or nullptr
                        const T* dS,            // (T, B, ldS) dL/ds_t from the layer's outputs
                        const T* S,             // (T, B, ldS) states from the forward pass
                        const T* X,             // (T, B, I)
                        const T* h0,            // (B, H)
                        const T* W_x,           // (I, H)
                        const T* W_h,           // (H, H)
                        const int32_t* lengths, // (B) or nullptr
                        Index Tn, Index B, Index I, Index H, Index ldS, bool reverse, Act act) {
    if (Tn == 0 || B == 0) return;
    const auto WhT = cmat(W_h, H, H, H).transpose();
    auto dc = mat(dcarry, B, H, H);
    auto dtmp = mat(tmp, B, H, H);
    for (Index step = Tn - 1; step >= 0; --step) {
        const Index t = reverse ? Tn - 1 - step : step;
        auto G = mat(dPre + t * B * H, B, H, H);
        G = cmat(dS + t * B * ldS, B, H, ldS) + dc;
        if (lengths)
            for (Index b = 0; b < B; ++b)
                if (!active(lengths, b, t)) G.row(b).setZero();
        if (norms) norms[t] = G.norm();
        activation_backward(G, cmat(S + t * B * ldS, B, H, ldS), act);
        dtmp.noalias() = G * WhT;
        if (lengths) {  // past its end a sequence passes dL/dh through unchanged
            for (Index b = 0; b < B; ++b)
                if (active(lengths, b, t)) dc.row(b) = dtmp.row(b);
        } else {
            dc = dtmp;
        }
    }
    const auto dP = cmat(dPre, Tn * B, H, H);
    const auto Xm = cmat(X, Tn * B, I, I);
    mat(dW_x, I, H, H).noalias() += Xm.transpose() * dP;
    RowVec<T>(db_h, H) += dP.colwise().sum();
    if (dX) mat(dX, Tn * B, I, I).noalias() += dP * cmat(W_x, I, H, H).transpose();
    // The state entering step t is the state of the step before it in processing order,
    // except at a sequence's first step, where it is h0 (stored states past the end are 0).
    auto dWh = mat(dW_h, H, H, H);
    if (Tn > 1) {
        const T* prev = reverse ? S + B * ldS : S;
        const T* grad = reverse ? dPre : dPre + B * H;
        dWh.noalias() += cmat(prev, (Tn - 1) * B, H, ldS).transpose() * cmat(grad, (Tn - 1) * B, H, H);
    }
    for (Index b = 0; b < B; ++b) {
        const Index len = lengths ? lengths[b] : Tn;
        if (len == 0) {
            dtmp.row(b).setZero();
        } else {
            const Index first = reverse ? len - 1 : 0;
            dtmp.row(b) = cmat(dPre + first * B * H, B, H, H).row(b);
        }
    }
    dWh.noalias() += cmat(h0, B, H, H).transpose() * dtmp;
}

// Output layer: y = f_o(s W_y + b_y) over all N = T*B rows.
template <class T>
void output_forward(T* Y,        // (N, O) out
                    const T* S,  // (N, DH)
                    const T* W_y, const T* b_y, Index N, Index DH, Index O, OutAct act) {
    auto Ym = mat(Y, N, O, O);
    Ym.noalias() = cmat(S, N, DH, DH) * cmat(W_y, DH, O, O);
    Ym.rowwise() += CRowVec<T>(b_y, O);
    switch (act) {
        case OutAct::none: break;
        case OutAct::sigmoid: Ym.array() = Ym.array().logistic(); break;
        case OutAct::softmax:
            for (Index n = 0; n < N; ++n) {
                auto r = Ym.row(n);
                r.array() = (r.array() - r.maxCoeff()).exp();
                r /= r.sum();
            }
            break;
    }
}

// dL/dz from dL/dy through f_o's Jacobian, in place; Y holds f_o's outputs.
template <class T>
void output_activation_backward(T* dZ,       // (N, O) in: dL/dy, out: dL/dz
                                const T* Y,  // (N, O)
                                Index N, Index O, OutAct act) {
    auto G = mat(dZ, N, O, O);
    const auto Ym = cmat(Y, N, O, O);
    switch (act) {
        case OutAct::none: break;
        case OutAct::sigmoid: G.array() *= Ym.array() * (T(1) - Ym.array()); break;
        case OutAct::softmax:
            for (Index n = 0; n < N; ++n) {
                const T dot = G.row(n).dot(Ym.row(n));
                G.row(n).array() = Ym.row(n).array() * (G.row(n).array() - dot);
            }
            break;
    }
}

template <class T>
void output_backward(T* dS,        // (N, DH) out (overwritten)
                     T* dW_y,      // (DH, O) accumulated
                     T* db_y,      // (O) accumulated
                     const T* dZ,  // (N, O) dL/dz
                     const T* S,   // (N, DH)
                     const T* W_y, Index N, Index DH, Index O) {
    const auto G = cmat(dZ, N, O, O);
    mat(dW_y, DH, O, O).noalias() += cmat(S, N, DH, DH).transpose() * G;
    RowVec<T>(db_y, O) += G.colwise().sum();
    mat(dS, N, DH, DH).noalias() = G * cmat(W_y, DH, O, O).transpose();
}

}  // namespace rnnext
