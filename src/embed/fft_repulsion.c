/* t-SNE's repulsive forces by FFT-accelerated interpolation (Linderman et
 * al. 2019, "Fast interpolation-based t-SNE for improved visualization of
 * single-cell RNA-seq data", as FIt-SNE and openTSNE do it in 2-D):
 *  - the map's bounding square is cut into nb x nb boxes (about one per unit
 *    of map length, at least 50), each with 3 x 3 equispaced interpolation
 *    nodes, so all nodes lie on one regular grid of (3 nb)^2 points;
 *  - every point spreads four charges (1, y1, y2, |y|^2) to the 9 nodes of
 *    its box with Lagrange weights;
 *  - the charges are convolved with K2(d) = 1 / (1 + d^2)^2 on the grid by
 *    FFT (the kernel depends only on node offsets: a Toeplitz product,
 *    embedded in a circulant of twice the size);
 *  - the potentials are interpolated back to the points with the same
 *    weights.
 * With phi_1..phi_4 the four potentials at point i, the repulsion is
 * sum_j K2_ij (y_i - y_j) = phi_1 y_i - (phi_2, phi_3), and
 * sum_j (1 + d_ij^2) K2_ij = sum_j 1 / (1 + d_ij^2) is
 * (1 + |y_i|^2) phi_1 - 2 y_i . (phi_2, phi_3) + phi_4 (minus 1 for j = i):
 * both kernel sums from one convolution kernel, so 9 FFTs per iteration.
 *
 * Determinism: points are bucketed by box in index order and each box
 * writes only its own nodes, so the spreading is the same for any thread
 * count; FFTW plans are made with FFTW_ESTIMATE (no timing), and every
 * transform runs whole on one thread. */
#include <fftw3.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "embed/embed.h"

#define MAX_P 8
#define MIN_BOXES 50       /* per dimension, as FIt-SNE and openTSNE */

struct lt_fft_rep {
    int p;                  /* interpolation nodes per box and dimension */
    double per_unit;        /* boxes per unit of map length */
    int nb;                 /* boxes per dimension of the current plans, 0 before any */
    int m, m2, cpad;        /* nodes per dimension (P nb), circulant size (>= 2 m), complex columns (m2 / 2 + 1) */
    double *grid[4];        /* charges, then potentials: [m2, 2 cpad] reals (FFTW's in-place layout) */
    double *kern;           /* kernel, same layout */
    fftw_plan fwd, inv;     /* in place, executed on every grid with fftw_execute_dft_* */
    int *box, *start, *order; /* per point its box; per box its first point in order */
    double *wx, *wy;        /* per point the P Lagrange weights in x and y */
    int n, cap_boxes;
};

/* The circulant only needs 2 m - 1 points; FFTW is fastest on 2^a 3^b
 * (with FFTW_ESTIMATE, 1080 = 2^3 3^3 5 took 1.8x the time of 1024 here). */
static int fft_size_at_least(int v)
{
    int best = 0;
    for (long p2 = 1; p2 < 4L * v; p2 *= 2)
        for (long p = p2; p < 4L * v; p *= 3)
            if (p >= v && (!best || p < best)) best = (int)p;
    return best;
}

lt_fft_rep *lt_fft_rep_new(int n, lt_err *err)
{
    lt_fft_rep *w = lt_calloc(1, sizeof *w, err);
    if (!w) return NULL;
    w->n = n;
    w->p = 3;
    w->per_unit = 1;
    w->box = lt_malloc(sizeof(int) * (size_t)n, err);
    w->order = lt_malloc(sizeof(int) * (size_t)n, err);
    w->wx = lt_malloc(sizeof(double) * MAX_P * (size_t)n, err);
    w->wy = lt_malloc(sizeof(double) * MAX_P * (size_t)n, err);
    if (!w->box || !w->order || !w->wx || !w->wy) {
        lt_fft_rep_free(w);
        return NULL;
    }
    return w;
}

static void free_grids(lt_fft_rep *w)
{
    /* FFTW's planner is not thread-safe: plans are made and destroyed one at a time
     * in the whole program (a user may run several t-SNEs at once). */
#pragma omp critical(lt_fftw_planner)
    {
        if (w->fwd) fftw_destroy_plan(w->fwd);
        if (w->inv) fftw_destroy_plan(w->inv);
    }
    w->fwd = w->inv = NULL;
    for (int k = 0; k < 4; k++) fftw_free(w->grid[k]), w->grid[k] = NULL;
    fftw_free(w->kern);
    w->kern = NULL;
    w->nb = 0;
}

