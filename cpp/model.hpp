// A (possibly stacked, bidirectional, token-input) Elman RNN with an optional output layer.
// All parameters live in one flat aligned buffer, gradients in a second one of the same
// layout; `layout` lists the tensors in it by kind ("W_x", ...), cells in layer-major,
// forward-then-reverse order: their full names belong to python/rnnext/interop.py.
// forward() keeps what backward() needs.
#pragma once

#include "kernels.hpp"

#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace rnnext {

struct Config {
    Index input_size = 0;   // features per step (the embedding width with a vocabulary)
    Index hidden_size = 0;
    Index output_size = 0;  // 0: no output layer, y is the top layer's states
    Index num_layers = 1;
    Index vocab_size = 0;   // > 0: inputs are token ids looked up in E (vocab_size, input_size)
    bool bidirectional = false;
    bool learn_h0 = false;
    double dropout = 0.0;   // between stacked layers, while training
    Act act = Act::tanh;
    OutAct out_act = OutAct::none;
};

struct TensorInfo {
    std::string name;
    std::size_t offset;
    std::vector<Index> shape;
};

template <class T>
struct AlignedFree {
    void operator()(T* p) const { std::free(p); }
};

// Workspaces are 64-byte aligned like the parameters (one cache line, one AVX-512
// register), so vectorised loops split every buffer the same way and equal inputs give
// bit-identical results in any model.
template <class T>
struct AlignedAllocator {
    using value_type = T;
    AlignedAllocator() = default;
    template <class U>
    AlignedAllocator(const AlignedAllocator<U>&) {}
    T* allocate(std::size_t n) {
        void* p = std::aligned_alloc(64, ((std::max<std::size_t>(n, 1) * sizeof(T) + 63) / 64) * 64);
        if (!p) throw std::bad_alloc();
        return static_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t) { std::free(p); }
    template <class U>
    bool operator==(const AlignedAllocator<U>&) const { return true; }
    template <class U>
    bool operator!=(const AlignedAllocator<U>&) const { return false; }
};
template <class T>
using Buffer = std::vector<T, AlignedAllocator<T>>;

// Multiplies sizes, refusing results that do not fit in memory arithmetic.
inline Index checked_mul(Index a, Index b) {
    if (a < 0 || b < 0) throw std::invalid_argument("negative size");
    if (a != 0 && b > std::numeric_limits<Index>::max() / 8 / a)
        throw std::length_error("size overflows: " + std::to_string(a) + " * " + std::to_string(b));
    return a * b;
}

template <class T>
class Model {
public:
    explicit Model(const Config& c) : cfg(c) {
        if (c.input_size <= 0 || c.hidden_size <= 0 || c.num_layers <= 0 || c.output_size < 0 ||
            c.vocab_size < 0)
            throw std::invalid_argument("sizes must be positive");
        if (!(c.dropout >= 0.0 && c.dropout < 1.0)) throw std::invalid_argument("dropout must be in [0, 1)");
        const Index D = directions(), H = c.hidden_size;
        std::size_t off = 0;
        auto add = [&](const std::string& name, std::vector<Index> shape) {
            Index n = 1;
            for (Index s : shape) n = checked_mul(n, s);
            layout.push_back({name, off, shape});
            off += static_cast<std::size_t>(n);
            return layout.back().offset;
        };
        if (c.vocab_size > 0) E_ = add("E", {c.vocab_size, c.input_size});
        for (Index l = 0; l < c.num_layers; ++l) {
            for (Index d = 0; d < D; ++d) {
                Cell cell;
                cell.in = l == 0 ? c.input_size : D * H;
                cell.W_x = add("W_x", {cell.in, H});
                cell.W_h = add("W_h", {H, H});
                cell.b_h = add("b_h", {H});
                cells_.push_back(cell);
            }
        }
        if (c.learn_h0) h0_ = add("h0", {c.num_layers * D, H});
        if (c.output_size > 0) {
            W_y_ = add("W_y", {D * H, c.output_size});
            b_y_ = add("b_y", {c.output_size});
        }
        size_ = off;
        params_ = alloc(size_);
        grads_ = alloc(size_);
        rng_.seed(0);
    }

    Config cfg;
    std::vector<TensorInfo> layout;

    T* params() { return params_.get(); }
    T* grads() { return grads_.get(); }
    std::size_t size() const { return size_; }
    Index directions() const { return cfg.bidirectional ? 2 : 1; }
    Index states() const { return cfg.num_layers * directions(); }
    Index out_features() const { return cfg.output_size > 0 ? cfg.output_size : directions() * cfg.hidden_size; }
    bool has_forward() const { return have_forward_; }
    Index last_T() const { return T_; }
    Index last_B() const { return B_; }
    std::mutex& mutex() { return mutex_; }

