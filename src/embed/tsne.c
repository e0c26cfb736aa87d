/* t-SNE to 2-D, the way the reference implementations do it (van der Maaten
 * 2014's bhtsne, scikit-learn, openTSNE):
 *  - affinities from the 3*perplexity nearest neighbours of each point, with
 *    the Gaussian's precision found by binary search so that the row's
 *    perplexity is the one asked for; symmetrised and normalised to sum 1;
 *  - gradient descent on KL(P||Q) with Student-t similarities in the map:
 *    exact attraction over the sparse P (single precision, 8 lanes at a
 *    time), Barnes-Hut repulsion over a quadtree (a cell of width w at
 *    distance r stands for its points when w/r < theta; bh.c), or
 *    FFT-accelerated interpolation (fft_repulsion.c);
 *  - early exaggeration (P times 12 for 250 iterations), momentum 0.5 then
 *    0.8, per-coordinate gains (+0.2 / *0.8, at least 0.01), learning rate
 *    max(n / exaggeration / 4, 50), PCA initialisation scaled to standard
 *    deviation 1e-4.
 * Threads split the points; every per-point quantity is computed by one
 * thread and every sum over points runs in index order afterwards, so the
 * map is bit-identical for any thread count. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "embed/embed.h"

void lt_tsne_config_default(lt_tsne_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->perplexity = 30;
    cfg->iters = 1000;
    cfg->theta = 0.5;
    cfg->exaggeration = 12;
    cfg->exaggeration_iters = 250;
    cfg->learning_rate = 0;
    cfg->momentum = 0.5;
    cfg->final_momentum = 0.8;
    cfg->init = LT_TSNE_INIT_PCA;
    cfg->knn = LT_KNN_AUTO;
    cfg->seed = 1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- affinities ---- */

/* Row i's conditional probabilities p_{j|i} over its k neighbours (squared
 * distances d2, ascending) for the given perplexity. Distances are taken
 * relative to the nearest one, which changes nothing after normalisation
 * but keeps exp() from underflowing for far-away points. */
static void calibrate_row(const float *d2, int k, double perplexity, double *p)
{
    const double target = log(perplexity), tol = 1e-5;
    double beta = 1, lo = -INFINITY, hi = INFINITY, d0 = d2[0];
    for (int it = 0; it < 200; it++) {
        double sum = 0, sdp = 0;
        for (int j = 0; j < k; j++) {
            double dd = d2[j] - d0;
            p[j] = exp(-dd * beta);
            sum += p[j];
            sdp += dd * p[j];
        }
        double h = log(sum) + beta * sdp / sum;
        if (fabs(h - target) < tol) break;
        if (h > target) {
            lo = beta;
            beta = isinf(hi) ? beta * 2 : (beta + hi) / 2;
        } else {
            hi = beta;
            beta = isinf(lo) ? beta / 2 : (beta + lo) / 2;
        }
    }
    double sum = 0;
    for (int j = 0; j < k; j++) sum += p[j];
    for (int j = 0; j < k; j++) p[j] /= sum;
}

typedef struct sparse {
    int n;
    size_t *row; /* [n + 1] */
    int *col;
    double *val;
} sparse;

static void sparse_free(sparse *s)
{
    free(s->row);
    free(s->col);
    free(s->val);
}

typedef struct entry {
    int col;
    double val;
} entry;

static int entry_cmp(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    return (x->col > y->col) - (x->col < y->col);
}

