/* Losses. Sums are accumulated in double: a batch of 256 MNIST images is 200k
 * terms, enough for float round-off to show in the reported loss. */
#include <math.h>

#include "core/core.h"
#include "nn/layers.h"

LT_VECTOR_CLONES static double mse_loss_impl(float *dy, const float *y, const float *t, size_t len, double total)
{
    double sum = 0.0;
    const float g = (float)(2.0 / total);
    for (size_t i = 0; i < len; i++) {
        float d = y[i] - t[i];
        sum += (double)d * d;
        if (dy) dy[i] = g * d;
    }
    return sum;
}

double lt_mse_loss(float *dy, const float *y, const float *t, size_t len, double total)
{
    return mse_loss_impl(dy, y, t, len, total);
}

double lt_bce_loss(float *dy, const float *y, const float *t, size_t len, double total)
{
    double sum = 0.0;
    const double inv = 1.0 / total;
    for (size_t i = 0; i < len; i++) {
        /* PyTorch clamps each log at -100 so a saturated sigmoid gives a large
         * finite loss instead of inf. */
        double ly = fmax(log((double)y[i]), -100.0);
        double l1y = fmax(log1p(-(double)y[i]), -100.0);
        sum += -(t[i] * ly + (1.0 - t[i]) * l1y);
        if (dy) {
            /* d/dy of -(t log y + (1-t) log(1-y)); PyTorch guards the
             * denominator with eps 1e-12. */
            double den = fmax((double)y[i] * (1.0 - y[i]), 1e-12);
            dy[i] = (float)(inv * (y[i] - t[i]) / den);
        }
    }
    return sum;
}

double lt_xent_loss(float *dy, const float *logits, const uint8_t *labels, int n, int classes,
                    double total)
{
    double sum = 0.0;
    const double inv = 1.0 / total;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * classes;
        float mx = z[0];
        for (int c = 1; c < classes; c++) mx = z[c] > mx ? z[c] : mx;
        double se = 0.0;
        for (int c = 0; c < classes; c++) se += exp((double)z[c] - mx);
        double lse = mx + log(se);
        sum += lse - z[labels[i]];
        if (dy)
            for (int c = 0; c < classes; c++) {
                double p = exp((double)z[c] - lse);
                dy[(size_t)i * classes + c] = (float)(inv * (p - (c == labels[i])));
            }
    }
    return sum;
}