void lt_fft_rep_free(lt_fft_rep *w)
{
    if (!w) return;
    free_grids(w);
    free(w->box), free(w->start), free(w->order), free(w->wx), free(w->wy);
    free(w);
}

void lt_fft_rep_set(lt_fft_rep *w, int p, double per_unit)
{
    free_grids(w);
    w->p = p < 2 ? 2 : p > MAX_P ? MAX_P : p;
    w->per_unit = per_unit;
}

static int set_boxes(lt_fft_rep *w, int nb, lt_err *err)
{
    const int P = w->p;
    if (nb == w->nb) return 0;
    free_grids(w);
    const int m = P * nb, m2 = fft_size_at_least(2 * m), cpad = m2 / 2 + 1;
    const size_t len = (size_t)m2 * 2 * cpad;
    for (int k = 0; k < 4; k++) w->grid[k] = fftw_malloc(sizeof(double) * len);
    w->kern = fftw_malloc(sizeof(double) * len);
    int ok = w->kern != NULL;
    for (int k = 0; k < 4; k++) ok &= w->grid[k] != NULL;
    if (ok) {
#pragma omp critical(lt_fftw_planner)
        {
            w->fwd = fftw_plan_dft_r2c_2d(m2, m2, w->kern, (fftw_complex *)w->kern, FFTW_ESTIMATE);
            w->inv = fftw_plan_dft_c2r_2d(m2, m2, (fftw_complex *)w->kern, w->kern, FFTW_ESTIMATE);
        }
        ok = w->fwd && w->inv;
    }
    if (nb * nb > w->cap_boxes) {
        free(w->start);
        w->start = malloc(sizeof(int) * ((size_t)nb * nb + 1));
        w->cap_boxes = w->start ? nb * nb : 0;
        ok &= w->start != NULL;
    }
    if (!ok) {
        free_grids(w);
        return lt_errf(err, LT_ENOMEM, "t-SNE: out of memory for an FFT grid of %d x %d", m2, m2);
    }
    w->nb = nb, w->m = m, w->m2 = m2, w->cpad = cpad;
    return 0;
}

/* Lagrange weights of the P nodes at (j + 1/2) / P of a unit box, at u in [0, 1]. */
static void lagrange(int P, double u, double *l)
{
    for (int j = 0; j < P; j++) {
        double tj = (j + 0.5) / P, v = 1;
        for (int q = 0; q < P; q++)
            if (q != j) v *= (u - (q + 0.5) / P) / (tj - (q + 0.5) / P);
        l[j] = v;
    }
}

