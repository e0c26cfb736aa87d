/* Scores of a 2-D map (k-NN label accuracy, trustworthiness) and the way back
 * from a map to the data (distance-weighted average of the nearest points'
 * codes). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "embed/embed.h"

int lt_map_quality_score(const float *x, int n, int d, const float *y, const uint8_t *labels, int k,
                         int max_points, uint64_t seed, int threads, lt_map_quality *q, lt_err *err)
{
    memset(q, 0, sizeof *q);
    if (k < 1 || n < 2 * k + 2)
        return lt_errf(err, LT_EINVAL, "map scores with k = %d need at least %d points, found %d", k, 2 * k + 2, n);
    int *nbr = lt_malloc(sizeof(int) * (size_t)n * k, err);
    float *d2 = lt_malloc(sizeof(float) * (size_t)n * k, err);
    int rc = (!nbr || !d2) ? LT_ENOMEM : 0;
    /* Neighbours in the map: a vantage-point tree is quick in 2-D. */
    if (!rc) rc = lt_knn_vptree(y, n, 2, k, threads, seed, nbr, d2, err);
    if (!rc) {
        long correct = 0;
        for (int i = 0; i < n; i++) {
            int votes[256] = {0}, best = -1, bestv = 0;
            const int *nb = nbr + (size_t)i * k;
            for (int a = 0; a < k; a++) votes[labels[nb[a]]]++;
            /* The most votes; among ties, the label met first from the nearest neighbour out. */
            for (int a = 0; a < k; a++)
                if (votes[labels[nb[a]]] > bestv) bestv = votes[labels[nb[a]]], best = labels[nb[a]];
            correct += best == labels[i];
        }
        q->knn_accuracy = (double)correct / n;
        q->n_knn = n;
        q->k = k;
    }
    free(nbr), free(d2);
    if (rc) return rc;
    const int m = max_points > 0 && n > max_points ? max_points : n;
    if (m == n) {
        q->n_trust = n;
        return lt_trustworthiness(x, d, y, 2, n, k, threads, &q->trustworthiness, err);
    }
    int *idx = lt_malloc(sizeof(int) * m, err);
    float *xs = lt_malloc(sizeof(float) * (size_t)m * d, err), *ys = lt_malloc(sizeof(float) * 2 * (size_t)m, err);
    rc = (!idx || !xs || !ys) ? LT_ENOMEM : 0;
    if (!rc) rc = lt_sample_indices(n, m, seed, idx, err);
    if (!rc) {
        for (int a = 0; a < m; a++) {
            memcpy(xs + (size_t)a * d, x + (size_t)idx[a] * d, sizeof(float) * d);
            memcpy(ys + 2 * (size_t)a, y + 2 * (size_t)idx[a], sizeof(float) * 2);
        }
        rc = lt_trustworthiness(xs, d, ys, 2, m, k, threads, &q->trustworthiness, err);
        q->n_trust = m;
    }
    free(idx), free(xs), free(ys);
    return rc;
}

static double sqdist(const float *a, const float *b, int d)
{
    double s = 0;
    for (int t = 0; t < d; t++) {
        double e = (double)a[t] - b[t];
        s += e * e;
    }
    return s;
}

/* (distance, index) order: nearer first, ties by index. */
static int before(double da, int ia, double db, int ib) { return da < db || (da == db && ia < ib); }

