// A small persistent thread pool shared by every model: run(n, fn) calls fn(i) for i in
// [0, n), i = 0 on the calling thread and the others on workers, and returns when all are
// done. Jobs are plain function pointers plus a context, so starting one allocates nothing.
// A call that finds the pool busy (a second model used from another Python thread, or a
// nested call) runs its parts one after another on the caller instead of waiting.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

namespace rnnext {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Cores this process may run on (affinity mask, so containers and taskset are respected).
inline int available_cores() {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
    return std::max(1u, std::thread::hardware_concurrency());
}

class ThreadPool {
public:
    static ThreadPool& get() {
        static bool registered = register_fork_handler();
        (void)registered;
        return *instance();
    }

    int size() const { return nthreads_.load(std::memory_order_relaxed); }

    // Sets the number of threads, the caller included; workers start at the next run().
    void resize(int n) {
        std::lock_guard<std::mutex> busy(run_mu_);
        stop_workers();
        nthreads_.store(std::max(1, n), std::memory_order_relaxed);
    }

    template <class F>
    void run(int n, F&& fn) {
        n = std::min(n, size());
        if (!run_team(n, fn)) serial(n, fn);
    }

    // Runs fn(0..n-1) on n threads at once and returns true, or runs nothing and returns
    // false when that is not possible now (pool busy or smaller than n, nested call). Parts
    // that wait for each other (a barrier) need this guarantee.
    template <class F>
    bool run_team(int n, F&& fn) {
        if (n <= 1 || n > size() || in_worker()) return false;
        std::unique_lock<std::mutex> busy(run_mu_, std::try_to_lock);
        if (!busy.owns_lock()) return false;
        if (static_cast<int>(workers_.size()) != size() - 1) start_workers();
        using Fn = typename std::remove_reference<F>::type;
        job_call_ = [](void* ctx, int i) noexcept { (*static_cast<Fn*>(ctx))(i); };
        job_ctx_ = const_cast<void*>(static_cast<const void*>(&fn));
        job_n_ = n;
        pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
        {
            std::lock_guard<std::mutex> lk(mu_);
            gen_.fetch_add(1, std::memory_order_release);
        }
        cv_work_.notify_all();
        fn(0);
        for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
            if (spin < kSpin) {
                cpu_relax();
            } else {
                std::unique_lock<std::mutex> lk(mu_);
                cv_done_.wait(lk, [&] { return pending_.load(std::memory_order_acquire) == 0; });
            }
        }
        return true;
    }

private:
    static constexpr int kSpin = 4000;  // tens of microseconds before a waiting thread sleeps

    explicit ThreadPool(int n) : nthreads_(n) {}

    static int default_threads() {
        if (const char* env = std::getenv("RNNEXT_NUM_THREADS")) {
            int n = std::atoi(env);
            if (n > 0) return n;
        }
        return available_cores();
    }

    static ThreadPool*& instance() {
        // Never destroyed: workers may still sleep in it while the interpreter exits.
        static ThreadPool* pool = new ThreadPool(default_threads());
        return pool;
    }

    // After fork() only the forking thread exists in the child: forget the parent's workers
    // (they cannot be joined there) and start afresh with the same thread count.
    static bool register_fork_handler() {
#if defined(__linux__)
        pthread_atfork(nullptr, nullptr, [] { instance() = new ThreadPool(instance()->size()); });
#endif
        return true;
    }

    static bool& in_worker() {
        static thread_local bool flag = false;
        return flag;
    }

    template <class F>
    static void serial(int n, F& fn) {
        for (int i = 0; i < n; ++i) fn(i);
    }

    void start_workers() {
        stop_workers();
        const unsigned seen = gen_.load(std::memory_order_acquire);
        for (int id = 1; id < size(); ++id) workers_.emplace_back([this, id, seen] { work(id, seen); });
    }

    void stop_workers() {
        if (workers_.empty()) return;
        {
            std::lock_guard<std::mutex> lk(mu_);
            stop_ = true;
        }
        cv_work_.notify_all();
        for (auto& w : workers_) w.join();
        workers_.clear();
        stop_ = false;
    }

    void work(int id, unsigned seen) {
        in_worker() = true;
        for (;;) {
            unsigned g;
            for (int spin = 0; (g = gen_.load(std::memory_order_acquire)) == seen; ++spin) {
                if (spin < kSpin) {
                    cpu_relax();
                } else {
                    std::unique_lock<std::mutex> lk(mu_);
                    cv_work_.wait(lk, [&] { return stop_ || gen_.load(std::memory_order_acquire) != seen; });
                    if (stop_) return;
                }
            }
            seen = g;
            if (id < job_n_) job_call_(job_ctx_, id);
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                std::lock_guard<std::mutex> lk(mu_);
                cv_done_.notify_one();
            }
        }
    }

    std::atomic<int> nthreads_;
    std::mutex run_mu_;  // held by the one running job
    std::mutex mu_;
    std::condition_variable cv_work_, cv_done_;
    std::atomic<unsigned> gen_{0};
    std::atomic<int> pending_{0};
    bool stop_ = false;
    void (*job_call_)(void*, int) noexcept = nullptr;
    void* job_ctx_ = nullptr;
    int job_n_ = 0;
    std::vector<std::thread> workers_;
};

// Threads of one run_team() job waiting for each other, e.g. once per time step. Spins
// first (a step takes microseconds), then yields the core to whoever needs it.
class SpinBarrier {
public:
    explicit SpinBarrier(int n) : n_(n) {}
    void wait() {
        const unsigned g = gen_.load(std::memory_order_acquire);
        if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
            count_.store(0, std::memory_order_relaxed);
            gen_.fetch_add(1, std::memory_order_release);
            return;
        }
        for (int spin = 0; gen_.load(std::memory_order_acquire) == g; ++spin) {
            if (spin < 20000)
                cpu_relax();
            else
                std::this_thread::yield();
        }
    }

private:
    const int n_;
    std::atomic<int> count_{0};
    std::atomic<unsigned> gen_{0};
};

inline int get_num_threads() { return ThreadPool::get().size(); }
inline void set_num_threads(int n) { ThreadPool::get().resize(n); }

// Calls fn(i) for i in [0, n) across the pool (n is capped at the thread count).
template <class F>
inline void parallel_run(int n, F&& fn) {
    ThreadPool::get().run(n, fn);
}

// Calls fn(i) for i in [0, n) on n threads at once, or returns false having called nothing.
template <class F>
inline bool parallel_team(int n, F&& fn) {
    return ThreadPool::get().run_team(n, fn);
}

}  // namespace rnnext
