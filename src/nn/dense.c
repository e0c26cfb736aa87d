/* Linear layer: one GEMM each way over all n samples. */
#include "core/core.h"
#include "nn/layers.h"

/* The bias goes in first and the product adds to it: with beta 0 OpenBLAS
 * clears the output in a pass of its own, and the bias took another. */
void lt_dense_forward(float *out, const float *inp, const float *w, const float *b, int n, int nin,
                      int nout)
{
    if (b)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < nout; o++) out[(size_t)i * nout + o] = b[o];
    lt_gemm(0, 1, n, nout, nin, inp, nin, w, nin, b != NULL, out, nout);
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
