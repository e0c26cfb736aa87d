/* Random search with k-fold cross-validation (lt_search).
 *
 * The work is a grid of units, one per trial and fold; each is an lt_train
 * run in its own directory, so an interrupted unit resumes bit-identically and
 * a finished one (its fold.json agrees with the trial) is never trained again.
 * A unit's result is a pure function of the seed, its trial's hyperparameters
 * and its fold, so the table does not depend on which process ran what, on
 * threads, or on interruptions.
 *
 * Process 0 hands out units and records results; with MPI the other processes
 * ask for work and send back results. Process 0 trains units too, and serves
 * the others between batches (from the progress callback), so N processes
 * train N units at a time.
 *
 * Median pruning needs, for unit (t, f), the curves of every earlier trial at
 * fold f, and a pruned fold ends its trial. So with pruning on, (t, f) waits
 * for (t-1, f) and (t, f-1): the decisions are then the ones a single process
 * makes in trial order, whatever the number of processes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dist/dist.h"
#include "io/safetensors.h"
#include "train/search.h"

enum { TAG_HELLO = 1, TAG_WORK, TAG_RESULT, TAG_STOP, TAG_REFIT };

typedef struct run {
    search S;
    const lt_dataset *train;
    int *fold_of;
    lt_search_progress_fn progress;
    void *ctx;
    lt_dist *dist;
    int rank, size;
    /* the unit this process is training */
    int cur_t, cur_f;
    const double *thr;      /* pruning thresholds per epoch (NaN: no pruning there) */
    int pruned;
    volatile int stop_any;  /* the user's stop, or this unit pruned */
    int stop_msg;           /* worker: process 0 asked to stop */
    /* process 0's bookkeeping */
    int *busy;              /* [size] unit a worker runs, -1 idle, -2 not yet said hello */
    int *stopped;           /* [size] a stop was sent to that worker */
    int stopping;
    int fatal;
    lt_err fatal_err;
    double t0;
    double work_total, work_before, work_session, live_work;
    int units_done;
} run;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Scores as the training state stores them (8 significant digits), so a value
 * seen live and one read back after a restart are the same number. */
static double round8(double v)
{
    char b[40];
    snprintf(b, sizeof b, "%.8g", v);
    return strtod(b, NULL);
}

static int user_stop(const run *R) { return R->S.cfg->stop && *R->S.cfg->stop; }

static int fold_size(const run *R, int f)
{
    int n = 0;
    for (int i = 0; i < R->S.pool; i++) n += R->fold_of[i] == f;
    return n;
}

/* Work of a unit, in images seen: what the ETA counts. */
static double unit_work(const run *R, int t, int f)
{
    return (double)R->S.hp[t].epochs * (R->S.pool - (f >= 0 ? fold_size(R, f) : 0));
}

/* ---- a fold's training state ---- */

/* Epochs done, the validation curve and the training seconds of the run in dir. */
static int read_run(const char *dir, int epochs, int *exists, int *epoch, double *curve, double *seconds, lt_err *err)
{
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof path, "%s/train_state.safetensors", dir);
    *exists = stat(path, &sb) == 0, *epoch = 0, *seconds = 0;
    for (int e = 0; e < epochs; e++) curve[e] = NAN;
    if (!*exists) return 0;
    lt_st_file f;
    int rc = lt_st_read(path, &f, err);
    if (rc) return rc;
    const char *ep = lt_st_meta(&f, "epoch"), *metrics = lt_st_meta(&f, "metrics");
    if (!ep || !metrics) rc = lt_errf(err, LT_EFORMAT, "%s: training state without epoch or metrics", path);
    if (!rc) *epoch = atoi(ep);
    /* Rows "epoch,train_loss,val_loss,seconds,images_per_sec" after a header. */
    for (const char *line = rc ? NULL : strchr(metrics, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        int e;
        double tr, val, secs;
        char vtext[64];
        if (sscanf(line + 1, "%d,%lf,%63[^,],%lf", &e, &tr, vtext, &secs) != 4) continue;
        val = strtod(vtext, NULL);
        if (e >= 1 && e <= epochs) curve[e - 1] = val;
        *seconds += secs;
    }
    lt_st_free(&f);
    return rc;
}

/* The first epoch (1-based) at which the median rule stops a fold with this
 * curve, or 0. Never at the last epoch: finishing costs nothing more. */
