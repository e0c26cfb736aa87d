/* PCA through LAPACK: the covariance in double (BLAS dsyrk over blocks of
 * rows), its top eigenvectors with LAPACKE_dsyevr, and the exact linear maps
 * both ways. Every sum runs in a fixed order on one BLAS thread, so the
 * result does not depend on the thread count. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "embed/embed.h"

#define BLOCK 1024

void lt_pca_free(lt_pca *p)
{
    if (!p) return;
    free(p->mean);
    free(p->components);
    free(p->variance);
    free(p->variance_ratio);
    memset(p, 0, sizeof *p);
}

int lt_pca_fit(lt_pca *p, const float *x, int n, int d, int k, lt_err *err)
{
    memset(p, 0, sizeof *p);
    if (n < 2 || d < 1 || !x) return lt_errf(err, LT_EINVAL, "PCA needs at least 2 points of at least 1 value, found %d of %d", n, d);
    if (k < 1 || k > d) return lt_errf(err, LT_EINVAL, "PCA: %d components asked for data of dimension %d", k, d);
    if (d > 20000) return lt_errf(err, LT_ENOTSUP, "PCA: dimension %d is over the supported 20000", d);
    /* We parallelise nothing here; OpenBLAS's own threads would make the sums depend on its split. */
    openblas_set_num_threads(1);
    for (size_t i = 0; i < (size_t)n * d; i++)
        if (!isfinite(x[i]))
            return lt_errf(err, LT_EINVAL, "PCA: value %zu of point %zu is not finite", i % d, i / d);
    double *mean = lt_calloc((size_t)d, sizeof(double), err), *cov = lt_calloc((size_t)d * d, sizeof(double), err);
    double *blk = lt_malloc(sizeof(double) * BLOCK * d, err), *w = lt_malloc(sizeof(double) * d, err);
    double *z = lt_malloc(sizeof(double) * (size_t)d * k, err);
    lapack_int *supp = lt_malloc(sizeof(lapack_int) * 2 * (size_t)d, err);
    p->mean = lt_malloc(sizeof(float) * d, err);
    p->components = lt_malloc(sizeof(float) * (size_t)k * d, err);
    p->variance = lt_malloc(sizeof(double) * k, err);
    p->variance_ratio = lt_malloc(sizeof(double) * k, err);
    int rc = (!mean || !cov || !blk || !w || !z || !supp || !p->mean || !p->components || !p->variance ||
              !p->variance_ratio) ? LT_ENOMEM : 0;
    if (!rc) {
        for (int i = 0; i < n; i++)
            for (int j = 0; j < d; j++) mean[j] += x[(size_t)i * d + j];
        for (int j = 0; j < d; j++) mean[j] /= n;
        for (int s = 0; s < n; s += BLOCK) {
            int bn = n - s < BLOCK ? n - s : BLOCK;
            for (int i = 0; i < bn; i++)
                for (int j = 0; j < d; j++) blk[(size_t)i * d + j] = x[(size_t)(s + i) * d + j] - mean[j];
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, bn, 1.0 / (n - 1), blk, d, 1.0, cov, d);
        }
        double total = 0;
        for (int j = 0; j < d; j++) total += cov[(size_t)j * d + j];
        lapack_int found = 0;
        lapack_int info = LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'V', 'I', 'U', d, cov, d, 0, 0, d - k + 1, d, 0, &found, w, z,
                                         k, supp);
        if (info != 0 || found != k) {
            rc = lt_errf(err, LT_EINVAL, "PCA: the eigendecomposition of the covariance failed (LAPACK info %d)", (int)info);
        } else {
            p->d = d, p->k = k, p->total_variance = total;
            for (int c = 0; c < k; c++) {
                /* dsyevr gives ascending eigenvalues: component c is column k-1-c. */
                int col = k - 1 - c;
                /* Sign convention (as scikit-learn's svd_flip): the largest
                 * entry in absolute value is positive, so a map does not flip
                 * between runs or libraries. */
                int big = 0;
                for (int j = 1; j < d; j++)
                    if (fabs(z[(size_t)j * k + col]) > fabs(z[(size_t)big * k + col])) big = j;
                double sgn = z[(size_t)big * k + col] < 0 ? -1 : 1;
                for (int j = 0; j < d; j++) p->components[(size_t)c * d + j] = (float)(sgn * z[(size_t)j * k + col]);
                p->variance[c] = w[col] > 0 ? w[col] : 0;
                p->variance_ratio[c] = total > 0 ? p->variance[c] / total : 0;
            }
            for (int j = 0; j < d; j++) p->mean[j] = (float)mean[j];
        }
    }
    free(mean), free(cov), free(blk), free(w), free(z), free(supp);
    if (rc) lt_pca_free(p);
    return rc;
}

int lt_pca_transform(const lt_pca *p, const float *x, int n, float *y, lt_err *err)
{
    const int d = p->d, k = p->k;
    double *blk = lt_malloc(sizeof(double) * BLOCK * d, err), *c = lt_malloc(sizeof(double) * (size_t)k * d, err);
    double *out = lt_malloc(sizeof(double) * BLOCK * k, err);
    int rc = (!blk || !c || !out) ? LT_ENOMEM : 0;
    if (!rc) {
        openblas_set_num_threads(1);
        for (size_t i = 0; i < (size_t)k * d; i++) c[i] = p->components[i];
        for (int s = 0; s < n; s += BLOCK) {
            int bn = n - s < BLOCK ? n - s : BLOCK;
            for (int i = 0; i < bn; i++)
                for (int j = 0; j < d; j++) blk[(size_t)i * d + j] = (double)x[(size_t)(s + i) * d + j] - p->mean[j];
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bn, k, d, 1.0, blk, d, c, d, 0.0, out, k);
            for (size_t i = 0; i < (size_t)bn * k; i++) y[(size_t)s * k + i] = (float)out[i];
        }
    }
    free(blk), free(c), free(out);
    return rc;
}

int lt_pca_inverse(const lt_pca *p, const float *y, int n, float *x, lt_err *err)
{
    const int d = p->d, k = p->k;
    double *in = lt_malloc(sizeof(double) * BLOCK * k, err), *c = lt_malloc(sizeof(double) * (size_t)k * d, err);
    double *out = lt_malloc(sizeof(double) * BLOCK * d, err);
    int rc = (!in || !c || !out) ? LT_ENOMEM : 0;
    if (!rc) {
        openblas_set_num_threads(1);
        for (size_t i = 0; i < (size_t)k * d; i++) c[i] = p->components[i];
        for (int s = 0; s < n; s += BLOCK) {
            int bn = n - s < BLOCK ? n - s : BLOCK;
            for (size_t i = 0; i < (size_t)bn * k; i++) in[i] = y[(size_t)s * k + i];
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bn, d, k, 1.0, in, k, c, d, 0.0, out, d);
            for (int i = 0; i < bn; i++)
                for (int j = 0; j < d; j++) x[(size_t)(s + i) * d + j] = (float)(out[(size_t)i * d + j] + p->mean[j]);
        }
    }
    free(in), free(c), free(out);
    return rc;
}
