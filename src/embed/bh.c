/* t-SNE's repulsion by Barnes-Hut over a quadtree, evaluated a group of
 * points at a time (Barnes 1990, "A modified tree code: don't laugh; it
 * runs"), as GPU tree codes do:
 *  - the map's points are sorted into a quadtree (leaves of at most 8);
 *  - the maximal subtrees of at most GROUP points are the groups. For each
 *    group one walk of the tree builds an interaction list: a cell whose
 *    side is below theta times its centre of mass's distance to the group's
 *    bounding box stands for its points (its count at its centre of mass);
 *    otherwise it is opened, down to single points at the leaves;
 *  - every point of the group then sums over that list, 8 entries at a time
 *    in single precision, which the compiler turns into vector code.
 * One walk serves the whole group, and the distance to the group's box is
 * never larger than to any of its points, so the approximation is at least
 * as accurate as the classic per-point criterion with the same theta.
 *
 * Determinism: the tree, the groups and their lists depend only on the map;
 * each point's sums run over its list in order, in 8 fixed lanes added up in
 * a fixed order at the end (the AVX2 and the SSE2 builds of the loop compute
 * the same lanes), so the result is the same for any thread count and CPU. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "embed/embed.h"

#define LEAF_SIZE 8
#define GROUP 32
#define MAX_DEPTH 48

typedef struct qnode {
    double cx, cy; /* centre of mass */
    double w2;     /* squared side of the cell */
    int count;
    int child;     /* first of 4 consecutive children, or -1 for a leaf */
    int lo, hi;    /* the cell's points: positions lo..hi-1 in tree order */
} qnode;

/* One thread's interaction list, structure of arrays, padded to LT_LANES. */
typedef struct ilist {
    float *x, *y, *m;
    int n;
} ilist;

struct lt_bh {
    int n;
    qnode *nodes;
    int n_nodes, cap;
    int *order;      /* point indices in tree order */
    int *scratch;
    float *px, *py;  /* coordinates in tree order */
    int *groups, n_groups;
    ilist *lists;    /* one per thread, kept across iterations */
    int n_lists;
};

lt_bh *lt_bh_new(int n, lt_err *err)
{
    lt_bh *t = lt_calloc(1, sizeof *t, err);
    if (!t) return NULL;
    t->n = n;
    t->order = lt_malloc(sizeof(int) * (size_t)n, err);
    t->scratch = lt_malloc(sizeof(int) * (size_t)n, err);
    t->groups = lt_malloc(sizeof(int) * (size_t)n, err);
    t->px = lt_malloc(sizeof(float) * (size_t)n, err);
    t->py = lt_malloc(sizeof(float) * (size_t)n, err);
    if (!t->order || !t->scratch || !t->groups || !t->px || !t->py) {
        lt_bh_free(t);
        return NULL;
    }
    return t;
}

void lt_bh_free(lt_bh *t)
{
    if (!t) return;
    free(t->nodes), free(t->order), free(t->scratch), free(t->groups), free(t->px), free(t->py);
    for (int k = 0; k < t->n_lists; k++) free(t->lists[k].x), free(t->lists[k].y), free(t->lists[k].m);
    free(t->lists);
    free(t);
}

static int new_nodes(lt_bh *t, int k)
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
static int build(lt_bh *t, const double *y, int id, int lo, int hi, double x0, double y0, double s, int depth)
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

static int tree_build(lt_bh *t, const double *y)
{
    const int n = t->n;
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
    for (int a = 0; a < n; a++) t->px[a] = (float)y[2 * t->order[a]], t->py[a] = (float)y[2 * t->order[a] + 1];
    /* The groups: maximal subtrees of at most GROUP points, in tree order. */
    int stack[4 * MAX_DEPTH + 8], sp = 0;
    t->n_groups = 0;
    stack[sp++] = 0;
    while (sp > 0) {
        const int id = stack[--sp];
        const qnode *nd = &t->nodes[id];
        if (nd->count == 0) continue;
        if (nd->count <= GROUP || nd->child < 0) t->groups[t->n_groups++] = id;
        else
            for (int q = 3; q >= 0; q--) stack[sp++] = nd->child + q;
    }
    return 0;
}

/* A list never holds more than every point once plus the padding, so each
 * thread's is allocated that large once and filled without checks. */
static int lists_for(lt_bh *t, int threads)
{
    if (threads <= t->n_lists) return 0;
    ilist *p = realloc(t->lists, sizeof(ilist) * threads);
    if (!p) return -1;
    t->lists = p;
    for (; t->n_lists < threads; t->n_lists++) {
        ilist *l = &t->lists[t->n_lists];
        const size_t cap = (size_t)t->n + LT_LANES;
        l->n = 0;
        l->x = malloc(sizeof(float) * cap);
        l->y = malloc(sizeof(float) * cap);
        l->m = malloc(sizeof(float) * cap);
        if (!l->x || !l->y || !l->m) {
            free(l->x), free(l->y), free(l->m);
            return -1;
        }
    }
    return 0;
}