static int prune_epoch(const run *R, const double *curve, int done, int epochs, const double *thr)
{
    if (!R->S.cfg->prune || !thr) return 0;
    for (int e = 1; e <= done && e < epochs; e++)
        if (e > R->S.cfg->prune_warmup && isfinite(thr[e - 1]) && curve[e - 1] > thr[e - 1]) return e;
    return 0;
}

static void serve(run *R);

static double search_eta(const run *R)
{
    double done = R->work_session + R->live_work, el = now() - R->t0;
    double left = R->work_total - R->work_before - done;
    return done > 0 && left > 0 ? el / done * left : 0;
}

static void unit_progress(void *ctx, const lt_progress *p)
{
    run *R = ctx;
    if (p->epoch_done && R->thr && R->S.cfg->prune) {
        /* The same rule prune_epoch applies on resume, on the stored value. */
        if (p->epoch < p->epochs && p->epoch > R->S.cfg->prune_warmup && isfinite(R->thr[p->epoch - 1]) &&
            round8(p->val_loss) > R->thr[p->epoch - 1])
            R->pruned = 1;
    }
    if (R->rank == 0) serve(R);
    else if (R->size > 1) {
        /* A worker listens for process 0's stop between batches. */
        int from, tag;
        void *buf;
        size_t n;
        if (lt_dist_poll(R->dist, &from, &tag, &buf, &n, NULL) == 1) {
            if (tag == TAG_STOP) R->stop_msg = 1;
            free(buf);
        }
    }
    R->stop_any = user_stop(R) || R->pruned || R->stop_msg;
    if (R->cur_f >= 0 || R->rank == 0) {
        double per_epoch = unit_work(R, R->cur_t, R->cur_f) / R->S.hp[R->cur_t].epochs;
        R->live_work = per_epoch * ((p->epoch - 1) + (double)p->batch / p->batches);
    }
    if (R->progress && R->rank == 0) {
        lt_search_progress sp = {.trial = R->cur_t, .fold = R->cur_f, .rank = R->rank, .epoch = p->epoch,
                                 .epochs = p->epochs, .batch = p->batch, .batches = p->batches,
                                 .train_loss = p->train_loss, .units_done = R->units_done, .units = R->S.T * R->S.K,
                                 .epoch_done = p->epoch_done, .val_loss = p->val_loss, .eta_seconds = search_eta(R)};
        R->progress(R->ctx, &sp);
    }
}

/* Train (or resume, or just read) unit (t, f) into *out. */
static int run_unit(run *R, int t, int f, const double *thr, unit_res *out, lt_err *err)
{
    const lt_hparams *h = &R->S.hp[t];
    char dir[4096];
    int rc = lt_search_unit_dir(&R->S, t, f, dir, sizeof dir, err);
    if (rc) return rc;
    int exists, epoch;
    if ((rc = read_run(dir, h->epochs, &exists, &epoch, out->curve, &out->seconds, err))) return rc;
    out->score = NAN;
    out->epochs_run = epoch;
    int pe = exists ? prune_epoch(R, out->curve, epoch, h->epochs, thr) : 0;
    if (pe) {
        out->status = LT_FOLD_PRUNED;
        return 0;
    }
    if (!exists || epoch < h->epochs) {
        const int n = R->S.pool, nv = fold_size(R, f);
        int *idx = lt_malloc(sizeof(int) * (size_t)n, err);
        if (!idx) return LT_ENOMEM;
        int nt = 0, k = n - nv;
        for (int i = 0; i < n; i++) {
            if (R->fold_of[i] == f) idx[k++] = i;
            else idx[nt++] = i;
        }
        lt_train_config c;
        lt_train_config_default(&c);
        c.out_dir = dir;
        c.latent = h->latent, c.epochs = h->epochs, c.batch = h->batch, c.lr = h->lr;
        c.weight_decay = h->weight_decay, c.momentum = h->momentum, c.dropout = (float)h->dropout;
        c.optimizer = h->optimizer, c.seed = R->S.cfg->seed, c.threads = R->S.cfg->threads;
        c.noise = R->S.cfg->noise;
        c.val = 0, c.limit = 0, c.resume = exists;
        c.train_idx = idx, c.n_train = nt, c.val_idx = idx + nt, c.n_val = nv;
        c.stop = &R->stop_any;
        R->cur_t = t, R->cur_f = f, R->thr = thr, R->pruned = 0, R->live_work = 0;
        R->stop_any = user_stop(R) || R->stop_msg;
        lt_train_result res;
        rc = R->stop_any ? lt_errf(err, LT_EINTR, "stopped") : lt_train(&c, R->train, unit_progress, R, &res, err);
        free(idx);
        R->thr = NULL, R->live_work = 0;
        int diverged = rc == LT_ENAN;
        if (rc == LT_EINTR && R->pruned) rc = 0;
        if (rc && !diverged) return rc;
        if ((rc = read_run(dir, h->epochs, &exists, &epoch, out->curve, &out->seconds, err))) return rc;
        out->epochs_run = epoch;
        if (diverged) {
            out->status = LT_FOLD_DIVERGED;
            return 0;
        }
        if (prune_epoch(R, out->curve, epoch, h->epochs, thr)) {
            out->status = LT_FOLD_PRUNED;
            return 0;
        }
    }
    out->status = LT_FOLD_DONE;
    out->score = out->curve[h->epochs - 1];
    return 0;
}

