/* nn/net: a model as a flat list of layers, its parameters in one block, and
 * the workspace (activations, gradients, scratch) a batch needs.
 *
 * Memory follows llm.c: all parameters live in one float array, and each layer
 * only records offsets into it; the same offsets index the gradient array and
 * every optimizer moment array. Activations for a batch live in one arena sized
 * once per batch size, so training allocates nothing per step. */
#ifndef LATENT_NN_NET_H
#define LATENT_NN_NET_H

#include "core/core.h"
#include "nn/layers.h"

typedef enum {
    LT_L_CONV, LT_L_CONVT, LT_L_DENSE, LT_L_RELU, LT_L_SIGMOID, LT_L_DROPOUT, LT_L_FLATTEN,
    LT_L_UNFLATTEN, LT_L_MAXPOOL, LT_L_SAMPLE
} lt_layer_kind;

typedef struct lt_layer {
    lt_layer_kind kind;
    char name[40];             /* PyTorch module path, e.g. "decoder.6" */
    int in_c, in_h, in_w;      /* per-sample input shape */
    int out_c, out_h, out_w;   /* per-sample output shape */
    size_t in_size, out_size;  /* c*h*w */
    lt_conv_geom g;            /* conv, convt */
    int pool;                  /* maxpool: window and stride */
    float p;                   /* dropout probability; < 0 means "the model's" */
    size_t w_off, w_len;       /* weight and bias in the parameter block; */
    size_t b_off, b_len;       /* w_len == 0 for layers without parameters */
    int frozen;                /* no parameter gradients */
} lt_layer;

#define LT_MAX_PARTS 4

typedef struct lt_part {
    char name[16];
    int first, count;          /* layers [first, first+count) */
} lt_part;

struct lt_model {
    char *spec;                /* the spec as given (comments and spacing kept) */
    int c, h, w;               /* input shape */
    float dropout;
    lt_noise noise;            /* input corruption of a denoising autoencoder */
    lt_model_kind kind;        /* from the spec: a sample layer makes a VAE, no decoder a classifier */
    lt_likelihood lik;         /* VAE: the decoder's likelihood */
    int classes;               /* classifier: size of the output */
    int n_layers;
    lt_layer *layers;
    int n_parts;
    lt_part parts[LT_MAX_PARTS];
    int encoder_end;           /* layers [0, encoder_end) are the encoder */
    int latent;                /* size of the encoder's output (VAE: of the sample layer) */
    int first_trainable;       /* layers before it are frozen (fine-tuning with --freeze) */
    size_t n_params;
    float *params;
    struct lt_workspace *infer; /* lazily made workspace for inference */
    struct lt_workspace *lent;  /* while set, inference runs here instead (lt_model_lend_workspace) */
};

/* While training, inference (the validation score) runs in the training
 * workspace, whose batch is the training batch, instead of a second set of
 * activations: the MNIST CNN's peak memory drops by 40 MB. NULL ends it; the
 * model never frees a lent workspace. */
void lt_model_lend_workspace(lt_model *m, struct lt_workspace *ws);

/* lt_model_init_from that also tells the index of the last layer it filled
 * (fine-tuning freezes through it); *last_layer is left as is when none. */
int lt_model_init_from_layers(lt_model *m, const char *path, int *copied, int *last_layer, lt_err *err);

/* Parse spec into layers and infer shapes (no allocation of parameters). */
int lt_spec_parse(lt_model *m, const char *spec, lt_err *err);

/* Fan-in PyTorch uses for a layer's default init (kaiming_uniform(a=sqrt(5))
 * gives weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))). */
int lt_layer_fan_in(const lt_layer *l);
/* Parameter tensor name and PyTorch shape: which 0 = weight, 1 = bias. */
void lt_param_name(const lt_layer *l, int which, char *buf, size_t size);
int lt_param_shape(const lt_layer *l, int which, int64_t shape[4]);

/* ---- batch workspace ----
 * A batch is cut into chunks of LT_CHUNK samples (the last may be shorter).
 * The cut depends only on the batch size, never on the thread count; each
 * chunk accumulates its own parameter gradients, and chunks are summed in a
 * fixed order, so results are bit-identical for any number of threads. */
#define LT_CHUNK 32

/* A chunk's forward and backward passes run back to back on one thread, so
 * the scratch they use (convolution columns, activation gradients) belongs
 * to the thread, not the chunk: memory grows with the cores, not the batch.
 * Only parameter gradients are kept per chunk, to be summed in chunk order.
 * Activation gradients ping-pong between two buffers of the largest layer. */
typedef struct lt_chunk {
    float *cols;               /* convolution scratch (see scratch_off) */
    float *d[2];               /* ping-pong activation gradients */
    float *grads;              /* this chunk's parameter gradients */
} lt_chunk;

