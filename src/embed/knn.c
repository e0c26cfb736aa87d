/* Exact k nearest neighbours: brute force through BLAS (fast for the wide
 * inputs of t-SNE, e.g. 50 principal components) and a vantage-point tree
 * (fast for low-dimensional inputs such as small latent codes). Both give
 * every query the same answer whatever the thread count: queries are
 * independent and split over threads only as a whole. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "embed/embed.h"

/* A max-heap of the k best (distance, index) pairs found so far; "worse" is a
 * larger distance, or the same distance with a larger index, so ties are
 * broken the same way everywhere. */
typedef struct cand {
    float d;
    int j;
} cand;

static int worse(cand a, cand b) { return a.d > b.d || (a.d == b.d && a.j > b.j); }

static void heap_push(cand *h, int *size, int k, cand c)
{
    if (*size < k) {
        int i = (*size)++;
        h[i] = c;
        while (i > 0 && worse(h[i], h[(i - 1) / 2])) {
            cand t = h[i];
            h[i] = h[(i - 1) / 2];
            h[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
        return;
    }
    if (!worse(h[0], c)) return;
    h[0] = c;
    for (int i = 0;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < k && worse(h[l], h[m])) m = l;
        if (r < k && worse(h[r], h[m])) m = r;
        if (m == i) break;
        cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return worse(*x, *y) - worse(*y, *x);
}

static double dist2_exact(const float *a, const float *b, int d)
{
    double s = 0;
    for (int t = 0; t < d; t++) {
        double e = (double)a[t] - b[t];
        s += e * e;
    }
    return s;
}

/* Final order for point i: exact squared distances in double, sorted. */
static void finish(const float *x, int d, int i, cand *h, int k, int *idx, float *dist2)
{
    for (int q = 0; q < k; q++) h[q].d = (float)dist2_exact(x + (size_t)i * d, x + (size_t)h[q].j * d, d);
    qsort(h, (size_t)k, sizeof *h, cand_cmp);
    for (int q = 0; q < k; q++) {
        idx[(size_t)i * k + q] = h[q].j;
        dist2[(size_t)i * k + q] = h[q].d;
    }
}

/* Query blocks of QB rows against column tiles of JB points: the tile of
 * distances (QB x JB floats, 1 MiB) stays in cache between the product and
 * the scan, where a whole row block (QB x n) would not for large n. The scan
 * first tests a run of SCAN candidates at once against the current k-th
 * distance (a loop the compiler vectorises); most runs have none nearer. */
#define QB 64
#define JB 4096
#define SCAN 16

int lt_knn_exact(const float *x, int n, int d, int k, int threads, int *idx, float *dist2, lt_err *err)
{
    if (k < 1 || k >= n) return lt_errf(err, LT_EINVAL, "nearest neighbours: k = %d needs at least k+1 points, found %d", k, n);
    openblas_set_num_threads(1);
    float *sq = lt_malloc(sizeof(float) * n, err);
    if (!sq) return LT_ENOMEM;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int t = 0; t < d; t++) s += (double)x[(size_t)i * d + t] * x[(size_t)i * d + t];
        sq[i] = (float)s;
    }
    const int nb = (n + QB - 1) / QB;
    int failed = 0;
#pragma omp parallel num_threads(threads > 0 ? threads : omp_get_max_threads())
    {
        float *dots = malloc(sizeof(float) * QB * (size_t)JB);
        cand *h = malloc(sizeof(cand) * (size_t)k * QB);
        int *size = malloc(sizeof(int) * QB);
        if (!dots || !h || !size) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < nb; b++) {
            if (!dots || !h || !size) continue;
            int i0 = b * QB, bn = n - i0 < QB ? n - i0 : QB;
            for (int r = 0; r < bn; r++) size[r] = 0;
            for (int j0 = 0; j0 < n; j0 += JB) {
                const int jn = n - j0 < JB ? n - j0 : JB;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bn, jn, d, 1.0f, x + (size_t)i0 * d, d,
                            x + (size_t)j0 * d, d, 0.0f, dots, jn);
                for (int r = 0; r < bn; r++) {
                    const int i = i0 + r;
                    float *row = dots + (size_t)r * jn;
                    cand *hr = h + (size_t)r * k;
                    /* The same float expression as a scalar loop would compute, element by element. */
                    for (int j = 0; j < jn; j++) row[j] = sq[i] + sq[j0 + j] - 2.0f * row[j];
                    if (i >= j0 && i < j0 + jn) row[i - j0] = INFINITY;
                    for (int js = 0; js < jn; js += SCAN) {
                        const int je = jn - js < SCAN ? jn : js + SCAN;
                        if (size[r] == k) {
                            const float thr = hr[0].d;
                            int any = 0;
                            for (int j = js; j < je; j++) any |= row[j] <= thr;
                            if (!any) continue;
                        }
                        for (int j = js; j < je; j++) {
                            if (j0 + j == i) continue;
                            if (size[r] == k && row[j] > hr[0].d) continue;
                            heap_push(hr, &size[r], k, (cand){row[j], j0 + j});
                        }
                    }
                }
            }
            for (int r = 0; r < bn; r++) finish(x, d, i0 + r, h + (size_t)r * k, k, idx, dist2);
        }
        free(dots);
        free(h);
        free(size);
    }
    free(sq);
    if (failed) return lt_errf(err, LT_ENOMEM, "nearest neighbours: out of memory for %d points", n);
    return 0;
}