/* ---- process 0: which unit next ---- */

static int unit_ready(run *R, int u)
{
    const search *S = &R->S;
    if (S->u[u].status != LT_FOLD_TODO || S->owner[u] >= 0) return 0;
    if (!S->cfg->prune) return 1;
    int t = u / S->K, f = u % S->K;
    return (t == 0 || S->u[u - S->K].status != LT_FOLD_TODO) && (f == 0 || S->u[u - 1].status != LT_FOLD_TODO);
}

static void record(run *R, int u, lt_err *err);

/* The next unit in trial order that may start, or -1. A fold after a pruned one is skipped. */
static int next_unit(run *R)
{
    search *S = &R->S;
    for (int u = 0; u < S->T * S->K; u++) {
        if (!unit_ready(R, u)) continue;
        int f = u % S->K;
        if (S->cfg->prune && f > 0 && (S->u[u - 1].status == LT_FOLD_PRUNED || S->u[u - 1].status == LT_FOLD_SKIPPED)) {
            S->u[u].status = LT_FOLD_SKIPPED;
            record(R, u, NULL);
            continue;
        }
        return u;
    }
    return -1;
}

/* Pruning thresholds of unit u: per epoch, the median of earlier trials' validation losses at that fold and epoch. */
static void thresholds(const run *R, int u, double *thr)
{
    const search *S = &R->S;
    int t = u / S->K, f = u % S->K, E = S->hp[t].epochs;
    double *v = malloc(sizeof(double) * (size_t)(t + 1));
    for (int e = 0; e < E; e++) {
        int n = 0;
        for (int o = 0; v && o < t; o++) {
            const unit_res *r = &S->u[o * S->K + f];
            if (e < S->hp[o].epochs && r->epochs_run > e && isfinite(r->curve[e])) v[n++] = r->curve[e];
        }
        thr[e] = NAN;
        if (!v || !S->cfg->prune || n < S->cfg->prune_startup || n == 0) continue;
        for (int i = 1; i < n; i++) /* insertion sort: n is the number of trials */
            for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
                double x = v[j];
                v[j] = v[j - 1], v[j - 1] = x;
            }
        thr[e] = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    }
    free(v);
}

static void report(run *R, int u, int by_rank)
{
    if (!R->progress) return;
    const search *S = &R->S;
    const unit_res *r = &S->u[u];
    lt_search_progress sp = {.trial = u / S->K, .fold = u % S->K, .rank = by_rank, .unit_done = 1, .status = r->status,
                             .score = r->score, .unit_seconds = r->seconds, .units_done = R->units_done,
                             .units = S->T * S->K, .eta_seconds = search_eta(R)};
    R->progress(R->ctx, &sp);
}

/* A unit's result is in S->u[u]: count it and write its fold.json. */
static void record(run *R, int u, lt_err *err)
{
    search *S = &R->S;
    R->units_done++;
    R->work_session += unit_work(R, u / S->K, u % S->K);
    int rc = lt_search_write_unit(S, u / S->K, u % S->K, err ? err : &R->fatal_err);
    if (rc && !R->fatal) {
        R->fatal = rc;
        if (err) R->fatal_err = *err;
    }
}

