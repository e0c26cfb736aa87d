/* Processes of an MPI job; see dist.h. Without MPI (LATENT_HAVE_MPI unset)
 * every job has one process and the exchange functions are never reached. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/dist.h"
#include "nn/net.h"

#ifdef LATENT_HAVE_MPI
#include <mpi.h>
#endif

int lt_dist_built(void)
{
#ifdef LATENT_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

int lt_dist_rank(const lt_dist *d) { return d ? d->rank : 0; }
int lt_dist_size(const lt_dist *d) { return d ? d->size : 1; }

void lt_dist_nap(void) { nanosleep(&(struct timespec){0, 1000000}, NULL); }

/* The size of the job a launcher (OpenMPI's mpirun, Slurm's srun with PMI) says we are part of. */
static int launched_size(void)
{
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 0;
}

int lt_dist_init(lt_dist **out, int *argc, char ***argv, lt_err *err)
{
    *out = NULL;
    lt_dist *d = lt_calloc(1, sizeof *d, err);
    if (!d) return LT_ENOMEM;
    d->size = 1;
    int launched = launched_size();
#ifdef LATENT_HAVE_MPI
    if (launched > 0) {
        int provided = 0;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            free(d);
            return lt_errf(err, LT_EIO, "MPI_Init failed");
        }
        d->mpi = 1;
        MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &d->size);
        /* Errors come back as codes, so we can say what failed. */
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    }
#else
    (void)argc, (void)argv;
    if (launched > 1) {
        free(d);
        return lt_errf(err, LT_ENOTSUP, "started by mpirun with %d processes, but this latent was built without MPI: "
                       "install libopenmpi-dev and rebuild (CMake finds it), or run one process", launched);
    }
#endif
    *out = d;
    return 0;
}

void lt_dist_finalize(lt_dist *d)
{
    if (!d) return;
#ifdef LATENT_HAVE_MPI
    if (d->mpi) MPI_Finalize();
#endif
    free(d->gbuf);
    free(d->lbuf);
    free(d);
}

#ifdef LATENT_HAVE_MPI
static int mpi_fail(lt_err *err, int code, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, msg, &len);
    return lt_errf(err, LT_EIO, "MPI: %s failed: %s", what, msg);
}

/* Wait for a request, sleeping between tests. */
static int wait_napping(MPI_Request *req, lt_err *err, const char *what)
{
    for (;;) {
        int done = 0, rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, what);
        if (done) return 0;
        lt_dist_nap();
    }
}
#endif

int lt_dist_send(lt_dist *d, int to, int tag, const void *buf, size_t n, lt_err *err)
{
#ifdef LATENT_HAVE_MPI
    if (d && d->mpi) {
        if (n > (size_t)0x7fffffff) return lt_errf(err, LT_EINVAL, "MPI message of %zu bytes is too large", n);
        MPI_Request req;
        int rc = MPI_Isend(buf, (int)n, MPI_BYTE, to, tag, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "send");
        return wait_napping(&req, err, "send");
    }
#endif
    (void)d, (void)to, (void)tag, (void)buf, (void)n;
    return lt_errf(err, LT_EINVAL, "no other process to send to");
}

int lt_dist_poll(lt_dist *d, int *from, int *tag, void **buf, size_t *n, lt_err *err)
{
#ifdef LATENT_HAVE_MPI
    if (d && d->mpi) {
        int flag = 0, count = 0;
        MPI_Status st;
        int rc = MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "probe");
        if (!flag) return 0;
        MPI_Get_count(&st, MPI_BYTE, &count);
        void *p = lt_malloc(count > 0 ? (size_t)count : 1, err);
        if (!p) return LT_ENOMEM;
        rc = MPI_Recv(p, count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            free(p);
            return mpi_fail(err, rc, "receive");
        }
        *from = st.MPI_SOURCE, *tag = st.MPI_TAG, *buf = p, *n = (size_t)count;
        return 1;
    }
#endif
    (void)d, (void)from, (void)tag, (void)buf, (void)n, (void)err;
    return 0;
}