    void zero_grad() { std::fill(grads_.get(), grads_.get() + size_, T(0)); }
    void seed(std::uint64_t s) { rng_.seed(s); }

    // y: (T, B, out_features); h_n: (states, B, H). Exactly one of x (T, B, I) and
    // ids (T, B) is given; h0 (states, B, H) and lengths (B) may be null.
    void forward(T* y, T* h_n, const T* x, const std::int64_t* ids, const T* h0,
                 const std::int32_t* lengths, Index Tn, Index B, bool training) {
        const Index H = cfg.hidden_size, D = directions(), I = cfg.input_size, L = cfg.num_layers;
        const Index N = checked_mul(Tn, B);
        checked_mul(N, std::max(I, D * H));
        have_forward_ = false;
        T_ = Tn;
        B_ = B;
        // Layer 0 input, kept for backward.
        X0_.resize(N * I);
        if (ids) {
            ids_.assign(ids, ids + N);
            const T* E = params_.get() + E_;
            for (Index n = 0; n < N; ++n) {
                if (ids[n] < 0 || ids[n] >= cfg.vocab_size)
                    throw std::invalid_argument("token id " + std::to_string(ids[n]) + " at flat position " +
                                                std::to_string(n) + " is outside [0, " +
                                                std::to_string(cfg.vocab_size) + ")");
                std::memcpy(X0_.data() + n * I, E + ids[n] * I, sizeof(T) * I);
            }
        } else {
            ids_.clear();
            if (N * I) std::memcpy(X0_.data(), x, sizeof(T) * N * I);
        }
        lengths_.clear();
        if (lengths) {
            for (Index b = 0; b < B; ++b)
                if (lengths[b] < 0 || lengths[b] > Tn)
                    throw std::invalid_argument("lengths[" + std::to_string(b) + "] = " + std::to_string(lengths[b]) +
                                                " is outside [0, " + std::to_string(Tn) + "]");
            lengths_.assign(lengths, lengths + B);
        }
        const std::int32_t* len = lengths ? lengths_.data() : nullptr;
        // Initial states: given, learned (broadcast over the batch), or zeros.
        H0_.assign(states() * B * H, T(0));
        used_learned_h0_ = false;
        if (h0) {
            std::memcpy(H0_.data(), h0, sizeof(T) * H0_.size());
        } else if (cfg.learn_h0) {
            used_learned_h0_ = true;
            for (Index k = 0; k < states(); ++k)
                for (Index b = 0; b < B; ++b)
                    std::memcpy(H0_.data() + (k * B + b) * H, params_.get() + h0_ + k * H, sizeof(T) * H);
        }
        if (H0_.size()) std::memcpy(h_n, H0_.data(), sizeof(T) * H0_.size());

        out_.resize(L);
        in_.resize(L);
        mask_.resize(L);
        dropped_ = training && cfg.dropout > 0.0 && L > 1;
        for (Index l = 0; l < L; ++l) {
            const T* X = layer_input(l);
            if (l > 0 && dropped_) {
                // Inverted dropout on the layer's input: keep with p = 1 - dropout, scale by 1/p.
                const T keep = T(1.0 - cfg.dropout), scale = T(1) / keep;
                std::uniform_real_distribution<double> u(0.0, 1.0);
                mask_[l].resize(N * D * H);
                in_[l].resize(N * D * H);
                for (Index i = 0; i < N * D * H; ++i) {
                    mask_[l][i] = u(rng_) < cfg.dropout ? T(0) : scale;
                    in_[l][i] = out_[l - 1][i] * mask_[l][i];
                }
                X = in_[l].data();
            }
            out_[l].resize(N * D * H);
            packed_.resize(packed_size<T>(H, H));
            tmp_.resize(B * H);
            for (Index d = 0; d < D; ++d) {
                const Cell& c = cells_[l * D + d];
                const T* p = params_.get();
                rnn_layer_forward(out_[l].data() + d * H, h_n + (l * D + d) * B * H, tmp_.data(), packed_.data(), X,
                                  p + c.W_x, p + c.W_h, p + c.b_h, len, Tn, B, c.in, H, D * H, d == 1, cfg.act);
            }
        }
        const T* top = out_[L - 1].data();
        if (cfg.output_size > 0) {
            // f_o's outputs are kept for its Jacobian in backward; without f_o, y is enough.
            const Index O = cfg.output_size;
            T* out = y;
            if (cfg.out_act != OutAct::none) {
                Y_.resize(N * O);
                out = Y_.data();
            }
            output_forward(out, top, params_.get() + W_y_, params_.get() + b_y_, N, D * H, O, cfg.out_act);
            zero_padding(out, O);
            if (out != y && N * O) std::memcpy(y, out, sizeof(T) * N * O);
        } else if (N) {
            std::memcpy(y, top, sizeof(T) * N * D * H);
        }
        have_forward_ = true;
    }