static void set_fatal(run *R, int rc, const lt_err *e)
{
    if (R->fatal) return;
    R->fatal = rc;
    if (e) R->fatal_err = *e;
}

/* Message layout: doubles, then (results) the error text. */
static int send_work(run *R, int w, int u)
{
    const int E = R->S.hp[u / R->S.K].epochs;
    double *m = malloc(sizeof(double) * (size_t)(2 + E));
    if (!m) return LT_ENOMEM;
    m[0] = u, m[1] = E;
    thresholds(R, u, m + 2);
    lt_err e = {0};
    int rc = lt_dist_send(R->dist, w, TAG_WORK, m, sizeof(double) * (size_t)(2 + E), &e);
    free(m);
    if (rc) set_fatal(R, rc, &e);
    return rc;
}

/* Process 0, between batches and while idle: take in results, hand out work. */
static void serve(run *R)
{
    if (R->size <= 1) return;
    search *S = &R->S;
    int from, tag;
    void *buf;
    size_t n;
    lt_err e = {0};
    int got;
    while ((got = lt_dist_poll(R->dist, &from, &tag, &buf, &n, &e)) == 1) {
        if (tag == TAG_HELLO) {
            R->busy[from] = -1;
        } else if (tag == TAG_RESULT && n >= sizeof(double) * 7) {
            double *m = buf;
            int u = (int)m[0], rc = (int)m[1], E = (int)m[6];
            R->busy[from] = -1;
            if (u >= 0 && u < S->T * S->K) {
                S->owner[u] = -1;
                if (rc == 0 && E == S->hp[u / S->K].epochs && n >= sizeof(double) * (size_t)(7 + E)) {
                    unit_res *r = &S->u[u];
                    r->status = (lt_fold_status)(int)m[2], r->epochs_run = (int)m[3];
                    r->seconds = m[4], r->score = m[5];
                    memcpy(r->curve, m + 7, sizeof(double) * (size_t)E);
                    record(R, u, NULL);
                    report(R, u, from);
                } else if (rc == LT_EINTR) {
                    R->stopping = 1;
                } else {
                    lt_err we = {.code = rc};
                    size_t off = sizeof(double) * (size_t)(7 + (E > 0 ? E : 0));
                    snprintf(we.msg, sizeof we.msg, "process %d: %s", from,
                             n > off ? (const char *)buf + off : "failed");
                    set_fatal(R, rc ? rc : LT_EIO, &we);
                }
            }
        }
        free(buf);
    }
    if (got < 0) set_fatal(R, got, &e);
    if (R->stopping || R->fatal || user_stop(R)) return;
    for (int w = 1; w < R->size; w++) {
        if (R->busy[w] != -1) continue;
        int u = next_unit(R);
        if (u < 0) break;
        S->owner[u] = w;
        R->busy[w] = u;
        if (send_work(R, w, u)) return;
    }
}

/* Tell workers to stop (busy_only: those in the middle of a unit, which then
 * save it and report; the idle ones wait for the final word). */
static void stop_workers(run *R, int busy_only)
{
    for (int w = 1; w < R->size; w++) {
        if (R->stopped[w] || (busy_only && R->busy[w] < 0)) continue;
        R->stopped[w] = 1;
        lt_dist_send(R->dist, w, TAG_STOP, "", 0, NULL);
    }
}

static int all_done(const run *R)
{
    for (int u = 0; u < R->S.T * R->S.K; u++)
        if (R->S.u[u].status == LT_FOLD_TODO) return 0;
    return 1;
}

static int workers_busy(const run *R)
{
    for (int w = 1; w < R->size; w++)
        if (R->busy[w] >= 0) return 1;
    return 0;
}