int lt_dist_barrier(lt_dist *d, lt_err *err)
{
#ifdef LATENT_HAVE_MPI
    if (d && d->mpi && d->size > 1) {
        MPI_Request req;
        int rc = MPI_Ibarrier(MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "barrier");
        return wait_napping(&req, err, "barrier");
    }
#endif
    (void)d, (void)err;
    return 0;
}

int lt_dist_any(lt_dist *d, int flag)
{
    flag = flag != 0;
#ifdef LATENT_HAVE_MPI
    if (d && d->mpi && d->size > 1) {
        int all = flag;
        MPI_Allreduce(&flag, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        return all;
    }
#endif
    (void)d;
    return flag;
}

int lt_dist_agree(lt_dist *d, int rc, lt_err *err)
{
#ifdef LATENT_HAVE_MPI
    if (d && d->mpi && d->size > 1) {
        int all = rc;
        MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        if (all != rc && rc == 0) return lt_errf(err, all, "another process of the MPI job failed (see its message)");
        return all;
    }
#endif
    (void)d, (void)err;
    return rc;
}

#ifdef LATENT_HAVE_MPI
/* Every rank gets every chunk's gradient and loss, then sums in chunk order
 * exactly as one process does. Gathering chunks rather than partial sums is
 * what keeps the result bit-identical: float addition is not associative. */
static void exchange(void *ctx, lt_workspace *ws, int nch, size_t n_params)
{
    lt_dist *d = ctx;
    const int P = d->size;
    int counts[1024], displs[1024], lcounts[1024], ldispls[1024];
    if (P > 1024) MPI_Abort(MPI_COMM_WORLD, 1);
    size_t need = (size_t)nch * n_params;
    if (need > d->gcap) {
        free(d->gbuf);
        d->gbuf = malloc(sizeof(float) * need);
        d->gcap = need;
    }
    /* Per chunk: its loss, its KL (VAE) and its right answers (classifier). */
    if ((size_t)nch * 3 > d->lcap) {
        free(d->lbuf);
        d->lbuf = malloc(sizeof(double) * 3 * (size_t)nch);
        d->lcap = 3 * (size_t)nch;
    }
    if (!d->gbuf || !d->lbuf || need > 0x7fffffff) {
        /* Nothing sensible can continue: the ranks would disagree. */
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (int r = 0; r < P; r++) {
        int a = nch * r / P, b = nch * (r + 1) / P;
        counts[r] = (b - a) * (int)n_params, displs[r] = a * (int)n_params;
        lcounts[r] = 3 * (b - a), ldispls[r] = 3 * a;
    }
    int a = nch * d->rank / P, b = nch * (d->rank + 1) / P;
    for (int c = a; c < b; c++) memcpy(d->gbuf + (size_t)c * n_params, ws->chunks[c].grads, sizeof(float) * n_params);
    for (int c = a; c < b; c++)
        d->lbuf[3 * c] = ws->chunk_loss[c], d->lbuf[3 * c + 1] = ws->chunk_kl[c], d->lbuf[3 * c + 2] = ws->chunk_correct[c];
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, d->gbuf, counts, displs, MPI_FLOAT, MPI_COMM_WORLD);
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, d->lbuf, lcounts, ldispls, MPI_DOUBLE, MPI_COMM_WORLD);
    for (int c = 0; c < nch; c++) {
        if (c >= a && c < b) continue;
        memcpy(ws->chunks[c].grads, d->gbuf + (size_t)c * n_params, sizeof(float) * n_params);
        ws->chunk_loss[c] = d->lbuf[3 * c], ws->chunk_kl[c] = d->lbuf[3 * c + 1];
        ws->chunk_correct[c] = (int)d->lbuf[3 * c + 2];
    }
}
#endif

void lt_dist_attach(lt_dist *d, lt_workspace *ws)
{
#ifdef LATENT_HAVE_MPI
    if (d && d->mpi && d->size > 1) {
        ws->part = d->rank, ws->parts = d->size;
        ws->exchange = exchange, ws->exchange_ctx = d;
    }
#else
    (void)d, (void)ws;
#endif
}