int lt_trustworthiness(const float *x, int dx, const float *y, int dy, int n, int k, int threads, double *t,
                       lt_err *err)
{
    if (k < 1 || 2 * k >= n - 1)
        return lt_errf(err, LT_EINVAL, "trustworthiness with k = %d needs more than %d points, found %d", k, 2 * k + 1, n);
    double *pen = lt_calloc((size_t)n, sizeof(double), err);
    if (!pen) return LT_ENOMEM;
    int failed = 0;
#pragma omp parallel num_threads(threads > 0 ? threads : omp_get_max_threads())
    {
        double *din = malloc(sizeof(double) * n), *kd = malloc(sizeof(double) * k);
        int *kj = malloc(sizeof(int) * k);
        if (!din || !kd || !kj) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 16)
        for (int i = 0; i < n; i++) {
            if (!din || !kd || !kj) continue;
            /* The k nearest in the map, by insertion into a sorted list. */
            int size = 0;
            for (int j = 0; j < n; j++) {
                if (j == i) continue;
                double dd = sqdist(y + (size_t)i * dy, y + (size_t)j * dy, dy);
                if (size == k && !before(dd, j, kd[k - 1], kj[k - 1])) continue;
                int p = size < k ? size++ : k - 1;
                while (p > 0 && before(dd, j, kd[p - 1], kj[p - 1])) kd[p] = kd[p - 1], kj[p] = kj[p - 1], p--;
                kd[p] = dd, kj[p] = j;
            }
            for (int j = 0; j < n; j++) din[j] = j == i ? -1 : sqdist(x + (size_t)i * dx, x + (size_t)j * dx, dx);
            /* Rank in the input of each map neighbour: 1 + the points nearer to i. */
            double p = 0;
            for (int a = 0; a < size; a++) {
                int j = kj[a];
                long r = 1;
                for (int l = 0; l < n; l++)
                    if (l != i && l != j && before(din[l], l, din[j], j)) r++;
                if (r > k) p += (double)(r - k);
            }
            pen[i] = p;
        }
        free(din), free(kd), free(kj);
    }
    double sum = 0;
    for (int i = 0; i < n; i++) sum += pen[i];
    free(pen);
    if (failed) return lt_errf(err, LT_ENOMEM, "trustworthiness: out of memory for %d points", n);
    *t = 1.0 - 2.0 / ((double)n * k * (2.0 * n - 3.0 * k - 1.0)) * sum;
    return 0;
}

int lt_map_inverse_knn(const float *coords, const float *codes, int n, int d, const float *q, int nq, int k,
                       float *out, lt_err *err)
{
    if (n < 1 || d < 1 || nq < 0 || k < 1) return lt_errf(err, LT_EINVAL, "map inverse: bad sizes (n %d, d %d, k %d)", n, d, k);
    if (k > n) k = n;
    float x0 = coords[0], x1 = coords[0], y0 = coords[1], y1 = coords[1];
    for (int i = 1; i < n; i++) {
        x0 = fminf(x0, coords[2 * i]), x1 = fmaxf(x1, coords[2 * i]);
        y0 = fminf(y0, coords[2 * i + 1]), y1 = fmaxf(y1, coords[2 * i + 1]);
    }
    double ext = fmax(x1 - x0, y1 - y0), eps2 = ext > 0 ? 1e-6 * ext * ext : 1e-12;
    double *kd = lt_malloc(sizeof(double) * k, err), *acc = lt_malloc(sizeof(double) * d, err);
    int *kj = lt_malloc(sizeof(int) * k, err);
    int rc = (!kd || !kj || !acc) ? LT_ENOMEM : 0;
    for (int a = 0; !rc && a < nq; a++) {
        if (!isfinite(q[2 * a]) || !isfinite(q[2 * a + 1])) {
            rc = lt_errf(err, LT_EINVAL, "map inverse: point %d is not finite", a + 1);
            break;
        }
        int size = 0;
        for (int j = 0; j < n; j++) {
            double dd = sqdist(q + 2 * (size_t)a, coords + 2 * (size_t)j, 2);
            if (size == k && !before(dd, j, kd[k - 1], kj[k - 1])) continue;
            int p = size < k ? size++ : k - 1;
            while (p > 0 && before(dd, j, kd[p - 1], kj[p - 1])) kd[p] = kd[p - 1], kj[p] = kj[p - 1], p--;
            kd[p] = dd, kj[p] = j;
        }
        double wsum = 0;
        memset(acc, 0, sizeof(double) * d);
        for (int b = 0; b < size; b++) {
            double w = 1 / (kd[b] + eps2);
            wsum += w;
            for (int t = 0; t < d; t++) acc[t] += w * codes[(size_t)kj[b] * d + t];
        }
        for (int t = 0; t < d; t++) out[(size_t)a * d + t] = (float)(acc[t] / wsum);
    }
    free(kd), free(kj), free(acc);
    return rc;
}
