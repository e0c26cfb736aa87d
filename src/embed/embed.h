/* embed: internals shared by PCA, t-SNE, the map quality scores and the map files. */
#ifndef LATENT_EMBED_H
#define LATENT_EMBED_H

#include <stdint.h>

#include "core/core.h"

/* The k nearest neighbours of every point of x [n, d] among the others, by
 * Euclidean distance, exactly: brute force with BLAS over blocks of rows.
 * idx [n, k] gets indices sorted by increasing distance (ties: lower index
 * first), dist2 [n, k] the squared distances recomputed in double from the
 * coordinates. Parallel over fixed blocks: the result does not depend on
 * the thread count. */
int lt_knn_exact(const float *x, int n, int d, int k, int threads, int *idx, float *dist2, lt_err *err);

/* The same, answered by a vantage-point tree (exact as well: the tree only
 * prunes what cannot be nearer). Faster than brute force for low d. */
int lt_knn_vptree(const float *x, int n, int d, int k, int threads, uint64_t seed, int *idx, float *dist2,
                  lt_err *err);

/* Seeded sample of m distinct indices of [0, n), sorted. */
int lt_sample_indices(int n, int m, uint64_t seed, int *out, lt_err *err);

#endif