/* ---- vantage-point tree ----
 * Each node holds a vantage point and the median distance mu of the points
 * below it: those nearer than mu go left, the others right. A search visits
 * the side the query falls in first and the other only when the ball of the
 * current k-th distance crosses mu. */
typedef struct vpnode {
    int point;       /* vantage point (an index into x) */
    float mu;        /* split radius */
    int left, right; /* children, -1 if none */
} vpnode;

typedef struct vpbuild {
    const float *x;
    int d;
    int *items;
    float *dist;
    vpnode *nodes;
    int n_nodes;
    lt_rng rng;
} vpbuild;

static float dist_f(const float *a, const float *b, int d)
{
    float s = 0;
    for (int t = 0; t < d; t++) {
        float e = a[t] - b[t];
        s += e * e;
    }
    return sqrtf(s);
}

/* Quickselect on items[lo..hi) by dist so that position m holds its rank-m element (ties by index). */
static void select_kth(float *dist, int *items, int lo, int hi, int m)
{
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        float pd = dist[mid];
        int pi = items[mid];
        int i = lo, j = hi - 1;
        while (i <= j) {
            while (dist[i] < pd || (dist[i] == pd && items[i] < pi)) i++;
            while (dist[j] > pd || (dist[j] == pd && items[j] > pi)) j--;
            if (i <= j) {
                float td = dist[i];
                dist[i] = dist[j];
                dist[j] = td;
                int ti = items[i];
                items[i] = items[j];
                items[j] = ti;
                i++, j--;
            }
        }
        if (m <= j) hi = j + 1;
        else if (m >= i) lo = i;
        else return;
    }
}

static int vp_build(vpbuild *b, int lo, int hi)
{
    if (lo >= hi) return -1;
    int id = b->n_nodes++;
    /* A random vantage point (seeded), swapped to the front. */
    int r = lo + (int)lt_rng_below(&b->rng, (uint64_t)(hi - lo));
    int t = b->items[lo];
    b->items[lo] = b->items[r];
    b->items[r] = t;
    b->nodes[id].point = b->items[lo];
    b->nodes[id].left = b->nodes[id].right = -1;
    b->nodes[id].mu = 0;
    if (hi - lo == 1) return id;
    const float *v = b->x + (size_t)b->items[lo] * b->d;
    for (int i = lo + 1; i < hi; i++) b->dist[i] = dist_f(v, b->x + (size_t)b->items[i] * b->d, b->d);
    int mid = (lo + 1 + hi) / 2;
    select_kth(b->dist, b->items, lo + 1, hi, mid);
    b->nodes[id].mu = b->dist[mid];
    int left = vp_build(b, lo + 1, mid);
    int right = vp_build(b, mid, hi);
    b->nodes[id].left = left;
    b->nodes[id].right = right;
    return id;
}

