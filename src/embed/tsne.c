/* t-SNE to 2-D, the way the reference implementations do it (van der Maaten
 * 2014's bhtsne, scikit-learn, openTSNE):
 *  - affinities from the 3*perplexity nearest neighbours of each point, with
 *    the Gaussian's precision found by binary search so that the row's
 *    perplexity is the one asked for; symmetrised and normalised to sum 1;
 *  - gradient descent on KL(P||Q) with Student-t similarities in the map:
 *    exact attraction over the sparse P, Barnes-Hut repulsion over a
 *    quadtree (a cell of width w at distance r stands for its points when
 *    w/r < theta), or FFT-accelerated interpolation (fft_repulsion.c);
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

/* ---- Barnes-Hut quadtree ---- */

#define LEAF_SIZE 8
#define MAX_DEPTH 48

typedef struct qnode {
    double cx, cy; /* centre of mass */
    double w2;     /* squared side of the cell */
    int count;
    int child;     /* first of 4 consecutive children, or -1 for a leaf */
    int lo, hi;    /* the leaf's points: positions lo..hi-1 in tree order */
} qnode;

typedef struct qtree {
    qnode *nodes;
    int n_nodes, cap;
    int *order;     /* point indices in tree order */
    int *scratch;
    double *px, *py; /* coordinates in tree order */
} qtree;

static int new_nodes(qtree *t, int k)
{
    if (t->n_nodes + k > t->cap) {
        int cap = t->cap ? t->cap * 2 : 1024;
        while (cap < t->n_nodes + k) cap *= 2;
        qnode *p = realloc(t->nodes, sizeof(qnode) * cap);
        if (!p) return -1;
        t->nodes = p;
        t->cap = cap;
    }
    int id = t->n_nodes;
    t->n_nodes += k;
    return id;
}

/* Build the subtree of order[lo..hi) in the square cell at (x0, y0) of side s. */
static int build(qtree *t, const double *y, int id, int lo, int hi, double x0, double y0, double s, int depth)
{
    qnode *nd = &t->nodes[id];
    nd->w2 = s * s;
    nd->count = hi - lo;
    nd->child = -1;
    nd->lo = lo, nd->hi = hi;
    if (hi - lo <= LEAF_SIZE || depth >= MAX_DEPTH) {
        double sx = 0, sy = 0;
        for (int a = lo; a < hi; a++) sx += y[2 * t->order[a]], sy += y[2 * t->order[a] + 1];
        nd->cx = hi > lo ? sx / (hi - lo) : 0;
        nd->cy = hi > lo ? sy / (hi - lo) : 0;
        return 0;
    }
    /* Partition into the quadrants (SW, SE, NW, NE), keeping the order within each. */
    const double mx = x0 + s / 2, my = y0 + s / 2;
    int cnt[4] = {0, 0, 0, 0};
    for (int a = lo; a < hi; a++) {
        const double *p = y + 2 * t->order[a];
        cnt[(p[0] >= mx) + 2 * (p[1] >= my)]++;
    }
    int start[4] = {lo, lo + cnt[0], lo + cnt[0] + cnt[1], lo + cnt[0] + cnt[1] + cnt[2]}, pos[4];
    memcpy(pos, start, sizeof pos);
    for (int a = lo; a < hi; a++) {
        const double *p = y + 2 * t->order[a];
        t->scratch[pos[(p[0] >= mx) + 2 * (p[1] >= my)]++] = t->order[a];
    }
    memcpy(t->order + lo, t->scratch + lo, sizeof(int) * (hi - lo));
    int c = new_nodes(t, 4);
    if (c < 0) return -1;
    t->nodes[id].child = c; /* nd may have moved with realloc */
    double sx = 0, sy = 0;
    for (int q = 0; q < 4; q++) {
        int e = q < 3 ? start[q + 1] : hi;
        if (build(t, y, c + q, start[q], e, q & 1 ? mx : x0, q & 2 ? my : y0, s / 2, depth + 1)) return -1;
        const qnode *ch = &t->nodes[c + q];
        sx += ch->cx * ch->count;
        sy += ch->cy * ch->count;
    }
    t->nodes[id].cx = sx / (hi - lo);
    t->nodes[id].cy = sy / (hi - lo);
    return 0;
}

static int tree_build(qtree *t, const double *y, int n)
{
    double x0 = y[0], x1 = y[0], y0 = y[1], y1 = y[1];
    for (int i = 1; i < n; i++) {
        x0 = fmin(x0, y[2 * i]), x1 = fmax(x1, y[2 * i]);
        y0 = fmin(y0, y[2 * i + 1]), y1 = fmax(y1, y[2 * i + 1]);
    }
    double s = fmax(x1 - x0, y1 - y0);
    s = s > 0 ? s * (1 + 1e-9) + 1e-300 : 1;
    t->n_nodes = 0;
    for (int i = 0; i < n; i++) t->order[i] = i;
    if (new_nodes(t, 1) < 0 || build(t, y, 0, 0, n, x0, y0, s, 0)) return -1;
    for (int a = 0; a < n; a++) t->px[a] = y[2 * t->order[a]], t->py[a] = y[2 * t->order[a] + 1];
    return 0;
}

/* Repulsion on point i at (xi, yi): sum_j w_ij^2 (y_i - y_j) and sum_j w_ij,
 * w_ij = 1 / (1 + |y_i - y_j|^2), over all j != i, by Barnes-Hut. */