    // grad: (T, B, out_features) dL/dy, or dL/dz with wrt_logits; dh_n: (states, B, H) or null.
    // dx: (T, B, I) or null (never for token inputs); dh0: (states, B, H);
    // norms: (states, T) |dL/ds_t| per layer and direction.
    void backward(T* dx, T* dh0, T* norms, const T* grad, const T* dh_n, bool wrt_logits) {
        if (!have_forward_) throw std::logic_error("backward() needs a forward() first");
        const Index H = cfg.hidden_size, D = directions(), L = cfg.num_layers, Tn = T_, B = B_, N = Tn * B;
        const std::int32_t* len = lengths_.empty() ? nullptr : lengths_.data();
        T* g = grads_.get();
        const T* p = params_.get();
        dTop_.resize(N * D * H);
        if (cfg.output_size > 0) {
            const Index O = cfg.output_size;
            const T* dz = grad;  // used as given unless it has to be changed
            if ((!wrt_logits && cfg.out_act != OutAct::none) || !lengths_.empty()) {
                dZ_.resize(N * O);
                if (N * O) std::memcpy(dZ_.data(), grad, sizeof(T) * N * O);
                if (!wrt_logits) output_activation_backward(dZ_.data(), Y_.data(), N, O, cfg.out_act);
                zero_padding(dZ_.data(), O);
                dz = dZ_.data();
            }
            output_backward(dTop_.data(), g + W_y_, g + b_y_, dz, out_[L - 1].data(), p + W_y_, N, D * H, O);
        } else if (N) {
            std::memcpy(dTop_.data(), grad, sizeof(T) * N * D * H);
        }
        if (dh_n)
            std::memcpy(dh0, dh_n, sizeof(T) * states() * B * H);
        else
            std::fill(dh0, dh0 + states() * B * H, T(0));
        tmp_.resize(B * H);
        packed_.resize(packed_size<T>(H, H));
        sumsq_.resize(std::max<Index>(1, get_num_threads()) * Tn);
        for (Index l = L - 1; l >= 0; --l) {
            const Index in = cells_[l * D].in;
            T* dIn = nullptr;  // gradient w.r.t. this layer's input
            if (l > 0 || !ids_.empty()) {
                dIn_.assign(N * in, T(0));
                dIn = dIn_.data();
            } else if (dx) {
                std::fill(dx, dx + N * in, T(0));
                dIn = dx;
            }
            for (Index d = 0; d < D; ++d) {
                const Cell& c = cells_[l * D + d];
                const Index k = l * D + d;
                rnn_layer_backward(dIn, g + c.W_x, g + c.W_h, g + c.b_h, dh0 + k * B * H, dTop_.data() + d * H,
                                   tmp_.data(), packed_.data(), sumsq_.data(), norms ? norms + k * Tn : nullptr,
                                   out_[l].data() + d * H, layer_input(l), H0_.data() + k * B * H, p + c.W_x,
                                   p + c.W_h, len, Tn, B, in, H, D * H, d == 1, cfg.act);
            }
            if (l > 0) {
                if (dropped_)
                    for (Index i = 0; i < N * in; ++i) dIn_[i] *= mask_[l][i];
                std::swap(dTop_, dIn_);
            } else if (!ids_.empty()) {  // scatter-add into the rows of E that were used
                const Index I = cfg.input_size;
                for (Index n = 0; n < N; ++n) RowVec<T>(g + E_ + ids_[n] * I, I) += CRowVec<T>(dIn + n * I, I);
            }
        }
        if (used_learned_h0_)
            for (Index k = 0; k < states(); ++k)
                RowVec<T>(g + h0_ + k * H, H) += cmat(dh0 + k * B * H, B, H, H).colwise().sum();
    }