/* Process 0's loop: until every unit has a result, or a stop or failure. */
static int coordinate(run *R, lt_err *err)
{
    search *S = &R->S;
    for (;;) {
        serve(R);
        if (user_stop(R)) R->stopping = 1;
        if (R->stopping || R->fatal) {
            /* Workers save their units and report before we leave. */
            stop_workers(R, 1);
            if (!workers_busy(R)) break;
            lt_dist_nap();
            continue;
        }
        if (all_done(R) && !workers_busy(R)) break;
        int u = next_unit(R);
        if (u < 0) {
            lt_dist_nap();
            continue;
        }
        S->owner[u] = 0;
        double *thr = malloc(sizeof(double) * (size_t)S->hp[u / S->K].epochs);
        if (!thr) return lt_errf(err, LT_ENOMEM, "out of memory");
        thresholds(R, u, thr);
        unit_res res = S->u[u];
        int rc = run_unit(R, u / S->K, u % S->K, thr, &res, err);
        free(thr);
        S->owner[u] = -1;
        if (rc == LT_EINTR) {
            R->stopping = 1;
            continue;
        }
        if (rc) {
            set_fatal(R, rc, err);
            continue;
        }
        S->u[u] = res;
        record(R, u, NULL);
        report(R, u, 0);
    }
    if (R->fatal) {
        if (err) *err = R->fatal_err;
        return R->fatal;
    }
    if (R->stopping)
        return lt_errf(err, LT_EINTR, "stopped; every fold is saved in %s/trials: continue with --resume", S->cfg->out_dir);
    return 0;
}

static int refit(run *R, int best, double *test_mse, double *seconds, const lt_dataset *test, lt_err *err);

/* A worker: ask for units, train them, send results, until process 0 says stop. */
static int work(run *R, lt_err *err)
{
    search *S = &R->S;
    int rc = lt_dist_send(R->dist, 0, TAG_HELLO, "", 0, err);
    while (!rc) {
        int from, tag;
        void *buf;
        size_t n;
        int got = lt_dist_poll(R->dist, &from, &tag, &buf, &n, err);
        if (got < 0) return got;
        if (!got) {
            lt_dist_nap();
            continue;
        }
        if (tag == TAG_STOP) {
            free(buf);
            break;
        }
        if (tag == TAG_REFIT) {
            int best = (int)((double *)buf)[0];
            free(buf);
            double mse, secs;
            rc = refit(R, best, &mse, &secs, NULL, err);
            continue;
        }
        if (tag != TAG_WORK || n < 2 * sizeof(double)) {
            free(buf);
            continue;
        }
        double *m = buf;
        int u = (int)m[0], E = S->hp[u / S->K].epochs;
        unit_res res = S->u[u];
        lt_err ue = {0};
        int urc = run_unit(R, u / S->K, u % S->K, m + 2, &res, &ue);
        free(buf);
        size_t len = sizeof(double) * (size_t)(7 + E) + strlen(ue.msg) + 1;
        double *out = calloc(1, len);
        if (!out) return lt_errf(err, LT_ENOMEM, "out of memory");
        out[0] = u, out[1] = urc, out[2] = res.status, out[3] = res.epochs_run, out[4] = res.seconds;
        out[5] = res.score, out[6] = E;
        memcpy(out + 7, res.curve, sizeof(double) * (size_t)E);
        strcpy((char *)(out + 7 + E), ue.msg);
        rc = lt_dist_send(R->dist, 0, TAG_RESULT, out, len, err);
        free(out);
        /* Told to stop mid-unit: that was process 0's last word to us. */
        if (R->stop_msg) break;
    }
    return rc;
}

static void refit_progress(void *ctx, const lt_progress *p)
{
    run *R = ctx;
    R->live_work = unit_work(R, R->cur_t, -1) / p->epochs * ((p->epoch - 1) + (double)p->batch / p->batches);
    if (R->progress && R->rank == 0) {
        lt_search_progress sp = {.trial = R->cur_t, .fold = -1, .epoch = p->epoch, .epochs = p->epochs,
                                 .batch = p->batch, .batches = p->batches, .train_loss = p->train_loss,
                                 .epoch_done = p->epoch_done, .val_loss = p->val_loss, .units_done = R->units_done,
                                 .units = R->S.T * R->S.K, .eta_seconds = search_eta(R)};
        R->progress(R->ctx, &sp);
    }
}

/* Train the best trial on every cross-validated image (data-parallel over all
 * processes, which all call this), then process 0 scores it on test. */
