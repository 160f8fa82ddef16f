/* Fork-join over POSIX threads: run fn(ctx, t, nt) for t < nt, t = 0 on the caller.
 * Kernels split disjoint output ranges by t, so no locking is needed. Built without
 * EQ_THREADS (a target without pthreads), every t runs in turn on the caller. */
#define _POSIX_C_SOURCE 200809L
#include "eq_kernels.h"

#ifdef EQ_THREADS
#include <pthread.h>

typedef struct {
    eq_task fn;
    void *ctx;
    int t, nt;
} eq_job;

static void *eq_run_job(void *arg) {
    const eq_job *j = (const eq_job *)arg;
    j->fn(j->ctx, j->t, j->nt);
    return NULL;
}
#endif

void eq_parallel(eq_task fn, void *ctx, int nt) {
    if (nt > EQ_MAX_THREADS) nt = EQ_MAX_THREADS;
#ifdef EQ_THREADS
    if (nt > 1) {
        pthread_t th[EQ_MAX_THREADS];
        eq_job jobs[EQ_MAX_THREADS];
        int started[EQ_MAX_THREADS] = {0};
        for (int t = 1; t < nt; t++) {
            jobs[t] = (eq_job){fn, ctx, t, nt};
            started[t] = pthread_create(&th[t], NULL, eq_run_job, &jobs[t]) == 0;
            if (!started[t]) fn(ctx, t, nt); /* no thread: do its share here */
        }
        fn(ctx, 0, nt);
        for (int t = 1; t < nt; t++)
            if (started[t]) pthread_join(th[t], NULL);
        return;
    }
#endif
    for (int t = 0; t < nt; t++) fn(ctx, t, nt);
}
