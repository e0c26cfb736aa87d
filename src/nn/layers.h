/* nn: the layer and loss kernels.
 *
 * Each kernel works on n samples that are contiguous in memory and runs on the
 * calling thread; the training step splits a batch into fixed chunks and runs
 * chunks in parallel, so kernels never need locks and results do not depend on
 * the thread count.
 *
 * Conventions (as in llm.c):
 *  - X_forward(out, ..., inp, params, sizes)
 *  - X_backward(dinp, dparams, ..., dout, saved activations, params, sizes)
 *  - Parameter gradients are ADDED into (so chunks and steps can accumulate);
 *    the input gradient dinp is WRITTEN. dinp may be NULL when no gradient is
 *    needed below this layer (the first layer), and dw/db may be NULL for a
 *    frozen layer: that work is skipped.
 *  - Activations are channels last: [n, h, w, c] (for one channel or a flat
 *    vector the same bytes as PyTorch's [n, c, h, w]); flatten and unflatten
 *    layers convert to and from PyTorch's (c, h, w) order, so dense layers and
 *    checkpoints see exactly what PyTorch sees. Weights keep PyTorch's
 *    layouts: Conv2d [out, in, k, k]; ConvTranspose2d [in, out, k, k];
 *    Linear [out, in]. */
#ifndef LATENT_NN_LAYERS_H
#define LATENT_NN_LAYERS_H

#include <stddef.h>
#include <stdint.h>

/* Geometry of a 2-D convolution or transposed convolution. For Conv2d, (c,h,w)
 * is the input and (oc,oh,ow) the output. For ConvTranspose2d likewise (input
 * c,h,w; output oc,oh,ow), with oh = (h-1)*stride - 2*pad + k + opad. */
typedef struct lt_conv_geom {
    int c, h, w;
    int oc, oh, ow;
    int k, stride, pad, opad;
} lt_conv_geom;

/* Fill in oh/ow from the rest; returns -1 if the output would be empty. */
int lt_conv_geom_init(lt_conv_geom *g, int transposed);
/* Floats of scratch the kernels below need for n samples at once. */
size_t lt_conv_scratch_size(const lt_conv_geom *g, int transposed, int n);

void lt_conv2d_forward(float *out, const float *inp, const float *w, const float *b, int n,
                       const lt_conv_geom *g, float *scratch);
/* cols_ready: the scratch still holds what lt_conv2d_forward unfolded from
 * these inputs (training workspaces keep one scratch per layer), so the
 * backward pass need not unfold them again. */
void lt_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, int n, const lt_conv_geom *g, float *scratch, int cols_ready);
void lt_convt2d_forward(float *out, const float *inp, const float *w, const float *b, int n,
                        const lt_conv_geom *g, float *scratch);
void lt_convt2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, int n, const lt_conv_geom *g, float *scratch);
/* ConvTranspose2d to one channel, k 3, stride 2, padding 1, output padding 1
 * (the autoencoder's last layer), computed directly (convt1.c); the two
 * functions above use it when lt_convt1_applies. */
int lt_convt1_applies(const lt_conv_geom *g);
size_t lt_convt1_scratch_size(const lt_conv_geom *g);
void lt_convt1_forward(float *out, const float *inp, const float *w, const float *b, int n, const lt_conv_geom *g,
                       float *scratch);
/* The bias gradient is the caller's (the shared sum over the output). */
void lt_convt1_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int n,
                        const lt_conv_geom *g, float *scratch);
/* Conv2d with k 3 and stride 1 between layers of 16 or more channels (the
 * MNIST CNN's second layer), by Winograd's F(2x2, 3x3) (winograd.c); the
 * Conv2d functions above use it when lt_wino_applies. dw is added to, dinp
 * overwritten; the bias gradient is the caller's. */
int lt_wino_applies(const lt_conv_geom *g);
size_t lt_wino_scratch_size(const lt_conv_geom *g, int n);
void lt_wino_forward(float *out, const float *inp, const float *w, const float *b, int n, const lt_conv_geom *g,
                     float *scratch);
void lt_wino_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w, int n,
                      const lt_conv_geom *g, float *scratch);

/* Linear: out[n, nout] = inp[n, nin] W^T + b, W [nout, nin]. The forward
 * pass takes W^T [nin, nout] (lt_dense_transpose makes it), the backward W. */