/* P = (P_cond + P_cond^T) / sum, as CSR with sorted columns. */
static int symmetrise(const int *nbr, const double *pc, int n, int k, int threads, sparse *P, lt_err *err)
{
    size_t *cnt = lt_calloc((size_t)n + 1, sizeof(size_t), err);
    if (!cnt) return LT_ENOMEM;
    for (int i = 0; i < n; i++)
        for (int q = 0; q < k; q++) cnt[i + 1]++, cnt[nbr[(size_t)i * k + q] + 1]++;
    for (int i = 0; i < n; i++) cnt[i + 1] += cnt[i];
    size_t total = cnt[n];
    entry *e = lt_malloc(sizeof(entry) * (total ? total : 1), err);
    size_t *fill = lt_malloc(sizeof(size_t) * n, err);
    if (!e || !fill) {
        free(cnt), free(e), free(fill);
        return LT_ENOMEM;
    }
    memcpy(fill, cnt, sizeof(size_t) * n);
    for (int i = 0; i < n; i++)
        for (int q = 0; q < k; q++) {
            int j = nbr[(size_t)i * k + q];
            double v = pc[(size_t)i * k + q];
            e[fill[i]++] = (entry){j, v};
            e[fill[j]++] = (entry){i, v};
        }
    /* Sort each row by column and merge the pairs (i,j) found from both ends;
     * a + b == b + a, so the merged value does not depend on the order. */
    size_t *len = fill;
#pragma omp parallel for schedule(dynamic, 256) num_threads(threads)
    for (int i = 0; i < n; i++) {
        entry *r = e + cnt[i];
        size_t m = cnt[i + 1] - cnt[i], out = 0;
        qsort(r, m, sizeof *r, entry_cmp);
        for (size_t a = 0; a < m; a++) {
            if (out > 0 && r[out - 1].col == r[a].col) r[out - 1].val += r[a].val;
            else r[out++] = r[a];
        }
        len[i] = out;
    }
    P->n = n;
    P->row = lt_malloc(sizeof(size_t) * ((size_t)n + 1), err);
    size_t nnz = 0;
    for (int i = 0; i < n; i++) nnz += len[i];
    P->col = lt_malloc(sizeof(int) * (nnz ? nnz : 1), err);
    P->val = lt_malloc(sizeof(double) * (nnz ? nnz : 1), err);
    int rc = (!P->row || !P->col || !P->val) ? LT_ENOMEM : 0;
    if (!rc) {
        double sum = 0;
        size_t o = 0;
        P->row[0] = 0;
        for (int i = 0; i < n; i++) {
            for (size_t a = 0; a < len[i]; a++, o++) {
                P->col[o] = e[cnt[i] + a].col;
                P->val[o] = e[cnt[i] + a].val;
                sum += P->val[o];
            }
            P->row[i + 1] = o;
        }
        for (size_t a = 0; a < nnz; a++) P->val[a] /= sum;
    } else {
        sparse_free(P);
    }
    free(cnt), free(e), free(fill);
    return rc;
}

/* ---- the optimisation ---- */


/* P again, for the attraction's vector loop: each row padded to a multiple of
 * LT_LANES with entries of weight 0 (pointing at the row's own point), values in
 * single precision. */
typedef struct padded {
    size_t *row;
    int *col;
    float *val;
} padded;

static int pad_rows(const sparse *P, padded *q, lt_err *err)
{
    const int n = P->n;
    q->row = lt_malloc(sizeof(size_t) * ((size_t)n + 1), err);
    if (!q->row) return LT_ENOMEM;
    q->row[0] = 0;
    for (int i = 0; i < n; i++) {
        size_t len = P->row[i + 1] - P->row[i];
        q->row[i + 1] = q->row[i] + (len + LT_LANES - 1) / LT_LANES * LT_LANES;
    }
    q->col = lt_malloc(sizeof(int) * (q->row[n] ? q->row[n] : 1), err);
    q->val = lt_malloc(sizeof(float) * (q->row[n] ? q->row[n] : 1), err);
    if (!q->col || !q->val) return LT_ENOMEM;
    for (int i = 0; i < n; i++) {
        size_t o = q->row[i];
        for (size_t e = P->row[i]; e < P->row[i + 1]; e++, o++) q->col[o] = P->col[e], q->val[o] = (float)P->val[e];
        for (; o < q->row[i + 1]; o++) q->col[o] = i, q->val[o] = 0;
    }
    return 0;
}

/* The attraction sum_j P_ij w_ij (y_i - y_j) of the points lo..hi-1 into
 * att [n, 2], in single precision over LT_LANES fixed lanes (embed.h). */
