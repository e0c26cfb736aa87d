/* Linear layer: one GEMM each way over all n samples. */
#include <cblas.h>

#include "nn/layers.h"

/* The bias goes in first and the product adds to it: with beta 0 OpenBLAS
 * clears the output in a pass of its own, and the bias took another. */
void lt_dense_forward(float *out, const float *inp, const float *w, const float *b, int n, int nin,
                      int nout)
{
    if (b)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < nout; o++) out[(size_t)i * nout + o] = b[o];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, nout, nin, 1.0f, inp, nin, w, nin, b ? 1.0f : 0.0f,
                out, nout);
}

void lt_dense_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                       const float *w, int n, int nin, int nout)
{
    if (db)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < nout; o++) db[o] += dout[(size_t)i * nout + o];
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nout, nin, n, 1.0f, dout, nout, inp,
                    nin, 1.0f, dw, nin);
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, nin, nout, 1.0f, dout, nout, w,
                    nin, 0.0f, dinp, nin);
}
