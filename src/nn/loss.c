/* Losses. Sums are accumulated in double: a batch of 256 MNIST images is 200k
 * terms, enough for float round-off to show in the reported loss. */
#include <math.h>

#include "core/core.h"
#include "nn/layers.h"

/* Eight partial sums, combined in a fixed order at the end: one running sum
 * made each addition wait for the previous one (the loss was 2% of a
 * training step), and lanes of eight let the compiler use vectors. */
static inline __attribute__((always_inline)) double mse_c(float *restrict dy, const float *restrict y,
                                                         const float *restrict t, size_t len, float g,
                                                         const int grad)
{
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= len; i += 8)
        for (int j = 0; j < 8; j++) {
            const float d = y[i + j] - t[i + j];
            acc[j] += (double)d * d;
            if (grad) dy[i + j] = g * d;
        }
    double sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < len; i++) {
        const float d = y[i] - t[i];
        sum += (double)d * d;
        if (grad) dy[i] = g * d;
    }
    return sum;
}

LT_VECTOR_CLONES static double mse_loss_impl(float *dy, const float *y, const float *t, size_t len, double total)
{
    const float g = (float)(2.0 / total);
    return dy ? mse_c(dy, y, t, len, g, 1) : mse_c(dy, y, t, len, g, 0);
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