LT_VECTOR_CLONES static void attraction(const padded *q, const float *yx, const float *yy, int lo, int hi,
                                        double *att)
{
    for (int i = lo; i < hi; i++) {
        const float xi = yx[i], yi = yy[i];
        lt_v8f sx = {0}, sy = {0};
        for (size_t e = q->row[i]; e < q->row[i + 1]; e += LT_LANES) {
            float tx[LT_LANES], ty[LT_LANES];
            for (int k = 0; k < LT_LANES; k++) tx[k] = yx[q->col[e + k]], ty[k] = yy[q->col[e + k]];
            lt_v8f x, y, p;
            LT_LOAD8(x, tx), LT_LOAD8(y, ty), LT_LOAD8(p, q->val + e);
            const lt_v8f dx = xi - x, dy = yi - y, pw = p / (1.0f + dx * dx + dy * dy);
            sx += pw * dx;
            sy += pw * dy;
        }
        double ax = 0, ay = 0;
        for (int k = 0; k < LT_LANES; k++) ax += sx[k], ay += sy[k];
        att[2 * i] = ax, att[2 * i + 1] = ay;
    }
}

typedef struct state {
    int n, threads;
    const sparse *P;
    padded Pv;
    double *y, *grad, *update, *gains;
    double *rep, *zi, *kl_row; /* per point: repulsion (2), partial Z, partial KL */
    float *yx, *yy;            /* the map in single precision, for the attraction */
    lt_bh *bh;       /* Barnes-Hut's tree (bh.c), or NULL for the FFT */
    lt_fft_rep *fft; /* the FFT's workspace, or NULL for Barnes-Hut */
} state;

/* Gradient at s->y with P scaled by exag; returns Z, or NAN when out of
 * memory. With want_kl, kl_row[i] gets sum_j P_ij log(w_ij) (before
 * exaggeration), in double precision. */
static double gradient(state *s, double exag, double theta, int want_kl, lt_err *err)
{
    const int n = s->n;
    const sparse *P = s->P;
    const double *y = s->y;
    if (s->fft) {
        if (lt_fft_repulsion(s->fft, y, s->threads, s->rep, s->zi, err)) return NAN;
    } else if (lt_bh_step(s->bh, y, theta, s->threads, s->rep, s->zi, err)) {
        return NAN;
    }
    double z = 0;
    for (int i = 0; i < n; i++) z += s->zi[i];
    for (int i = 0; i < n; i++) s->yx[i] = (float)y[2 * i], s->yy[i] = (float)y[2 * i + 1];
    enum { CHUNK = 256 };
#pragma omp parallel for schedule(dynamic, 1) num_threads(s->threads)
    for (int c = 0; c < n; c += CHUNK) {
        const int hi = c + CHUNK < n ? c + CHUNK : n;
        attraction(&s->Pv, s->yx, s->yy, c, hi, s->grad);
        for (int i = c; i < hi; i++) {
            s->grad[2 * i] = 4 * (exag * s->grad[2 * i] - s->rep[2 * i] / z);
            s->grad[2 * i + 1] = 4 * (exag * s->grad[2 * i + 1] - s->rep[2 * i + 1] / z);
        }
        for (int i = c; want_kl && i < hi; i++) {
            double lk = 0;
            const double xi = y[2 * i], yi = y[2 * i + 1];
            for (size_t e = P->row[i]; e < P->row[i + 1]; e++) {
                const int j = P->col[e];
                const double dx = xi - y[2 * j], dy = yi - y[2 * j + 1];
                lk -= P->val[e] * log1p(dx * dx + dy * dy);
            }
            s->kl_row[i] = lk;
        }
    }
    return z;
}

/* KL(P||Q) = sum P log P - sum P log w + log Z (P sums to 1). */
static double kl_of(const state *s, double plogp, double z)
{
    double sum = 0;
    for (int i = 0; i < s->n; i++) sum += s->kl_row[i];
    return plogp - sum + log(z);
}

static int init_map(const lt_tsne_config *cfg, const float *x, int n, int d, double *y, lt_err *err)
{
    if (cfg->init == LT_TSNE_INIT_RANDOM || d < 2) {
        lt_rng r = lt_rng_for(cfg->seed, 0x75e, 0, 0);
        for (size_t i = 0; i < 2 * (size_t)n; i++) y[i] = 1e-4 * lt_rng_normal(&r);
        return 0;
    }
    lt_pca pca;
    int rc = lt_pca_fit(&pca, x, n, d, 2, err);
    float *p = rc ? NULL : lt_malloc(sizeof(float) * 2 * (size_t)n, err);
    if (!rc && !p) rc = LT_ENOMEM;
    if (!rc) rc = lt_pca_transform(&pca, x, n, p, err);
    if (!rc) {
        double m = 0, v = 0;
        for (int i = 0; i < n; i++) m += p[2 * i];
        m /= n;
        for (int i = 0; i < n; i++) v += (p[2 * i] - m) * (p[2 * i] - m);
        double sd = sqrt(v / n), scale = sd > 0 ? 1e-4 / sd : 1;
        for (size_t i = 0; i < 2 * (size_t)n; i++) y[i] = p[i] * scale;
    }
    free(p);
    lt_pca_free(&pca);
    return rc;
}

