/* Element-wise layers: ReLU, sigmoid and dropout. */
#include <math.h>

#include "core/core.h"
#include "nn/layers.h"

void lt_relu_forward(float *out, const float *inp, size_t len)
{
    for (size_t i = 0; i < len; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

/* out > 0 exactly when inp > 0, so the saved output is enough. */
void lt_relu_backward(float *dinp, const float *dout, const float *out, size_t len)
{
    for (size_t i = 0; i < len; i++) dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

void lt_sigmoid_forward(float *out, const float *inp, size_t len)
{
    for (size_t i = 0; i < len; i++) out[i] = 1.0f / (1.0f + expf(-inp[i]));
}

void lt_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t len)
{
    for (size_t i = 0; i < len; i++) dinp[i] = dout[i] * out[i] * (1.0f - out[i]);
}

void lt_dropout_forward(float *out, float *mask, const float *inp, int n, size_t size, float p,
                        int train, uint64_t seed, uint64_t step, uint64_t first, uint64_t salt)
{
    if (!train || p <= 0.0f) {
        for (size_t i = 0; i < (size_t)n * size; i++) out[i] = inp[i];
        return;
    }
    const float scale = 1.0f / (1.0f - p);
    for (int s = 0; s < n; s++) {
        lt_rng r = lt_rng_for(seed, step, first + (uint64_t)s, salt);
        for (size_t i = 0; i < size; i++) {
            size_t j = (size_t)s * size + i;
            mask[j] = lt_rng_uniform(&r) < p ? 0.0f : scale;
            out[j] = inp[j] * mask[j];
        }
    }
}

void lt_dropout_backward(float *dinp, const float *dout, const float *mask, size_t len)
{
    for (size_t i = 0; i < len; i++) dinp[i] = dout[i] * mask[i];
}