void lt_dense_transpose(float *wt, const float *w, int nin, int nout);
void lt_dense_forward(float *out, const float *inp, const float *wt, const float *b, int n, int nin, int nout);
/* scratch: lt_dense_scratch_size(n, nin, nout) floats, or NULL. A layer
 * wider than LT_DENSE_SLAB inputs (the CNN's 9216 -> 128) uses it to copy
 * each slab of columns of W and of the input into contiguous rows first. */
#define LT_DENSE_SLAB 512
size_t lt_dense_scratch_size(int n, int nin, int nout);
void lt_dense_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                       const float *w, int n, int nin, int nout, float *scratch);

/* out may be inp (in place). */
void lt_relu_forward(float *out, const float *inp, size_t len);
/* dinp may be dout (in place). */
void lt_relu_backward(float *dinp, const float *dout, const float *out, size_t len);
/* A ReLU fused with the bias of the layer before it, which then ran without
 * its bias (b NULL): forward x = max(x + b[c], 0) in place over rows of
 * `channels`; backward d = out > 0 ? d : 0 in place, adding the column sums
 * of the result into db (db NULL: a frozen layer, none). */
void lt_bias_relu_forward(float *x, const float *b, size_t rows, int channels);
void lt_relu_bias_backward(float *d, float *db, const float *out, size_t rows, int channels);
void lt_sigmoid_forward(float *out, const float *inp, size_t len);
void lt_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t len);

/* Inverted dropout over n samples of `size` values. In training each value is
 * kept with probability 1-p and scaled by 1/(1-p); mask receives 0 or that
 * scale. Sample i draws from its own stream lt_rng_for(seed, step, first+i,
 * salt), so masks do not depend on how a batch is split over threads. With
 * train == 0 (or p == 0) it is the identity and mask is untouched. */
void lt_dropout_forward(float *out, float *mask, const float *inp, int n, size_t size, float p,
                        int train, uint64_t seed, uint64_t step, uint64_t first, uint64_t salt);
void lt_dropout_backward(float *dinp, const float *dout, const float *mask, size_t len);

/* Max-pooling with a k x k window and stride k over n channels-last maps
 * [h, w, c] (output [h/k, w/k, c], the remainder dropped as PyTorch does).
 * arg records each output's winning input position within its sample (as a
 * float: exact below 2^24), which backward routes the gradient to; the first
 * maximum wins ties, as in PyTorch. */
void lt_maxpool_forward(float *out, float *arg, const float *inp, int n, int h, int w, int c, int k);
void lt_maxpool_backward(float *dinp, const float *dout, const float *arg, int n, int h, int w, int c, int k);

/* VAE reparameterisation over n samples of 2k inputs (k means, then k
 * log-variances): z = mu + exp(logvar / 2) * eps. With eps NULL (inference)
 * z = mu. Otherwise, with draw set, eps is drawn (sample i from
 * lt_rng_for(seed, step, first+i, salt)) and kept for backward; without, the
 * eps given is used (tests against PyTorch with the same noise). kl (may be NULL) receives each sample's
 * KL(q(z|x) || N(0, I)) = -1/2 sum(1 + logvar - mu^2 - exp(logvar)). */
void lt_sample_forward(float *z, float *eps, int draw, double *kl, const float *inp, int n, int k, uint64_t seed,
                       uint64_t step, uint64_t first, uint64_t salt);
/* dinp from dz, plus kl_scale times the KL's own gradient. */
void lt_sample_backward(float *dinp, const float *dz, const float *eps, const float *inp, int n, int k,
                        float kl_scale);

/* Losses return the SUM of the per-element (or per-sample) losses of these n
 * values as a double, and write dy = d(mean loss)/dy, where the mean is taken
 * over `total` elements (samples for cross-entropy) of the whole batch, so
 * chunks of a batch can be processed independently. dy may be NULL. */
double lt_mse_loss(float *dy, const float *y, const float *t, size_t len, double total);
/* Binary cross-entropy on probabilities, logs clamped at -100 as PyTorch does. */
double lt_bce_loss(float *dy, const float *y, const float *t, size_t len, double total);
/* Softmax cross-entropy on logits [n, classes] with integer labels. */
double lt_xent_loss(float *dy, const float *logits, const uint8_t *labels, int n, int classes,
                    double total);

#endif
