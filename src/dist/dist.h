/* dist: the few MPI operations latent needs, behind one interface that also
 * compiles without MPI (a job of one process).
 *
 * Waiting never spins: OpenMPI's blocking calls poll the CPU at full speed,
 * which on a shared machine steals a core from the rank doing the work. Waits
 * that can be long (for work, for results, at barriers) therefore test for
 * completion and sleep a millisecond in between. Only the per-batch gradient
 * exchange of data-parallel training blocks, where ranks wait on each other
 * for a fraction of a step at most. */
#ifndef LATENT_DIST_H
#define LATENT_DIST_H

#include "core/core.h"

struct lt_dist {
    int rank, size;
    int mpi;          /* MPI_Init was called by us */
    float *gbuf;      /* gradient exchange buffers, grown on demand */
    size_t gcap;
    double *lbuf;
    size_t lcap;
};

/* Point-to-point messages of bytes with a tag. */
int lt_dist_send(lt_dist *d, int to, int tag, const void *buf, size_t n, lt_err *err);
/* Non-blocking: 1 and a malloc'ed message when one from anyone is waiting, 0 when none. */
int lt_dist_poll(lt_dist *d, int *from, int *tag, void **buf, size_t *n, lt_err *err);
/* Sleep a little between polls. */
void lt_dist_nap(void);
/* A barrier that sleeps while it waits. */
int lt_dist_barrier(lt_dist *d, lt_err *err);
/* 1 on every rank when flag is non-zero on any. */
int lt_dist_any(lt_dist *d, int flag);
/* The same rc on every rank: the most negative one (0 when all are 0). */
int lt_dist_agree(lt_dist *d, int rc, lt_err *err);

/* Data-parallel training: the chunks [c0, c1) of a batch of nch chunks that this
 * rank computes, and the exchange that hands every rank every chunk's gradient
 * and loss (see lt_workspace.exchange). */
struct lt_workspace;
/* Set ws up to compute this rank's share of every batch and exchange it (NULL or one rank: no-op). */
void lt_dist_attach(lt_dist *d, struct lt_workspace *ws);

#endif
