/* Parallel regions on a persistent pool of POSIX threads: eq_parallel(fn, ctx, nt) runs
 * fn(ctx, t, nt) once for every t < nt and returns when all are done. Kernels split
 * disjoint output ranges by t, so no locking is needed inside them.
 * eq_parallel_shares(fn, ctx, shares, nt) is the same with `shares` pieces of work run by
 * up to nt threads (for kernels without per-thread scratch: fn's t is a share index).
 *
 * Why a pool: creating and joining threads per layer costs tens of microseconds, more
 * than a small layer takes. Workers are started once and wait for the next region by
 * spinning on a generation counter for at most EQ_SPIN_IDLE_NS (while a model runs,
 * regions follow each other within microseconds), then sleep on a condition variable
 * (between runs, and during a stretch of one-thread layers: no spinning against the
 * other processes of a shared machine for longer than that).
 * Shares are claimed, not assigned: the caller and the workers take indices t from an
 * atomic counter, so when a worker is not scheduled in time (a loaded machine) the caller
 * runs its share instead of waiting for it; with more shares than threads, a worker that
 * is preempted in the middle of one holds back only that small share. Built without
 * EQ_THREADS (a target without pthreads), every t runs in turn on the caller. */
#define _POSIX_C_SOURCE 200809L
#include "eq_kernels.h"

#ifdef EQ_THREADS
#include <pthread.h>
#include <sched.h>

#include <time.h>

#define EQ_SPIN_IDLE_NS 100000L /* a waiting worker polls this long, then sleeps */
#define EQ_SPIN_PAUSE_NS 5000L   /* ... the first part with pause, then with sched_yield */
#define EQ_SPIN_JOIN 2000       /* polls of the caller waiting for a share before it yields */
/* A join that waits longer than EQ_STALL_NS means a worker was preempted inside its share
 * (an oversubscribed machine): the next EQ_BACKOFF regions run on the caller alone, so a
 * loaded machine costs a thread run at most one stall per EQ_BACKOFF regions. */
#define EQ_STALL_NS 200000L
#define EQ_BACKOFF 64
static int backoff; /* regions left to run on the caller alone (touched by the caller only) */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    eq_task fn;
    void *ctx;
    int nt;
    unsigned gen;  /* region number: waiting workers wake when it changes */
    int next;      /* next share index to claim */
    int done;      /* shares finished */
    int sleepers;  /* workers in pthread_cond_wait (under mu) */
    int started;   /* workers created */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0, 0, 0};

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claim and run shares of the current region until none is left. */
static void run_shares(void) {
    for (;;) {
        const int t = __atomic_fetch_add(&pool.next, 1, __ATOMIC_ACQ_REL);
        const int nt = pool.nt; /* published before next was reset (release) */
        if (t >= nt) return;
        pool.fn(pool.ctx, t, nt);
        __atomic_add_fetch(&pool.done, 1, __ATOMIC_RELEASE);
    }
}

static long elapsed_ns(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)(t.tv_sec - t0->tv_sec) * 1000000000L + (t.tv_nsec - t0->tv_nsec);
}

static void *worker(void *arg) {
    unsigned seen = (unsigned)(size_t)arg; /* the region current at creation */
    for (;;) {
        int spins = 0;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (__atomic_load_n(&pool.gen, __ATOMIC_SEQ_CST) == seen) {
            if (++spins % 64 != 0) {
                relax();
                continue;
            }
            const long ns = elapsed_ns(&t0);
            if (ns < EQ_SPIN_IDLE_NS) {
                /* after the first microseconds, give the core away between polls: the
                 * runnable task on it may be our own caller (an oversubscribed machine) */
                if (ns > EQ_SPIN_PAUSE_NS) sched_yield();
                continue;
            }
            pthread_mutex_lock(&pool.mu);
            __atomic_add_fetch(&pool.sleepers, 1, __ATOMIC_SEQ_CST);
            while (__atomic_load_n(&pool.gen, __ATOMIC_SEQ_CST) == seen)
                pthread_cond_wait(&pool.cv, &pool.mu);
            __atomic_sub_fetch(&pool.sleepers, 1, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&pool.mu);
        }
        seen = __atomic_load_n(&pool.gen, __ATOMIC_SEQ_CST);
        run_shares();
    }
    return NULL;
}

static void ensure_workers(int n) {
    while (pool.started < n) {
        pthread_t th;
        if (pthread_create(&th, NULL, worker, (void *)(size_t)pool.gen) != 0) return;
        pthread_detach(th);
        pool.started++;
    }
}
#endif

void eq_parallel_shares(eq_task fn, void *ctx, int shares, int nt) {
    if (nt > EQ_MAX_THREADS) nt = EQ_MAX_THREADS;
    if (nt > shares) nt = shares;
#ifdef EQ_THREADS
    if (nt > 1 && backoff > 0) {
        backoff--;
    } else if (nt > 1) {
        ensure_workers(nt - 1);
        pool.fn = fn;
        pool.ctx = ctx;
        pool.nt = shares;
        __atomic_store_n(&pool.done, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&pool.next, 0, __ATOMIC_RELEASE);
        __atomic_add_fetch(&pool.gen, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&pool.sleepers, __ATOMIC_SEQ_CST) > 0) {
            pthread_mutex_lock(&pool.mu);
            pthread_cond_broadcast(&pool.cv);
            pthread_mutex_unlock(&pool.mu);
        }
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        run_shares();
        if (__atomic_load_n(&pool.done, __ATOMIC_ACQUIRE) < shares) {
            const long run_ns = elapsed_ns(&t0); /* the caller's own shares */
            struct timespec t1;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            int spins = 0;
            while (__atomic_load_n(&pool.done, __ATOMIC_ACQUIRE) < shares)
                if (++spins < EQ_SPIN_JOIN) relax(); else sched_yield();
            /* waiting for a worker's last share takes at most about one share, and the
             * caller ran at least one: a longer wait is a preempted worker, not a big layer */
            const long wait_ns = elapsed_ns(&t1);
            if (wait_ns > EQ_STALL_NS && wait_ns > run_ns) backoff = EQ_BACKOFF;
        }
        return;
    }
#endif
    for (int t = 0; t < shares; t++) fn(ctx, t, shares);
}

void eq_parallel(eq_task fn, void *ctx, int nt) {
    if (nt > EQ_MAX_THREADS) nt = EQ_MAX_THREADS;
    eq_parallel_shares(fn, ctx, nt < 1 ? 1 : nt, nt);
}