int lt_fft_repulsion(lt_fft_rep *w, const double *y, int threads, double *rep, double *zi, lt_err *err)
{
    const int n = w->n;
    double lo = y[0], hi = y[0];
    for (size_t i = 1; i < 2 * (size_t)n; i++) lo = fmin(lo, y[i]), hi = fmax(hi, y[i]);
    /* A little margin so the highest point falls inside the last box. */
    double span = hi - lo;
    span = span > 0 ? span * (1 + 1e-6) : 1;
    const int P = w->p;
    int nb = (int)ceil(span * w->per_unit);
    nb = nb < MIN_BOXES ? MIN_BOXES : nb;
    int rc = set_boxes(w, nb, err);
    if (rc) return rc;
    const int m = w->m, m2 = w->m2, rs = 2 * w->cpad; /* row stride of the real layout */
    const double bw = span / nb, h = bw / P;          /* box width, node spacing */
    const size_t len = (size_t)m2 * rs;

    /* Kernel on the circulant: offsets 0..m-1 at the front, -(m-1)..-1 at the back. */
    double *kern = w->kern;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int r = 0; r < m2; r++) {
        double *row = kern + (size_t)r * rs;
        memset(row, 0, sizeof(double) * rs);
        if (r >= m && r <= m2 - m) continue;
        double dy = (r < m ? r : r - m2) * h;
        for (int c = 0; c < m2; c++) {
            if (c >= m && c <= m2 - m) continue;
            double dx = (c < m ? c : c - m2) * h, q = 1 / (1 + dx * dx + dy * dy);
            row[c] = q * q;
        }
    }
    fftw_execute_dft_r2c(w->fwd, kern, (fftw_complex *)kern);

    /* Each point's box and weights. */
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int i = 0; i < n; i++) {
        double ux = (y[2 * i] - lo) / bw, uy = (y[2 * i + 1] - lo) / bw;
        int bx = (int)ux, by = (int)uy;
        bx = bx < 0 ? 0 : bx >= nb ? nb - 1 : bx;
        by = by < 0 ? 0 : by >= nb ? nb - 1 : by;
        w->box[i] = by * nb + bx;
        lagrange(P, ux - bx, w->wx + P * (size_t)i);
        lagrange(P, uy - by, w->wy + P * (size_t)i);
    }
    /* Points bucketed by box, in index order within each (a counting sort). */
    const int nboxes = nb * nb;
    int *start = w->start;
    memset(start, 0, sizeof(int) * ((size_t)nboxes + 1));
    for (int i = 0; i < n; i++) start[w->box[i] + 1]++;
    for (int b = 0; b < nboxes; b++) start[b + 1] += start[b];
    for (int i = 0; i < n; i++) w->order[start[w->box[i]]++] = i;
    for (int b = nboxes; b > 0; b--) start[b] = start[b - 1];
    start[0] = 0;

    /* Spread the charges; every box owns its P x P nodes. */
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (int k = 0; k < 4 * m2; k++) memset(w->grid[k / m2] + (size_t)(k % m2) * rs, 0, sizeof(double) * rs);
#pragma omp for schedule(dynamic, 16)
        for (int b = 0; b < nboxes; b++) {
            const int bx = b % nb, by = b / nb;
            for (int a = start[b]; a < start[b + 1]; a++) {
                const int i = w->order[a];
                const double *lx = w->wx + P * (size_t)i, *ly = w->wy + P * (size_t)i;
                const double x0 = y[2 * i], x1 = y[2 * i + 1], q[4] = {1, x0, x1, x0 * x0 + x1 * x1};
                for (int r = 0; r < P; r++)
                    for (int c = 0; c < P; c++) {
                        const double wt = ly[r] * lx[c];
                        const size_t at = (size_t)(by * P + r) * rs + bx * P + c;
                        for (int k = 0; k < 4; k++) w->grid[k][at] += wt * q[k];
                    }
            }
        }
        /* Convolve: each grid whole on one thread, so the result does not depend on which. */
        const double *kh = kern, scale = 1.0 / ((double)m2 * m2);
#pragma omp for schedule(static, 1)
        for (int k = 0; k < 4; k++) {
            double *g = w->grid[k];
            fftw_execute_dft_r2c(w->fwd, g, (fftw_complex *)g);
            /* The kernel is real and even: its transform is real. */
            for (size_t e = 0; e < len; e += 2) {
                g[e] *= kh[e] * scale;
                g[e + 1] *= kh[e] * scale;
            }
            fftw_execute_dft_c2r(w->inv, (fftw_complex *)g, g);
        }
        /* Back to the points. */
#pragma omp for schedule(static)
        for (int i = 0; i < n; i++) {
            const int bx = w->box[i] % nb, by = w->box[i] / nb;
            const double *lx = w->wx + P * (size_t)i, *ly = w->wy + P * (size_t)i;
            double phi[4] = {0, 0, 0, 0};
            for (int r = 0; r < P; r++)
                for (int c = 0; c < P; c++) {
                    const double wt = ly[r] * lx[c];
                    const size_t at = (size_t)(by * P + r) * rs + bx * P + c;
                    for (int k = 0; k < 4; k++) phi[k] += wt * w->grid[k][at];
                }
            const double x0 = y[2 * i], x1 = y[2 * i + 1];
            rep[2 * i] = phi[0] * x0 - phi[1];
            rep[2 * i + 1] = phi[0] * x1 - phi[2];
            zi[i] = (1 + x0 * x0 + x1 * x1) * phi[0] - 2 * (x0 * phi[1] + x1 * phi[2]) + phi[3] - 1;
        }
    }
    return 0;
}
