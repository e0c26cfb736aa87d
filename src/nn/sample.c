/* The VAE's reparameterisation layer and its KL term. The KL to the prior
 * lives here rather than in the loss: it is a function of this layer's input
 * only, so its gradient joins the one flowing back from the decoder. */
#include <math.h>

#include "core/core.h"
#include "nn/layers.h"

void lt_sample_forward(float *z, float *eps, int draw, double *kl, const float *inp, int n, int k, uint64_t seed,
                       uint64_t step, uint64_t first, uint64_t salt)
{
    for (int s = 0; s < n; s++) {
        const float *mu = inp + (size_t)s * 2 * k, *lv = mu + k;
        float *zs = z + (size_t)s * k;
        if (eps) {
            lt_rng r = lt_rng_for(seed, step, first + (uint64_t)s, salt);
            float *e = eps + (size_t)s * k;
            for (int j = 0; j < k; j++) {
                if (draw) e[j] = lt_rng_normal(&r);
                zs[j] = mu[j] + expf(0.5f * lv[j]) * e[j];
            }
        } else {
            for (int j = 0; j < k; j++) zs[j] = mu[j];
        }
        if (kl) {
            double sum = 0.0;
            for (int j = 0; j < k; j++) sum += 1.0 + lv[j] - (double)mu[j] * mu[j] - exp((double)lv[j]);
            kl[s] = -0.5 * sum;
        }
    }
}

void lt_sample_backward(float *dinp, const float *dz, const float *eps, const float *inp, int n, int k,
                        float kl_scale)
{
    for (int s = 0; s < n; s++) {
        const float *mu = inp + (size_t)s * 2 * k, *lv = mu + k, *g = dz + (size_t)s * k;
        const float *e = eps ? eps + (size_t)s * k : NULL;
        float *dmu = dinp + (size_t)s * 2 * k, *dlv = dmu + k;
        for (int j = 0; j < k; j++) {
            float sd = expf(0.5f * lv[j]);
            dmu[j] = g[j] + kl_scale * mu[j];
            dlv[j] = (e ? g[j] * 0.5f * sd * e[j] : 0.0f) + kl_scale * 0.5f * (sd * sd - 1.0f);
        }
    }
}