static void repulsion(const qtree *t, int i, double xi, double yi, double theta2, double *fx, double *fy, double *z)
{
    int stack[4 * MAX_DEPTH + 8], sp = 0;
    double ax = 0, ay = 0, az = 0;
    stack[sp++] = 0;
    while (sp > 0) {
        const qnode *nd = &t->nodes[stack[--sp]];
        if (nd->count == 0) continue;
        double dx = xi - nd->cx, dy = yi - nd->cy, d2 = dx * dx + dy * dy;
        if (nd->w2 < theta2 * d2) {
            /* The cell is far enough: its points act as one at their centre of mass. */
            double w = 1 / (1 + d2), cw = nd->count * w;
            az += cw;
            ax += cw * w * dx;
            ay += cw * w * dy;
        } else if (nd->child < 0) {
            for (int a = nd->lo; a < nd->hi; a++) {
                if (t->order[a] == i) continue;
                double ex = xi - t->px[a], ey = yi - t->py[a], w = 1 / (1 + ex * ex + ey * ey);
                az += w;
                ax += w * w * ex;
                ay += w * w * ey;
            }
        } else {
            for (int q = 3; q >= 0; q--) stack[sp++] = nd->child + q;
        }
    }
    *fx = ax, *fy = ay, *z = az;
}

static void bh_all(const qtree *t, const double *y, int n, double theta, int threads, double *rep, double *zi)
{
    const double theta2 = theta * theta;
#pragma omp parallel num_threads(threads)
    {
        /* Repulsion in tree order: neighbours in the tree are neighbours in memory. */
#pragma omp for schedule(dynamic, 128)
        for (int a = 0; a < n; a++) {
            int i = t->order[a];
            repulsion(t, i, y[2 * i], y[2 * i + 1], theta2, &rep[2 * i], &rep[2 * i + 1], &zi[i]);
        }
    }
}

int lt_bh_repulsion(const double *y, int n, double theta, int threads, double *rep, double *zi, lt_err *err)
{
    qtree t = {0};
    t.order = lt_malloc(sizeof(int) * n, err);
    t.scratch = lt_malloc(sizeof(int) * n, err);
    t.px = lt_malloc(sizeof(double) * n, err);
    t.py = lt_malloc(sizeof(double) * n, err);
    int rc = (!t.order || !t.scratch || !t.px || !t.py) ? LT_ENOMEM : 0;
    if (!rc && tree_build(&t, y, n)) rc = lt_errf(err, LT_ENOMEM, "t-SNE: out of memory building the tree");
    if (!rc) bh_all(&t, y, n, theta, threads, rep, zi);
    free(t.nodes), free(t.order), free(t.scratch), free(t.px), free(t.py);
    return rc;
}

/* ---- the optimisation ---- */

typedef struct state {
    int n, threads;
    const sparse *P;
    double *y, *grad, *update, *gains;
    double *rep, *zi, *kl_row; /* per point: repulsion (2), partial Z, partial KL */
    qtree tree;
    lt_fft_rep *fft; /* the FFT's workspace, or NULL for Barnes-Hut */
} state;

/* Gradient at s->y with P scaled by exag; returns Z, or NAN when out of
 * memory. With want_kl, kl_row[i] gets sum_j P_ij log(w_ij) (before
 * exaggeration). */
static double gradient(state *s, double exag, double theta, int want_kl, lt_err *err)
{
    const int n = s->n;
    const sparse *P = s->P;
    const double *y = s->y;
    if (s->fft) {
        if (lt_fft_repulsion(s->fft, y, s->threads, s->rep, s->zi, err)) return NAN;
    } else {
        if (tree_build(&s->tree, y, n)) {
            lt_errf(err, LT_ENOMEM, "t-SNE: out of memory building the tree");
            return NAN;
        }
        bh_all(&s->tree, y, n, theta, s->threads, s->rep, s->zi);
    }
    double z = 0;
    for (int i = 0; i < n; i++) z += s->zi[i];
#pragma omp parallel for schedule(dynamic, 256) num_threads(s->threads)
    for (int i = 0; i < n; i++) {
        double ax = 0, ay = 0, lk = 0;
        const double xi = y[2 * i], yi = y[2 * i + 1];
        for (size_t e = P->row[i]; e < P->row[i + 1]; e++) {
            int j = P->col[e];
            double dx = xi - y[2 * j], dy = yi - y[2 * j + 1], w = 1 / (1 + dx * dx + dy * dy), pw = P->val[e] * w;
            ax += pw * dx;
            ay += pw * dy;
            if (want_kl) lk += P->val[e] * log(w);
        }
        s->grad[2 * i] = 4 * (exag * ax - s->rep[2 * i] / z);
        s->grad[2 * i + 1] = 4 * (exag * ay - s->rep[2 * i + 1] / z);
        if (want_kl) s->kl_row[i] = lk;
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
    s.tree.order = lt_malloc(sizeof(int) * n, err);
    s.tree.scratch = lt_malloc(sizeof(int) * n, err);
    s.tree.px = lt_malloc(sizeof(double) * n, err);
    s.tree.py = lt_malloc(sizeof(double) * n, err);
    if (!rc && (!s.y || !s.grad || !s.update || !s.gains || !s.rep || !s.zi || !s.kl_row || !s.tree.order ||
                !s.tree.scratch || !s.tree.px || !s.tree.py))
        rc = LT_ENOMEM;
    if (!rc && rep == LT_REPULSION_FFT && !(s.fft = lt_fft_rep_new(n, err))) rc = LT_ENOMEM;
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
    free(s.tree.nodes), free(s.tree.order), free(s.tree.scratch), free(s.tree.px), free(s.tree.py);
    lt_fft_rep_free(s.fft);
    return rc;
}