static int refit(run *R, int best, double *test_mse, double *seconds, const lt_dataset *test, lt_err *err)
{
    const lt_hparams *h = &R->S.hp[best];
    char dir[4096], path[4200];
    int rc = lt_search_unit_dir(&R->S, best, -1, dir, sizeof dir, err);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/train_state.safetensors", dir);
    struct stat sb;
    int exists = stat(path, &sb) == 0;
    lt_train_config c;
    lt_train_config_default(&c);
    c.out_dir = dir;
    c.latent = h->latent, c.epochs = h->epochs, c.batch = h->batch, c.lr = h->lr;
    c.weight_decay = h->weight_decay, c.momentum = h->momentum, c.dropout = (float)h->dropout;
    c.optimizer = h->optimizer, c.seed = R->S.cfg->seed, c.threads = R->S.cfg->threads;
    c.noise = R->S.cfg->noise;
    /* All the cross-validated images, none held out: the folds did the validation. */
    c.val = 0, c.limit = R->S.pool < R->train->n ? R->S.pool : 0, c.resume = exists;
    c.stop = R->S.cfg->stop;
    c.dist = R->dist;
    R->cur_t = best, R->cur_f = -1;
    lt_train_result res;
    rc = lt_train(&c, R->train, refit_progress, R, &res, err);
    /* A refit already finished leaves nothing to train: lt_train returns at once. */
    if (rc || R->rank != 0) return rc;
    int ex, ep;
    double *curve = malloc(sizeof(double) * (size_t)h->epochs);
    if (!curve) return lt_errf(err, LT_ENOMEM, "out of memory");
    rc = read_run(dir, h->epochs, &ex, &ep, curve, seconds, err);
    free(curve);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    lt_model *m = NULL;
    if (!rc) rc = lt_model_load(&m, path, err);
    if (!rc) rc = lt_model_eval_mse(m, test, 0, test->n, R->S.cfg->threads, test_mse, err);
    lt_model_free(m);
    return rc;
}

static int check_config(const lt_search_config *cfg, const lt_dataset *train, const lt_dataset *test, lt_err *err)
{
    if (!cfg->out_dir || !*cfg->out_dir) return lt_errf(err, LT_EINVAL, "--out: an output directory is required");
    if (cfg->n_fixed < 0 || cfg->n_fixed > LT_SEARCH_MAX_FIXED)
        return lt_errf(err, LT_EINVAL, "at most %d fixed trials, found %d", LT_SEARCH_MAX_FIXED, cfg->n_fixed);
    if (!cfg->n_fixed && (cfg->trials < 1 || cfg->trials > 100000))
        return lt_errf(err, LT_EINVAL, "--trials: expected 1 to 100000, found %d", cfg->trials);
    if (cfg->limit < 0) return lt_errf(err, LT_EINVAL, "--limit must be >= 0, found %d", cfg->limit);
    if (cfg->folds < 2 || cfg->folds > 64) return lt_errf(err, LT_EINVAL, "--folds: expected 2 to 64, found %d", cfg->folds);
    if (cfg->prune && (cfg->prune_startup < 1 || cfg->prune_warmup < 0))
        return lt_errf(err, LT_EINVAL, "--prune: expected at least 1 startup trial and 0 or more warmup epochs");
    if (cfg->refit && !test) return lt_errf(err, LT_EINVAL, "the refit needs the test split");
    if (!train || train->n < cfg->folds) return lt_errf(err, LT_EINVAL, "too few training images for %d folds", cfg->folds);
    return 0;
}

