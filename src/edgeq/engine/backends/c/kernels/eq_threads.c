/* Parallel regions on a persistent pool of POSIX threads: eq_parallel(fn, ctx, nt) runs
 * fn(ctx, t, nt) once for every t < nt and returns when all are done. Kernels split
 * disjoint output ranges by t, so no locking is needed inside them.
 *
 * Why a pool: creating and joining threads per layer costs tens of microseconds, more
 * than a small layer takes. Workers are started once and wait for the next region by
 * spinning on a generation counter for a while (while a model runs, regions follow each
 * other within microseconds), then sleep on a condition variable (between runs).
 * Shares are claimed, not assigned: the caller and the workers take indices t from an
 * atomic counter, so when a worker is not scheduled in time (a loaded machine) the caller
 * runs its share instead of waiting for it. Built without EQ_THREADS (a target without
 * pthreads), every t runs in turn on the caller. */
#define _POSIX_C_SOURCE 200809L
#include "eq_kernels.h"

#ifdef EQ_THREADS
#include <pthread.h>
#include <sched.h>

#define EQ_SPIN_IDLE 20000 /* polls of a waiting worker before it sleeps */
#define EQ_SPIN_JOIN 2000  /* polls of the caller waiting for a share before it yields */

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

static void *worker(void *arg) {
    unsigned seen = (unsigned)(size_t)arg; /* the region current at creation */
    for (;;) {
        int spins = 0;
        while (__atomic_load_n(&pool.gen, __ATOMIC_SEQ_CST) == seen) {
            if (++spins < EQ_SPIN_IDLE) {
                relax();
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

void eq_parallel(eq_task fn, void *ctx, int nt) {
    if (nt > EQ_MAX_THREADS) nt = EQ_MAX_THREADS;
#ifdef EQ_THREADS
    if (nt > 1) {
        ensure_workers(nt - 1);
        pool.fn = fn;
        pool.ctx = ctx;
        pool.nt = nt;
        __atomic_store_n(&pool.done, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&pool.next, 0, __ATOMIC_RELEASE);
        __atomic_add_fetch(&pool.gen, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&pool.sleepers, __ATOMIC_SEQ_CST) > 0) {
            pthread_mutex_lock(&pool.mu);
            pthread_cond_broadcast(&pool.cv);
            pthread_mutex_unlock(&pool.mu);
        }
        run_shares();
        int spins = 0;
        while (__atomic_load_n(&pool.done, __ATOMIC_ACQUIRE) < nt)
            if (++spins < EQ_SPIN_JOIN) relax(); else sched_yield();
        return;
    }
#endif
    for (int t = 0; t < nt; t++) fn(ctx, t, nt);
}