/* The interaction list of group g (a node), padded with massless entries. */
static void group_list(const lt_bh *t, const qnode *g, double theta2, ilist *l)
{
    float bx0 = INFINITY, bx1 = -INFINITY, by0 = INFINITY, by1 = -INFINITY;
    for (int a = g->lo; a < g->hi; a++) {
        const float x = t->px[a], y = t->py[a];
        bx0 = x < bx0 ? x : bx0, bx1 = x > bx1 ? x : bx1;
        by0 = y < by0 ? y : by0, by1 = y > by1 ? y : by1;
    }
    int stack[4 * MAX_DEPTH + 8], sp = 0;
    l->n = 0;
    stack[sp++] = 0;
    while (sp > 0) {
        const qnode *nd = &t->nodes[stack[--sp]];
        if (nd->count == 0) continue;
        /* A cell holding the group is always opened, wherever its centre of mass lies. */
        const int holds = nd->lo <= g->lo && g->hi <= nd->hi;
        const double ex = bx0 - nd->cx > nd->cx - bx1 ? bx0 - nd->cx : nd->cx - bx1;
        const double ey = by0 - nd->cy > nd->cy - by1 ? by0 - nd->cy : nd->cy - by1;
        const double dx = ex > 0 ? ex : 0, dy = ey > 0 ? ey : 0;
        if (!holds && nd->w2 < theta2 * (dx * dx + dy * dy)) {
            l->x[l->n] = (float)nd->cx, l->y[l->n] = (float)nd->cy, l->m[l->n] = (float)nd->count;
            l->n++;
        } else if (nd->child < 0) {
            for (int a = nd->lo; a < nd->hi; a++, l->n++) l->x[l->n] = t->px[a], l->y[l->n] = t->py[a], l->m[l->n] = 1;
        } else {
            for (int q = 3; q >= 0; q--) stack[sp++] = nd->child + q;
        }
    }
    for (; l->n % LT_LANES; l->n++) l->x[l->n] = 0, l->y[l->n] = 0, l->m[l->n] = 0;
}

/* Sums over the list for the points lo..hi-1 (tree order). Each point's own
 * entry (distance 0) adds exactly 1 to its Z sum and 0 to its force; the 1
 * is taken off at the end. */
LT_VECTOR_CLONES static void group_sums(const ilist *l, const float *px, const float *py, const int *order, int lo,
                                        int hi, double *rep, double *zi)
{
    for (int a = lo; a < hi; a++) {
        const float xi = px[a], yi = py[a];
        lt_v8f sx = {0}, sy = {0}, sz = {0};
        for (int b = 0; b < l->n; b += LT_LANES) {
            lt_v8f x, y, m;
            LT_LOAD8(x, l->x + b), LT_LOAD8(y, l->y + b), LT_LOAD8(m, l->m + b);
            const lt_v8f dx = xi - x, dy = yi - y;
            const lt_v8f w = 1.0f / (1.0f + dx * dx + dy * dy), mw = m * w, mww = mw * w;
            sz += mw;
            sx += mww * dx;
            sy += mww * dy;
        }
        double ax = 0, ay = 0, az = 0;
        for (int q = 0; q < LT_LANES; q++) ax += sx[q], ay += sy[q], az += sz[q];
        const int i = order[a];
        rep[2 * i] = ax, rep[2 * i + 1] = ay, zi[i] = az - 1;
    }
}

int lt_bh_step(lt_bh *t, const double *y, double theta, int threads, double *rep, double *zi, lt_err *err)
{
    threads = threads < 1 ? 1 : threads;
    if (tree_build(t, y)) return lt_errf(err, LT_ENOMEM, "t-SNE: out of memory building the tree");
    if (lists_for(t, threads)) return lt_errf(err, LT_ENOMEM, "t-SNE: out of memory for the Barnes-Hut interaction lists");
    const double theta2 = theta * theta;
#pragma omp parallel num_threads(threads)
    {
        ilist *l = &t->lists[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 4)
        for (int k = 0; k < t->n_groups; k++) {
            const qnode *g = &t->nodes[t->groups[k]];
            group_list(t, g, theta2, l);
            group_sums(l, t->px, t->py, t->order, g->lo, g->hi, rep, zi);
        }
    }
    return 0;
}

int lt_bh_repulsion(const double *y, int n, double theta, int threads, double *rep, double *zi, lt_err *err)
{
    lt_bh *t = lt_bh_new(n, err);
    if (!t) return LT_ENOMEM;
    int rc = lt_bh_step(t, y, theta, threads, rep, zi, err);
    lt_bh_free(t);
    return rc;
}