int lt_search(const lt_search_config *cfg, const lt_dataset *train, const lt_dataset *test,
              lt_search_progress_fn progress, void *ctx, lt_search_result *result, lt_err *err)
{
    if (result) memset(result, 0, sizeof *result);
    int rc = check_config(cfg, train, test, err);
    /* The other processes are about to agree on how the start went: answer them, or they wait forever. */
    if (rc) return lt_dist_agree(cfg->dist, rc, err);
    run R = {0};
    search *S = &R.S;
    S->cfg = cfg;
    S->kind_compare = cfg->n_fixed > 0;
    S->T = cfg->n_fixed ? cfg->n_fixed : cfg->trials;
    S->K = cfg->folds;
    S->pool = cfg->limit && cfg->limit < train->n ? cfg->limit : train->n;
    R.train = train, R.progress = progress, R.ctx = ctx, R.dist = cfg->dist;
    R.rank = lt_dist_rank(cfg->dist), R.size = lt_dist_size(cfg->dist);
    R.t0 = now();
    S->hp = lt_calloc((size_t)S->T, sizeof *S->hp, err);
    S->u = lt_calloc((size_t)S->T * S->K, sizeof *S->u, err);
    S->owner = lt_calloc((size_t)S->T * S->K, sizeof(int), err);
    R.fold_of = lt_calloc((size_t)S->pool, sizeof(int), err);
    R.busy = lt_calloc((size_t)R.size, sizeof(int), err);
    R.stopped = lt_calloc((size_t)R.size, sizeof(int), err);
    if (!S->hp || !S->u || !S->owner || !R.fold_of || !R.busy || !R.stopped) rc = LT_ENOMEM;
    for (int t = 0; !rc && t < S->T; t++) {
        if (cfg->n_fixed) S->hp[t] = cfg->fixed[t];
        else lt_space_draw(cfg->space, cfg->seed, t, &S->hp[t]);
        if (S->hp[t].epochs < 1) rc = lt_errf(err, LT_EINVAL, "--epochs must be positive");
    }
    for (int u = 0; !rc && u < S->T * S->K; u++) {
        S->owner[u] = -1;
        S->u[u].curve = lt_malloc(sizeof(double) * (size_t)S->hp[u / S->K].epochs, err);
        if (!S->u[u].curve) rc = LT_ENOMEM;
        else for (int e = 0; e < S->hp[u / S->K].epochs; e++) S->u[u].curve[e] = NAN;
        S->u[u].score = NAN;
    }
    for (int w = 0; !rc && w < R.size; w++) R.busy[w] = -2;
    if (!rc) rc = lt_kfold(S->pool, S->K, cfg->seed, R.fold_of, err);

    /* Process 0 checks the directory and the settings; the others wait for its word. */
    if (!rc && R.rank == 0) {
        char path[4200];
        struct stat sb;
        snprintf(path, sizeof path, "%s/search.json", cfg->out_dir);
        int have = stat(path, &sb) == 0;
        if (cfg->resume && !have) rc = lt_errf(err, LT_EINVAL, "--resume: %s holds no search (no search.json)", cfg->out_dir);
        else if (!cfg->resume && have)
            rc = lt_errf(err, LT_EINVAL, "--out %s already holds a search: pass --resume to continue it, or choose "
                         "another directory", cfg->out_dir);
        else if (!(rc = lt_mkdir_p(cfg->out_dir, err)))
            rc = have ? lt_search_check_settings(S, err) : lt_search_write_settings(S, err);
    }
    rc = lt_dist_agree(cfg->dist, rc, err);
    if (!rc) {
        for (int u = 0; u < S->T * S->K; u++) R.work_total += unit_work(&R, u / S->K, u % S->K);
        double e = 0;
        for (int t = 0; t < S->T; t++) e += S->hp[t].epochs;
        if (cfg->refit) R.work_total += e / S->T * S->pool;
    }
    if (!rc && R.rank == 0) {
        /* Finished folds, from an earlier invocation, are not trained again. */
        for (int u = 0; u < S->T * S->K; u++)
            if (lt_search_read_unit(S, u / S->K, u % S->K, &S->u[u])) {
                R.units_done++;
                R.work_before += unit_work(&R, u / S->K, u % S->K);
            }
        rc = coordinate(&R, err);
        lt_search_result res = {0};
        if (!rc) rc = lt_search_tables(S, &res, err);
        if (!rc) rc = lt_search_plots(S, &res, err);
        if (!rc && cfg->refit && res.best >= 0) {
            res.test_mse = NAN;
            if (!lt_search_read_best(S, res.best, &res.test_mse, &res.refit_seconds)) {
                double b = res.best;
                for (int w = 1; !rc && w < R.size; w++) rc = lt_dist_send(R.dist, w, TAG_REFIT, &b, sizeof b, err);
                if (!rc) rc = refit(&R, res.best, &res.test_mse, &res.refit_seconds, test, err);
                if (!rc) rc = lt_search_write_best(S, &res, err);
            }
        }
        res.seconds = now() - R.t0;
        if (result && !rc) *result = res;
        else lt_search_result_free(&res);
        stop_workers(&R, 0);
    } else if (!rc) {
        rc = work(&R, err);
    }
    for (int u = 0; S->u && u < S->T * S->K; u++) free(S->u[u].curve);
    free(S->u);
    free(S->hp);
    free(S->owner);
    free(R.fold_of);
    free(R.busy);
    free(R.stopped);
    return rc;
}
