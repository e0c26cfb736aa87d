/* What is particular to the variational autoencoder beyond its sample layer:
 * the likelihood setting, sampling from the prior, the importance-sampled
 * log-likelihood; and the classifier-based score of generated digits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/net.h"

#define LT_PI 3.14159265358979323846

int lt_likelihood_parse(const char *text, lt_likelihood *out, lt_err *err)
{
    if (!strcmp(text, "bernoulli")) {
        *out = (lt_likelihood){1, 0.0f};
        return 0;
    }
    if (!strcmp(text, "gaussian")) {
        *out = (lt_likelihood){0, 1.0f};
        return 0;
    }
    char *end;
    if (!strncmp(text, "gaussian:", 9)) {
        double c = strtod(text + 9, &end);
        if (end != text + 9 && !*end && c > 0.0 && c < 1e30) {
            *out = (lt_likelihood){0, (float)c};
            return 0;
        }
    }
    return lt_errf(err, LT_EINVAL, "likelihood '%s': expected gaussian:C with a variance C > 0 (e.g. gaussian:1) or bernoulli",
                   text);
}

int lt_likelihood_format(const lt_likelihood *lik, char *buf, size_t size)
{
    int n = lik->bernoulli ? snprintf(buf, size, "bernoulli") : snprintf(buf, size, "gaussian:%.9g", lik->c);
    return n < 0 || (size_t)n >= size ? LT_EINVAL : 0;
}

int lt_vae_sample(lt_model *m, int n, uint64_t seed, float *images, int threads, lt_err *err)
{
    if (m->kind != LT_MODEL_VAE) return lt_errf(err, LT_EINVAL, "sample: the model is not a variational autoencoder");
    if (n <= 0) return lt_errf(err, LT_EINVAL, "sample: the count must be positive, found %d", n);
    const int k = m->latent;
    float *z = lt_malloc(sizeof(float) * (size_t)n * k, err);
    if (!z) return LT_ENOMEM;
    for (int i = 0; i < n; i++) {
        lt_rng r = lt_rng_for(seed, 0x5A3B1E, (uint64_t)i, 0);
        for (int j = 0; j < k; j++) z[(size_t)i * k + j] = lt_rng_normal(&r);
    }
    int rc = lt_model_decode(m, z, n, images, threads, err);
    free(z);
    return rc;
}

/* log p(x|z) of one image from the decoder's output y (probabilities for
 * Bernoulli, clamped as PyTorch's BCE does). */
static double log_lik(const lt_likelihood *lik, const float *y, const float *x, size_t d)
{
    double s = 0.0;
    if (lik->bernoulli) {
        for (size_t i = 0; i < d; i++) {
            double ly = fmax(log((double)y[i]), -100.0), l1y = fmax(log1p(-(double)y[i]), -100.0);
            s += x[i] * ly + (1.0 - x[i]) * l1y;
        }
        return s;
    }
    for (size_t i = 0; i < d; i++) s += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
    return -s / (2.0 * lik->c) - 0.5 * (double)d * log(2.0 * LT_PI * lik->c);
}

