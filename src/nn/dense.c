/* Linear layer: one GEMM each way over all n samples. */
#include <string.h>

#include "core/core.h"
#include "nn/layers.h"

/* The forward product wants W^T [nin, nout]: with W itself it is a
 * transposed-B product, which LIBXSMM cannot do and would leave to OpenBLAS,
 * whose kernels (and so the bits) depend on the CPU. The workspace keeps
 * each layer's W^T, made once per pass (lt_net_prepare_weights), not once a
 * chunk: a 288 x 64 copy took longer than the product. */

/* wt[q][o] = w[o][q], in 16 x 16 tiles so that neither the reads nor the
 * writes stride across the whole weight. */
void lt_dense_transpose(float *restrict wt, const float *restrict w, int nin, int nout)
{
    for (int o0 = 0; o0 < nout; o0 += 16)
        for (int q0 = 0; q0 < nin; q0 += 16) {
            const int o1 = o0 + 16 < nout ? o0 + 16 : nout, q1 = q0 + 16 < nin ? q0 + 16 : nin;
            for (int q = q0; q < q1; q++)
                for (int o = o0; o < o1; o++) wt[(size_t)q * nout + o] = w[(size_t)o * nin + q];
        }
}

/* The bias goes in first and the product adds to it. */
void lt_dense_forward(float *out, const float *inp, const float *wt, const float *b, int n, int nin, int nout)
{
    if (b)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < nout; o++) out[(size_t)i * nout + o] = b[o];
    lt_gemm(0, 0, n, nout, nin, inp, nin, wt, nout, b != NULL, out, nout);
}

size_t lt_dense_scratch_size(int n, int nin, int nout)
{
    if (nin <= LT_DENSE_SLAB) return 0;
    /* dout^T, then one slab of n (input) or nout (weight) rows. */
    return (size_t)nout * n + (size_t)(n > nout ? n : nout) * LT_DENSE_SLAB;
}

/* dst [rows, w] = columns [j, j + w) of src [rows, ld]. */
static void copy_slab(float *restrict dst, const float *restrict src, int rows, size_t ld, int j, int w)
{
    for (int r = 0; r < rows; r++) memcpy(dst + (size_t)r * w, src + (size_t)r * ld + j, sizeof(float) * w);
}

void lt_dense_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                       const float *w, int n, int nin, int nout, float *scratch)
{
    if (db)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < nout; o++) db[o] += dout[(size_t)i * nout + o];
    if (!scratch || nin <= LT_DENSE_SLAB) {
        if (dw) lt_gemm(1, 0, nout, nin, n, dout, nout, inp, nin, 1, dw, nin);
        if (dinp) lt_gemm(0, 0, n, nin, nout, dout, nout, w, nin, 0, dinp, nin);
        return;
    }
    /* Wide: the products go in slabs of LT_DENSE_SLAB columns anyway (gemm.c),
     * and a slab read in place is rows a whole weight row apart (36 KB for
     * the CNN): the same few cache sets for all of them. Copied into
     * contiguous rows first, and the weight gradient as a plain product
     * with dout^T made once (LIBXSMM's transposed-operand kernel was the
     * slower one): microbenchmark, one chunk of 32, per image: input
     * gradient 51 -> 33 us, weight gradient 60 -> 34. */
    float *dT = scratch, *slab = scratch + (size_t)nout * n;
    if (dw)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < nout; o++) dT[(size_t)o * n + i] = dout[(size_t)i * nout + o];
    for (int j = 0; j < nin; j += LT_DENSE_SLAB) {
        const int sw = nin - j < LT_DENSE_SLAB ? nin - j : LT_DENSE_SLAB;
        if (dw) {
            copy_slab(slab, inp, n, (size_t)nin, j, sw);
            lt_gemm(0, 0, nout, sw, n, dT, n, slab, sw, 1, dw + j, nin);
        }
        if (dinp) {
            copy_slab(slab, w, nout, (size_t)nin, j, sw);
            lt_gemm(0, 0, n, sw, nout, dout, nout, slab, sw, 0, dinp + j, nin);
        }
    }
}