int lt_tsne(const lt_tsne_config *cfg, const float *x, int n, int d, float *yout, lt_tsne_progress_fn progress,
            void *ctx, lt_tsne_result *result, lt_err *err)
{
    const double t0 = now();
    if (!cfg || !x || !yout || d < 1) return lt_errf(err, LT_EINVAL, "t-SNE: no configuration, input or output");
    if (!(cfg->perplexity >= 1) || !isfinite(cfg->perplexity))
        return lt_errf(err, LT_EINVAL, "t-SNE: perplexity must be at least 1, found %g", cfg->perplexity);
    const int k = (int)(3 * cfg->perplexity);
    if (n < k + 2)
        return lt_errf(err, LT_EINVAL,
                       "t-SNE: perplexity %g needs more than 3 * perplexity + 1 = %d points, found %d (lower the perplexity)",
                       cfg->perplexity, k + 1, n);
    if (cfg->iters < 1 || !(cfg->theta >= 0) || !(cfg->exaggeration >= 1) || cfg->exaggeration_iters < 0 ||
        !(cfg->learning_rate >= 0))
        return lt_errf(err, LT_EINVAL, "t-SNE: bad settings (iterations %d, theta %g, exaggeration %g for %d, learning rate %g)",
                       cfg->iters, cfg->theta, cfg->exaggeration, cfg->exaggeration_iters, cfg->learning_rate);
    for (size_t i = 0; i < (size_t)n * d; i++)
        if (!isfinite(x[i]))
            return lt_errf(err, LT_EINVAL, "t-SNE: value %zu of point %zu is not finite", i % d, i / d);
    const int threads = cfg->threads > 0 ? cfg->threads : omp_get_max_threads();
    lt_knn_method knn = cfg->knn != LT_KNN_AUTO ? cfg->knn : d <= 10 ? LT_KNN_VPTREE : LT_KNN_BRUTE;
    /* AUTO is Barnes-Hut: with the learning rate n / 48 the map spans 150-300 units for
     * 10k-70k MNIST points, and the FFT's grid (3 nodes per unit, 9 transforms of
     * (6 x span)^2 points per iteration) measured 5-10x slower than the tree there. */
    lt_tsne_repulsion rep = cfg->repulsion == LT_REPULSION_FFT ? LT_REPULSION_FFT : LT_REPULSION_BH;

    int *nbr = lt_malloc(sizeof(int) * (size_t)n * k, err);
    float *d2 = lt_malloc(sizeof(float) * (size_t)n * k, err);
    double *pc = lt_malloc(sizeof(double) * (size_t)n * k, err);
    sparse P = {0};
    state s = {0};
    int rc = (!nbr || !d2 || !pc) ? LT_ENOMEM : 0;
    if (!rc) rc = knn == LT_KNN_VPTREE ? lt_knn_vptree(x, n, d, k, threads, cfg->seed, nbr, d2, err)
                                      : lt_knn_exact(x, n, d, k, threads, nbr, d2, err);
    if (!rc) {
#pragma omp parallel for schedule(dynamic, 256) num_threads(threads)
        for (int i = 0; i < n; i++) calibrate_row(d2 + (size_t)i * k, k, cfg->perplexity, pc + (size_t)i * k);
        rc = symmetrise(nbr, pc, n, k, threads, &P, err);
    }
    free(nbr), free(d2), free(pc);
    const double t_knn = now();

    s.n = n, s.threads = threads, s.P = &P;
    s.y = lt_malloc(sizeof(double) * 2 * n, err);
    s.grad = lt_malloc(sizeof(double) * 2 * n, err);
    s.update = lt_calloc(2 * (size_t)n, sizeof(double), err);
    s.gains = lt_malloc(sizeof(double) * 2 * n, err);
    s.rep = lt_malloc(sizeof(double) * 2 * n, err);
    s.zi = lt_malloc(sizeof(double) * n, err);
    s.kl_row = lt_malloc(sizeof(double) * n, err);
    s.yx = lt_malloc(sizeof(float) * n, err);
    s.yy = lt_malloc(sizeof(float) * n, err);
    if (!rc && (!s.y || !s.grad || !s.update || !s.gains || !s.rep || !s.zi || !s.kl_row || !s.yx || !s.yy))
        rc = LT_ENOMEM;
    if (!rc) rc = pad_rows(&P, &s.Pv, err);
    if (!rc && rep == LT_REPULSION_FFT && !(s.fft = lt_fft_rep_new(n, err))) rc = LT_ENOMEM;
    if (!rc && rep == LT_REPULSION_BH && !(s.bh = lt_bh_new(n, err))) rc = LT_ENOMEM;
    if (!rc) rc = init_map(cfg, x, n, d, s.y, err);
    const double lr = cfg->learning_rate > 0 ? cfg->learning_rate : fmax(n / cfg->exaggeration / 4, 50);
    double plogp = 0;
    if (!rc)
        for (size_t e = 0; e < P.row[n]; e++) plogp += P.val[e] > 0 ? P.val[e] * log(P.val[e]) : 0;
    for (size_t i = 0; !rc && i < 2 * (size_t)n; i++) s.gains[i] = 1;
    double kl = NAN;
    const double t_opt = now();
    for (int it = 0; !rc && it <= cfg->iters; it++) {
        if (cfg->stop && *cfg->stop) {
            rc = lt_errf(err, LT_EINTR, "t-SNE interrupted at iteration %d of %d", it, cfg->iters);
            break;
        }
        /* Keep the map centred: the gradient does not care, the tree's cells do. */
        double mx = 0, my = 0;
        for (int i = 0; i < n; i++) mx += s.y[2 * i], my += s.y[2 * i + 1];
        mx /= n, my /= n;
        for (int i = 0; i < n; i++) s.y[2 * i] -= mx, s.y[2 * i + 1] -= my;
        const int report = it > 0 && (it % 50 == 0 || it == cfg->iters);
        const double exag = it < cfg->exaggeration_iters ? cfg->exaggeration : 1;
        double z = gradient(&s, exag, cfg->theta, report, err);
        if (isnan(z)) {
            rc = err->code ? err->code : LT_ENOMEM;
            break;
        }
        if (report) {
            /* The map after `it` updates: the KL of the positions this gradient was taken at. */
            kl = kl_of(&s, plogp, z);
            if (progress) {
                double el = now() - t_opt;
                lt_tsne_progress pr = {it, cfg->iters, kl, now() - t0, el / it * (cfg->iters - it)};
                progress(ctx, &pr);
            }
        }
        if (it == cfg->iters) break;
        const double mom = it < cfg->exaggeration_iters ? cfg->momentum : cfg->final_momentum;
        for (size_t q = 0; q < 2 * (size_t)n; q++) {
            double g = s.grad[q];
            s.gains[q] = s.update[q] * g < 0 ? s.gains[q] + 0.2 : s.gains[q] * 0.8;
            if (s.gains[q] < 0.01) s.gains[q] = 0.01;
            s.update[q] = mom * s.update[q] - lr * s.gains[q] * g;
            s.y[q] += s.update[q];
        }
    }
    if (!rc) {
        for (size_t i = 0; i < 2 * (size_t)n; i++) yout[i] = (float)s.y[i];
        if (result) {
            result->kl = kl;
            result->seconds = now() - t0;
            result->knn_seconds = t_knn - t0;
            result->learning_rate = lr;
            result->neighbours = k;
            result->knn = knn;
            result->repulsion = rep;
        }
    }
    sparse_free(&P);
    free(s.y), free(s.grad), free(s.update), free(s.gains), free(s.rep), free(s.zi), free(s.kl_row);
    lt_bh_free(s.bh);
    free(s.Pv.row), free(s.Pv.col), free(s.Pv.val), free(s.yx), free(s.yy);
    lt_fft_rep_free(s.fft);
    return rc;
}
