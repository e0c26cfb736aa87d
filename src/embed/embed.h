/* embed: internals shared by PCA, t-SNE, the map quality scores and the map files. */
#ifndef LATENT_EMBED_H
#define LATENT_EMBED_H

#include <stdint.h>
#include <string.h>

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

/* t-SNE's repulsion at the map y [n, 2]: rep [n, 2] gets
 * sum_j (y_i - y_j) / (1 + |y_i - y_j|^2)^2 and zi [n] sum_j 1 / (1 + |y_i - y_j|^2),
 * over j != i. By FFT-accelerated interpolation (workspace kept across
 * iterations; fft_repulsion.c) or by Barnes-Hut (theta > 0) / exactly
 * (theta 0) (bh.c). Both are bit-identical for any thread count. */
typedef struct lt_fft_rep lt_fft_rep;
lt_fft_rep *lt_fft_rep_new(int n, lt_err *err);
void lt_fft_rep_free(lt_fft_rep *w);
/* Interpolation nodes per box (3) and boxes per unit of map length (1). */
void lt_fft_rep_set(lt_fft_rep *w, int p, double per_unit);
int lt_fft_repulsion(lt_fft_rep *w, const double *y, int threads, double *rep, double *zi, lt_err *err);
/* Barnes-Hut (bh.c): a workspace kept across iterations, lt_bh_step for one
 * map; lt_bh_repulsion does both for a single call. */
typedef struct lt_bh lt_bh;
lt_bh *lt_bh_new(int n, lt_err *err);
void lt_bh_free(lt_bh *t);
int lt_bh_step(lt_bh *t, const double *y, double theta, int threads, double *rep, double *zi, lt_err *err);
int lt_bh_repulsion(const double *y, int n, double theta, int threads, double *rep, double *zi, lt_err *err);

/* The vector type of t-SNE's sums (bh.c, tsne.c): eight floats (GCC and
 * clang vector extensions), 256-bit registers in the AVX2 clone of a loop,
 * two 128-bit halves in the SSE2 one, the same arithmetic lane by lane in
 * both. Sums keep LT_LANES fixed lanes, added in lane order at the end, so
 * they do not depend on the CPU or the thread count. LT_LOAD8 is an
 * unaligned load (a macro: a function returning a vector changes the ABI). */
#define LT_LANES 8
typedef float lt_v8f __attribute__((vector_size(LT_LANES * sizeof(float))));
#define LT_LOAD8(v, p) memcpy(&(v), (p), sizeof(v))

/* Seeded sample of m distinct indices of [0, n), sorted. */
int lt_sample_indices(int n, int m, uint64_t seed, int *out, lt_err *err);

#endif