    // One step of every layer for B rows, for streaming inference: x (B, I) or ids (B),
    // states h (states, B, H) or null (the initial state); writes the new states to h_out
    // (may alias h) and the output (B, out_features) to y. No dropout; nothing is kept for
    // backward(), so a pending forward() stays differentiable. Unidirectional models only.
    void step(T* y, T* h_out, const T* x, const std::int64_t* ids, const T* h, Index B) {
        if (cfg.bidirectional) throw std::invalid_argument("step() needs a unidirectional model");
        const Index H = cfg.hidden_size, I = cfg.input_size, L = cfg.num_layers;
        const T* p = params_.get();
        step_s_.resize(L * B * H);
        const T* in = x;
        if (ids) {
            step_in_.resize(B * I);
            for (Index b = 0; b < B; ++b) {
                if (ids[b] < 0 || ids[b] >= cfg.vocab_size)
                    throw std::invalid_argument("token id " + std::to_string(ids[b]) + " at position " +
                                                std::to_string(b) + " is outside [0, " +
                                                std::to_string(cfg.vocab_size) + ")");
                std::memcpy(step_in_.data() + b * I, p + E_ + ids[b] * I, sizeof(T) * I);
            }
            in = step_in_.data();
        }
        if (!h) {  // the learned h0 broadcast over the rows, or zeros
            step_old_.assign(L * B * H, T(0));
            if (cfg.learn_h0)
                for (Index l = 0; l < L; ++l)
                    for (Index b = 0; b < B; ++b)
                        std::memcpy(step_old_.data() + (l * B + b) * H, p + h0_ + l * H, sizeof(T) * H);
            h = step_old_.data();
        }
        for (Index l = 0; l < L; ++l) {
            const Cell& c = cells_[l];
            T* out = step_s_.data() + l * B * H;
            rnn_cell_forward(out, in, h + l * B * H, p + c.W_x, p + c.W_h, p + c.b_h, B, c.in, H, cfg.act);
            in = out;
        }
        if (cfg.output_size > 0)
            output_forward(y, in, p + W_y_, p + b_y_, B, H, cfg.output_size, cfg.out_act);
        else
            std::memcpy(y, in, sizeof(T) * B * H);
        std::memcpy(h_out, step_s_.data(), sizeof(T) * L * B * H);
    }

    // Bytes held by the buffers kept between calls (parameters and gradients excluded).
    std::size_t workspace_bytes() const {
        std::size_t n = X0_.capacity() + H0_.capacity() + Y_.capacity() + dTop_.capacity() + dIn_.capacity() +
                        dZ_.capacity() + tmp_.capacity() + packed_.capacity() + sumsq_.capacity() +
                        step_in_.capacity() + step_s_.capacity() + step_old_.capacity();
        for (const auto* v : {&out_, &in_, &mask_})
            for (const auto& b : *v) n += b.capacity();
        return n * sizeof(T) + ids_.capacity() * sizeof(std::int64_t) + lengths_.capacity() * sizeof(std::int32_t);
    }

private:
    struct Cell {
        std::size_t W_x, W_h, b_h;
        Index in;
    };

    static std::unique_ptr<T[], AlignedFree<T>> alloc(std::size_t n) {
        // 64-byte alignment: one cache line, one AVX-512 register.
        std::size_t bytes = ((std::max<std::size_t>(n, 1) * sizeof(T) + 63) / 64) * 64;
        T* p = static_cast<T*>(std::aligned_alloc(64, bytes));
        if (!p) throw std::bad_alloc();
        std::fill(p, p + n, T(0));
        return std::unique_ptr<T[], AlignedFree<T>>(p);
    }

    const T* layer_input(Index l) const {
        if (l == 0) return X0_.data();
        return dropped_ ? in_[l].data() : out_[l - 1].data();
    }

    // Outputs and their gradients are zero at steps past a sequence's length.
    void zero_padding(T* A, Index cols) const {
        if (lengths_.empty()) return;
        for (Index t = 0; t < T_; ++t)
            for (Index b = 0; b < B_; ++b)
                if (t >= lengths_[b]) std::fill(A + (t * B_ + b) * cols, A + (t * B_ + b + 1) * cols, T(0));
    }

    std::unique_ptr<T[], AlignedFree<T>> params_, grads_;
    std::size_t size_ = 0;
    std::vector<Cell> cells_;
    std::size_t E_ = 0, h0_ = 0, W_y_ = 0, b_y_ = 0;
    std::mt19937_64 rng_;
    std::mutex mutex_;

    // Context of the last forward call.
    bool have_forward_ = false, used_learned_h0_ = false, dropped_ = false;
    Index T_ = 0, B_ = 0;
    Buffer<T> X0_, H0_, Y_;
    std::vector<std::int64_t> ids_;
    std::vector<std::int32_t> lengths_;
    std::vector<Buffer<T>> out_, in_, mask_;  // per layer: states (T, B, D*H), dropped input, mask
    // Workspaces, grown once and reused. dTop_ holds dL/ds of a layer and, in place, dL/d(pre-activation).
    Buffer<T> dTop_, dIn_, dZ_, tmp_, packed_, sumsq_;
    Buffer<T> step_in_, step_s_, step_old_;  // step(): embedded input, new and initial states
};

}  // namespace rnnext