typedef struct vpquery {
    const float *x, *q;
    int d, self, k, size;
    const vpnode *nodes;
    cand *h;
    float tau; /* current k-th distance (not squared), infinite until k are found */
} vpquery;

static void vp_search(vpquery *s, int node)
{
    while (node >= 0) {
        const vpnode *v = &s->nodes[node];
        float dv = dist_f(s->q, s->x + (size_t)v->point * s->d, s->d);
        if (v->point != s->self) {
            /* The heap orders by squared distance, as the final answer does. */
            heap_push(s->h, &s->size, s->k, (cand){dv * dv, v->point});
            if (s->size == s->k) s->tau = sqrtf(s->h[0].d);
        }
        if (v->left < 0 && v->right < 0) return;
        /* Near side first; the far side only if the ball around q of radius tau crosses mu. */
        if (dv < v->mu) {
            if (dv - s->tau <= v->mu) vp_search(s, v->left);
            if (dv + s->tau >= v->mu) node = v->right;
            else return;
        } else {
            if (dv + s->tau >= v->mu) vp_search(s, v->right);
            if (dv - s->tau <= v->mu) node = v->left;
            else return;
        }
    }
}

int lt_knn_vptree(const float *x, int n, int d, int k, int threads, uint64_t seed, int *idx, float *dist2,
                  lt_err *err)
{
    if (k < 1 || k >= n) return lt_errf(err, LT_EINVAL, "nearest neighbours: k = %d needs at least k+1 points, found %d", k, n);
    vpbuild b = {x, d, lt_malloc(sizeof(int) * n, err), lt_malloc(sizeof(float) * n, err),
                 lt_malloc(sizeof(vpnode) * n, err), 0, lt_rng_for(seed, 0x7b7, 0, 0)};
    int rc = (!b.items || !b.dist || !b.nodes) ? LT_ENOMEM : 0;
    if (!rc) {
        for (int i = 0; i < n; i++) b.items[i] = i;
        vp_build(&b, 0, n);
    }
    int failed = 0;
#pragma omp parallel num_threads(threads > 0 ? threads : omp_get_max_threads()) if (!rc)
    {
        cand *h = malloc(sizeof(cand) * k);
        if (!h) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 64)
        for (int i = 0; i < n; i++) {
            if (!h) continue;
            vpquery s = {x, x + (size_t)i * d, d, i, k, 0, b.nodes, h, INFINITY};
            vp_search(&s, 0);
            finish(x, d, i, h, k, idx, dist2);
        }
        free(h);
    }
    if (!rc && failed) rc = lt_errf(err, LT_ENOMEM, "nearest neighbours: out of memory for %d points", n);
    free(b.items), free(b.dist), free(b.nodes);
    return rc;
}

int lt_sample_indices(int n, int m, uint64_t seed, int *out, lt_err *err)
{
    if (m > n || m < 0) return lt_errf(err, LT_EINVAL, "cannot sample %d of %d points", m, n);
    int *all = lt_malloc(sizeof(int) * (size_t)(n > 0 ? n : 1), err);
    if (!all) return LT_ENOMEM;
    for (int i = 0; i < n; i++) all[i] = i;
    lt_rng r = lt_rng_for(seed, 0x5a3b1e, 0, 0);
    /* Partial Fisher-Yates: the first m are a uniform sample. */
    for (int i = 0; i < m; i++) {
        int j = i + (int)lt_rng_below(&r, (uint64_t)(n - i));
        int t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    /* Sorted, so outputs keep the data's order. */
    char *mark = lt_calloc((size_t)(n > 0 ? n : 1), 1, err);
    if (!mark) {
        free(all);
        return LT_ENOMEM;
    }
    for (int i = 0; i < m; i++) mark[all[i]] = 1;
    for (int i = 0, q = 0; i < n; i++)
        if (mark[i]) out[q++] = i;
    free(mark);
    free(all);
    return 0;
}
