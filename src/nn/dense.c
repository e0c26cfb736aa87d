/* Linear layer: one GEMM each way over all n samples. */
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

void lt_dense_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                       const float *w, int n, int nin, int nout)
{
    if (db)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < nout; o++) db[o] += dout[(size_t)i * nout + o];
    if (dw)
        lt_gemm(1, 0, nout, nin, n, dout, nout, inp, nin, 1, dw, nin);
    if (dinp)
        lt_gemm(0, 0, n, nin, nout, dout, nout, w, nin, 0, dinp, nin);
}
