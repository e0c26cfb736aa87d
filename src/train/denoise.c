/* Baselines a denoising autoencoder is judged against: the noisy input itself
 * and the best linear denoiser (the Wiener / LMMSE estimate), fitted on the
 * training images. For additive Gaussian noise of variance s^2 independent of
 * the image x (mean m, covariance C), the best linear estimate from y = x + n
 * is m + C (C + s^2 I)^-1 (y - m) = m + Q diag(l / (l + s^2)) Q^T (y - m) with
 * C = Q diag(l) Q^T, computed in double with LAPACK's symmetric eigensolver. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/net.h"

#define BLOCK 1000

int lt_denoise_baselines(const lt_dataset *train, const lt_dataset *test, const lt_noise *noise, int threads,
                         double *noisy_mse, double *lmmse_mse, lt_err *err)
{
    const int d = train->c * train->h * train->w;
    if (test->c * test->h * test->w != d)
        return lt_errf(err, LT_EINVAL, "train and test images differ in size (%d and %d values)", d,
                       test->c * test->h * test->w);
    *noisy_mse = *lmmse_mse = NAN;
    const int lmmse = noise->kind == LT_NOISE_GAUSSIAN && !noise->clip;
    float *clean = lt_malloc(sizeof(float) * (size_t)d * BLOCK, err), *noisy = lt_malloc(sizeof(float) * (size_t)d * BLOCK, err);
    double *mean = lt_calloc((size_t)d, sizeof(double), err), *cov = NULL, *ev = NULL, *wf = NULL, *y = NULL, *xh = NULL;
    int rc = (!clean || !noisy || !mean) ? LT_ENOMEM : 0;
    if (!rc && lmmse) {
        cov = lt_calloc((size_t)d * d, sizeof(double), err);
        ev = lt_calloc((size_t)d, sizeof(double), err);
        wf = lt_calloc((size_t)d * d, sizeof(double), err);
        y = lt_calloc((size_t)d * BLOCK, sizeof(double), err);
        xh = lt_calloc((size_t)d * BLOCK, sizeof(double), err);
        if (!cov || !ev || !wf || !y || !xh) rc = LT_ENOMEM;
    }
    if (!rc && lmmse) {
        for (int s = 0; s < train->n; s += BLOCK) {
            int bn = train->n - s < BLOCK ? train->n - s : BLOCK;
            lt_images_to_float(clean, train, NULL, s, bn, threads);
            for (size_t i = 0; i < (size_t)bn * d; i++) mean[i % d] += clean[i];
        }
        for (int k = 0; k < d; k++) mean[k] /= train->n;
        /* Covariance in blocks of images, so memory stays at one block. */
        for (int s = 0; s < train->n; s += BLOCK) {
            int bn = train->n - s < BLOCK ? train->n - s : BLOCK;
            lt_images_to_float(clean, train, NULL, s, bn, threads);
            for (size_t i = 0; i < (size_t)bn * d; i++) y[i] = clean[i] - mean[i % d];
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, bn, 1.0 / train->n, y, d, 1.0, cov, d);
        }
        if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', d, cov, d, ev) != 0)
            rc = lt_errf(err, LT_EINVAL, "the eigendecomposition of the training covariance failed");
    }
    if (!rc && lmmse) {
        /* wf = Q diag(l / (l + s^2)) Q^T; cov now holds Q (eigenvectors in columns). */
        const double s2 = (double)noise->level * noise->level;
        double *qs = y; /* reuse: d x d fits when d <= BLOCK */
        if (d > BLOCK) rc = lt_errf(err, LT_ENOTSUP, "images of more than %d values are not supported here", BLOCK);
        for (int i = 0; !rc && i < d; i++)
            for (int j = 0; j < d; j++) {
                double l = ev[j] > 0 ? ev[j] : 0;
                qs[(size_t)i * d + j] = cov[(size_t)i * d + j] * (l / (l + s2));
            }
        if (!rc) cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, d, d, 1.0, qs, d, cov, d, 0.0, wf, d);
    }
    double se_noisy = 0, se_lmmse = 0;
    for (int s = 0; !rc && s < test->n; s += BLOCK) {
        int bn = test->n - s < BLOCK ? test->n - s : BLOCK;
        lt_images_to_float(clean, test, NULL, s, bn, threads);
        memcpy(noisy, clean, sizeof(float) * (size_t)bn * d);
        /* The same stream lt_model_eval_mse uses: the very same noisy test images. */
        lt_noise_batch(noise, noisy, bn, (size_t)d, LT_EVAL_NOISE_SEED, ~0ull, (uint64_t)s, threads);
        for (size_t i = 0; i < (size_t)bn * d; i++) {
            double e = (double)noisy[i] - clean[i];
            se_noisy += e * e;
        }
        if (!lmmse) continue;
        for (size_t i = 0; i < (size_t)bn * d; i++) y[i] = noisy[i] - mean[i % d];
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bn, d, d, 1.0, y, d, wf, d, 0.0, xh, d);
        for (size_t i = 0; i < (size_t)bn * d; i++) {
            double e = xh[i] + mean[i % d] - clean[i];
            se_lmmse += e * e;
        }
    }
    if (!rc) {
        *noisy_mse = se_noisy / ((double)test->n * d);
        if (lmmse) *lmmse_mse = se_lmmse / ((double)test->n * d);
    }
    free(clean), free(noisy), free(mean), free(cov), free(ev), free(wf), free(y), free(xh);
    return rc;
}