int lt_vae_nll(lt_model *m, const lt_dataset *ds, int first, int count, int k, uint64_t seed, int threads,
               double *nll, lt_err *err)
{
    if (m->kind != LT_MODEL_VAE) return lt_errf(err, LT_EINVAL, "nll: the model is not a variational autoencoder");
    if (k < 1 || k > 100000) return lt_errf(err, LT_EINVAL, "nll: the number of importance samples must be in 1..100000, found %d", k);
    if (first < 0 || count <= 0 || first + count > ds->n)
        return lt_errf(err, LT_EINVAL, "images %d..%d are outside the dataset of %d", first, first + count, ds->n);
    if (ds->c != m->c || ds->h != m->h || ds->w != m->w)
        return lt_errf(err, LT_EINVAL, "the data has %dx%dx%d images but the model takes %dx%dx%d", ds->c, ds->h, ds->w,
                       m->c, m->h, m->w);
    const int dz = m->latent;
    /* Images per round, B*k decodes at once: about 5000 images of output. */
    const int B = k >= 100 ? (5000 / k > 1 ? 5000 / k : 1) : 50;
    const size_t d = (size_t)m->c * m->h * m->w;
    float *x = lt_malloc(sizeof(float) * d * B, err);
    float *st = lt_malloc(sizeof(float) * 2 * (size_t)dz * B, err);
    float *z = lt_malloc(sizeof(float) * (size_t)dz * B * k, err);
    float *y = lt_malloc(sizeof(float) * d * B * (size_t)k, err);
    double *lw = lt_malloc(sizeof(double) * (size_t)B * k, err);
    int rc = x && st && z && y && lw ? 0 : LT_ENOMEM;
    double total = 0.0;
    for (int s = 0; !rc && s < count; s += B) {
        int bn = count - s < B ? count - s : B;
        lt_images_to_float(x, ds, NULL, first + s, bn, threads);
        if (m->lik.bernoulli)
            for (size_t i = 0; i < d * bn; i++) x[i] = x[i] > 0.5f ? 1.0f : 0.0f;
        if ((rc = lt_model_encode_dist(m, x, bn, st, threads, err))) break;
        for (int i = 0; i < bn; i++) {
            const float *mu = st + (size_t)i * 2 * dz, *lv = mu + dz;
            lt_rng r = lt_rng_for(seed, 0x1115, (uint64_t)(first + s + i), 0);
            for (int j = 0; j < k; j++) {
                double lpz = 0.0, lqz = 0.0;
                float *zz = z + ((size_t)i * k + j) * dz;
                for (int t = 0; t < dz; t++) {
                    float e = lt_rng_normal(&r);
                    zz[t] = mu[t] + expf(0.5f * lv[t]) * e;
                    lpz += -0.5 * ((double)zz[t] * zz[t] + log(2.0 * LT_PI));
                    lqz += -0.5 * ((double)e * e + lv[t] + log(2.0 * LT_PI));
                }
                lw[(size_t)i * k + j] = lpz - lqz;
            }
        }
        if ((rc = lt_model_decode(m, z, bn * k, y, threads, err))) break;
        /* One image at a time, in order: the same sum for any thread count. */
        for (int i = 0; i < bn; i++) {
            double mx = -INFINITY;
            for (int j = 0; j < k; j++) {
                double *w = &lw[(size_t)i * k + j];
                *w += log_lik(&m->lik, y + ((size_t)i * k + j) * d, x + (size_t)i * d, d);
                mx = fmax(mx, *w);
            }
            double se = 0.0;
            for (int j = 0; j < k; j++) se += exp(lw[(size_t)i * k + j] - mx);
            total += -(mx + log(se) - log((double)k));
        }
    }
    free(x), free(st), free(z), free(y), free(lw);
    if (!rc) *nll = total / count;
    return rc;
}

int lt_generative_score(lt_model *clf, const float *images, int n, int threads, double *confident,
                        double *spread, int *counts, lt_err *err)
{
    if (clf->kind != LT_MODEL_CLF) return lt_errf(err, LT_EINVAL, "score: the scoring model is not a classifier");
    if (n <= 0) return lt_errf(err, LT_EINVAL, "score: no images");
    const int C = clf->classes;
    float *p = lt_malloc(sizeof(float) * (size_t)n * C, err);
    int *hist = lt_calloc((size_t)C, sizeof(int), err);
    if (!p || !hist) {
        free(p), free(hist);
        return LT_ENOMEM;
    }
    int rc = lt_model_predict(clf, images, n, p, threads, err);
    int sure = 0;
    for (int i = 0; !rc && i < n; i++) {
        const float *q = p + (size_t)i * C;
        int best = 0;
        for (int c = 1; c < C; c++) best = q[c] > q[best] ? c : best;
        hist[best]++;
        sure += q[best] > 0.9f;
    }
    if (!rc) {
        double h = 0.0;
        for (int c = 0; c < C; c++)
            if (hist[c]) h -= (double)hist[c] / n * log((double)hist[c] / n);
        *confident = (double)sure / n;
        *spread = h / log((double)C);
        if (counts) memcpy(counts, hist, sizeof(int) * (size_t)C);
    }
    free(p), free(hist);
    return rc;
}