typedef struct lt_workspace {
    int max_batch;
    int train;                 /* gradients and dropout masks allocated */
    int n_chunks_max;
    float **act;               /* act[0] input, act[i+1] output of layer i, channels last;
                                  a flatten or unflatten that moves nothing aliases its input */
    float **mask;              /* dropout masks, maxpool argmax, VAE noise; NULL for other layers */
    float *target;             /* [max_batch, input size] */
    uint8_t *labels;           /* [max_batch] classifier targets */
    int sample;                /* VAE: draw z in inference too (an ELBO estimate, not z = mean) */
    int fixed_eps;             /* VAE: use the noise already in the sample layer's buffer (tests) */
    double *kl;                /* VAE: per-sample KL divergence of the last forward */
    lt_chunk *chunks;          /* n_chunks_max of them: only .grads is set */
    lt_chunk *slots;           /* n_slots of them, one per thread: .cols and .d */
    int n_slots;
    size_t *scratch_off;       /* per layer: its scratch in a chunk's cols (training: one each) */
    float **wt;                /* per dense layer: its W^T, made by lt_net_prepare_weights
                                  before each pass; NULL for other layers */
    double *chunk_loss;        /* per chunk: summed loss (VAE: reconstruction part) */
    double *chunk_kl;          /* VAE: summed KL */
    int *chunk_correct;        /* classifier: right answers */
    float *grad;               /* summed gradient of the batch */
    void *block;               /* everything above lives here */
    /* Data-parallel training (src/dist): this process computes only chunks
     * [nch*part/parts, nch*(part+1)/parts) of a batch, then exchange() fills
     * every chunk's grads and chunk_loss from all processes, so the fixed-order
     * sum below is the same as in one process. parts 0: all chunks here. */
    int part, parts;
    void (*exchange)(void *ctx, struct lt_workspace *ws, int nch, size_t n_params);
    void *exchange_ctx;
    /* Called by lt_net_loss (training) for each block [lo, hi) of ws->grad
     * as soon as it is summed, by the thread that summed it, when the batch's
     * loss is finite: the optimizer's update (train.c). Each thread then
     * updates the parameters whose gradient is in its cache, at the same
     * time as the other, where one thread updating all of them after the
     * step took 7% of a two-thread epoch at batch 64. NULL: no update. */
    void (*update)(void *ctx, size_t lo, size_t hi);
    void *update_ctx;
    /* A batch given to lt_batch_defer, prepared chunk by chunk inside the
     * next lt_net_loss, which consumes it. */
    struct {
        int pending;
        const lt_dataset *ds;
        const int *idx;
        int first;
        uint64_t noise_seed, noise_stream, noise_first;
    } batch;
} lt_workspace;

int lt_workspace_create(lt_workspace **out, const lt_model *m, int max_batch, int train,
                        lt_err *err);
/* The weights in the layout the kernels want (ws->wt) for layers [from, to),
 * from m->params as they are now. The passes below call it; after the
 * parameters change, any pass made without it would use the old ones. */
void lt_net_prepare_weights(const lt_model *m, lt_workspace *ws, int from, int to);
void lt_workspace_free(lt_workspace *ws);

/* Forward over layers [from, to) for samples [0, n) of the workspace (act[from]
 * must hold the input). train enables dropout; seed/step select its masks. */
void lt_net_forward(const lt_model *m, lt_workspace *ws, int n, int from, int to, int train,
                    uint64_t seed, uint64_t step, int threads);
/* The same for inference, reading n rows of layer from's input from `in`
 * and writing layer to-1's output to `out` (the workspace's channels-last
 * layout), without copying them through the workspace where the layers
 * allow it. */
void lt_net_forward_io(const lt_model *m, lt_workspace *ws, int n, int from, int to, const float *in,
                       float *out, int threads);

/* The loss of one batch, its parts and, in training, its gradient. */
typedef struct lt_batch_loss {
    double loss;     /* the objective: mean over samples (autoencoder: over pixels too) */
    double rec, kl;  /* VAE: mean reconstruction NLL and KL per sample */
    int correct;     /* classifier: samples whose largest logit is the label */
} lt_batch_loss;

/* One training step's gradient: forward with act[0] and ws->target (or
 * ws->labels for a classifier) holding n samples, the model's loss, backward,
 * and ws->grad set to the batch's gradient. Returns the mean loss. */
double lt_net_train_step(const lt_model *m, lt_workspace *ws, int n, uint64_t seed, uint64_t step,
                         int threads);
/* The same with the loss's parts; grad 0 skips the backward pass (evaluation:
 * dropout off, VAE sampling only when ws->sample). */
lt_batch_loss lt_net_loss(const lt_model *m, lt_workspace *ws, int n, uint64_t seed, uint64_t step,
                          int grad, int threads);

/* Between PyTorch's channels-first layout and the channels-last one used
 * inside (n samples of c channels of `plane` pixels). */
void lt_nchw_to_nhwc(float *dst, const float *src, int n, int c, int plane);
void lt_nhwc_to_nchw(float *dst, const float *src, int n, int c, int plane);

/* lt_noise_apply over n images, split over threads; image i still uses the
 * stream (seed, stream, first + i), so the result does not depend on them. */
void lt_noise_batch(const lt_noise *noise, float *x, int n, size_t size, uint64_t seed, uint64_t stream,
                    uint64_t first, int threads);

/* Fill the workspace with n samples of ds (indices idx, or consecutive from
 * first when idx is NULL) as the model's loss wants them: act[0] the input
 * (binarized for a Bernoulli VAE, corrupted by a DAE's noise from the stream
 * (noise_seed, noise_stream, noise_first + i)), target the clean image,
 * labels the labels. */
void lt_batch_prepare(const lt_model *m, lt_workspace *ws, const lt_dataset *ds, const int *idx, int first, int n,
                      uint64_t noise_seed, uint64_t noise_stream, uint64_t noise_first, int threads);

/* lt_batch_prepare's work, left to the next lt_net_loss: there each chunk's
 * thread prepares its own samples just before their forward pass, in the
 * same parallel region and while they are still in its cache (a region of
 * its own cost a thread wake-up per step and did not run faster on two
 * threads than on one). The data is the same, bit for bit. */
void lt_batch_defer(lt_workspace *ws, const lt_dataset *ds, const int *idx, int first, uint64_t noise_seed,
                    uint64_t noise_stream, uint64_t noise_first);

/* Convert n images (bytes, indices idx into ds or consecutive from first when
 * idx is NULL) to floats in [0,1]. */
void lt_images_to_float(float *dst, const lt_dataset *ds, const int *idx, int first, int n, int threads);

#endif
