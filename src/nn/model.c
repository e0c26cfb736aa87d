/* Building a model from its spec, PyTorch's default initialisation, and
 * inference (encode, decode, reconstruct, test error). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/net.h"

/* Inference runs in batches of up to 500 images through one reusable
 * workspace, fewer when a model would need more than 2^24 floats (64 MiB) of
 * activations for them (the MNIST CNN: about 240). */
#define INFER_BATCH 500
#define INFER_FLOATS ((size_t)1 << 24)

static int infer_batch(const lt_model *m)
{
    size_t per = (size_t)m->c * m->h * m->w;
    for (int i = 0; i < m->n_layers; i++) per += m->layers[i].out_size;
    size_t b = INFER_FLOATS / per;
    return b >= INFER_BATCH ? INFER_BATCH : b < 1 ? 1 : (int)b;
}

static void init_params(lt_model *m, uint64_t seed)
{
    for (int i = 0; i < m->n_layers; i++) {
        const lt_layer *l = &m->layers[i];
        if (!l->w_len) continue;
        /* PyTorch: kaiming_uniform_(a=sqrt(5)) for the weight, which works out
         * to U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias. */
        float bound = 1.0f / sqrtf((float)lt_layer_fan_in(l));
        lt_rng r = lt_rng_for(seed, (uint64_t)i, 0x1417, 0);
        for (size_t k = 0; k < l->w_len; k++) m->params[l->w_off + k] = (2.0f * lt_rng_uniform(&r) - 1.0f) * bound;
        for (size_t k = 0; k < l->b_len; k++) m->params[l->b_off + k] = (2.0f * lt_rng_uniform(&r) - 1.0f) * bound;
    }
}

/* The kind of model follows from the spec (see lt_model_kind in latent.h). */
static int classify(lt_model *m, lt_err *err)
{
    m->lik = (lt_likelihood){0, 1.0f}; /* meaningful for a VAE only, but always a valid setting */
    const lt_layer *last = &m->layers[m->n_layers - 1];
    int decoder = -1;
    for (int p = 0; p < m->n_parts; p++)
        if (!strcmp(m->parts[p].name, "decoder")) decoder = p;
    for (int i = 0; i < m->n_layers; i++) {
        const lt_layer *l = &m->layers[i];
        if (l->kind == LT_L_SAMPLE && !(decoder == 1 && i == m->parts[0].count - 1 && !strcmp(m->parts[0].name, "encoder")))
            return lt_errf(err, LT_EINVAL, "spec: %s: a sample layer belongs at the end of the 'encoder:' part, "
                           "followed by the 'decoder:' part", l->name);
    }
    if (decoder < 0) {
        if (last->out_h != 1 || last->out_w != 1 || last->out_c < 2)
            return lt_errf(err, LT_EINVAL, "spec: a classifier (a spec without 'decoder:') must end in a flat output "
                           "of at least 2 classes, found %dx%dx%d", last->out_c, last->out_h, last->out_w);
        if (last->out_c > 256)
            return lt_errf(err, LT_EINVAL, "spec: a classifier has at most 256 classes (labels are bytes), found %d", last->out_c);
        m->kind = LT_MODEL_CLF;
        m->classes = last->out_c;
        m->encoder_end = m->n_layers;
        m->latent = 0;
        return 0;
    }
    if (m->n_parts != 2 || decoder != 1 || strcmp(m->parts[0].name, "encoder"))
        return lt_errf(err, LT_EINVAL, "spec: an autoencoder needs exactly two parts, 'encoder:' then 'decoder:'");
    m->encoder_end = m->parts[0].count;
    m->latent = (int)m->layers[m->encoder_end - 1].out_size;
    m->kind = m->layers[m->encoder_end - 1].kind == LT_L_SAMPLE ? LT_MODEL_VAE : LT_MODEL_AE;
    m->lik = (lt_likelihood){0, 1.0f};
    if (last->out_c != m->c || last->out_h != m->h || last->out_w != m->w)
        return lt_errf(err, LT_EINVAL, "spec: the decoder gives %dx%dx%d images but the input is %dx%dx%d",
                       last->out_c, last->out_h, last->out_w, m->c, m->h, m->w);
    return 0;
}

int lt_model_create(lt_model **out, const char *spec, int c, int h, int w, float dropout,
                    uint64_t seed, lt_err *err)
{
    *out = NULL;
    if (c <= 0 || h <= 0 || w <= 0 || (long long)c * h * w > (1LL << 26))
        return lt_errf(err, LT_EINVAL, "input shape must be positive and at most 2^26 values, found %dx%dx%d", c, h, w);
    if (!(dropout >= 0.0f && dropout < 1.0f)) return lt_errf(err, LT_EINVAL, "dropout must be in [0, 1), found %g", dropout);
    lt_model *m = lt_calloc(1, sizeof *m, err);
    if (!m) return LT_ENOMEM;
    m->c = c, m->h = h, m->w = w, m->dropout = dropout;
    int rc = 0;
    if (!(m->spec = strdup(spec))) rc = lt_errf(err, LT_ENOMEM, "out of memory");
    if (!rc) rc = lt_spec_parse(m, spec, err);
    if (!rc) rc = classify(m, err);
    if (!rc) {
        size_t off = 0;
        for (int i = 0; i < m->n_layers; i++) {
            lt_layer *l = &m->layers[i];
            l->w_off = off, off += l->w_len;
            l->b_off = off, off += l->b_len;
        }
        m->n_params = off;
        /* 2^28 floats (1 GiB): far beyond any model of this kind, and a clear
         * error instead of an allocation that the machine may not survive. */
        if (off > ((size_t)1 << 28)) rc = lt_errf(err, LT_EINVAL, "spec: the model has %zu parameters, more than the 2^28 latent allows", off);
    }
    if (!rc) {
        m->params = lt_calloc(m->n_params, sizeof(float), err);
        if (!m->params) rc = LT_ENOMEM;
    }
    if (rc) {
        lt_model_free(m);
        return rc;
    }
    init_params(m, seed);
    *out = m;
    return 0;
}

void lt_model_free(lt_model *m)
{
    if (!m) return;
    lt_workspace_free(m->infer);
    free(m->spec);
    free(m->layers);
    free(m->params);
    free(m);
}

size_t lt_model_num_params(const lt_model *m) { return m->n_params; }
int lt_model_latent_dim(const lt_model *m) { return m->latent; }
const char *lt_model_spec(const lt_model *m) { return m->spec; }
float lt_model_dropout(const lt_model *m) { return m->dropout; }
const lt_noise *lt_model_noise(const lt_model *m) { return &m->noise; }

int lt_model_set_noise(lt_model *m, const lt_noise *noise, lt_err *err)
{
    char text[64];
    /* Round-trip through the text form: it validates, and it is what checkpoints store. */
    lt_noise checked;
    if (lt_noise_format(noise, text, sizeof text) || lt_noise_parse(text, &checked, err))
        return lt_errf(err, LT_EINVAL, "invalid noise settings");
    m->noise = checked;
    return 0;
}

lt_model_kind lt_model_get_kind(const lt_model *m) { return m->kind; }
void lt_model_input_shape(const lt_model *m, int *c, int *h, int *w) { *c = m->c, *h = m->h, *w = m->w; }
int lt_model_classes(const lt_model *m) { return m->classes; }
const lt_likelihood *lt_model_likelihood(const lt_model *m) { return &m->lik; }

const char *lt_model_kind_name(const lt_model *m)
{
    switch (m->kind) {
    case LT_MODEL_CLF: return "clf";
    case LT_MODEL_VAE: return "vae";
    default: return m->noise.kind == LT_NOISE_NONE ? "ae" : "dae";
    }
}

int lt_model_set_likelihood(lt_model *m, const lt_likelihood *lik, lt_err *err)
{
    if (m->kind != LT_MODEL_VAE) return lt_errf(err, LT_EINVAL, "--likelihood applies to a variational autoencoder only");
    if (!lik->bernoulli && !(lik->c > 0.0f && isfinite(lik->c)))
        return lt_errf(err, LT_EINVAL, "--likelihood: the Gaussian variance must be positive, found %g", lik->c);
    m->lik = *lik;
    if (m->lik.bernoulli) m->lik.c = 0.0f;
    return 0;
}

int lt_model_freeze(lt_model *m, int layers, lt_err *err)
{
    if (layers < 0 || layers >= m->n_layers)
        return lt_errf(err, LT_EINVAL, "freeze: %d layers of %d would leave nothing to train", layers, m->n_layers);
    for (int i = 0; i < m->n_layers; i++) m->layers[i].frozen = i < layers;
    m->first_trainable = layers;
    return 0;
}

static const char *kind_name(lt_layer_kind k)
{
    static const char *names[] = {"Conv2d", "ConvTranspose2d", "Linear", "ReLU", "Sigmoid", "Dropout",
                                  "Flatten", "Unflatten", "MaxPool2d", "Sample"};
    return names[k];
}

int lt_model_summary(const lt_model *m, char *buf, size_t size)
{
    size_t used = 0;
    int n = snprintf(buf, size, "%-12s %-16s %-12s %s\n", "layer", "type", "output", "params");
    for (int i = 0; n >= 0 && (size_t)n < size - used && i <= m->n_layers; i++) {
        used += (size_t)n;
        if (i == m->n_layers) {
            if (m->kind == LT_MODEL_CLF)
                n = snprintf(buf + used, size - used, "total %zu parameters, %d classes\n", m->n_params, m->classes);
            else
                n = snprintf(buf + used, size - used, "total %zu parameters, latent size %d\n", m->n_params, m->latent);
            break;
        }
        const lt_layer *l = &m->layers[i];
        char shape[32];
        snprintf(shape, sizeof shape, "%dx%dx%d", l->out_c, l->out_h, l->out_w);
        n = snprintf(buf + used, size - used, "%-12s %-16s %-12s %zu\n", l->name, kind_name(l->kind), shape,
                     l->w_len + l->b_len);
    }
    if (n < 0 || (size_t)n >= size - used) return LT_EINVAL;
    return 0;
}

void lt_model_lend_workspace(lt_model *m, lt_workspace *ws) { m->lent = ws; }

/* The workspace inference runs in: the lent one, or the model's own, made on
 * first use. */
static int infer_ws(lt_model *m, lt_workspace **ws, lt_err *err)
{
    int rc = m->lent || m->infer ? 0 : lt_workspace_create(&m->infer, m, infer_batch(m), 0, err);
    *ws = m->lent ? m->lent : m->infer;
    return rc;
}

/* Run layers [from, to) on n rows of `in` (each in_len floats), writing rows of
 * out_len floats, in batches through the inference workspace. */
static int run_layers(lt_model *m, int from, int to, const float *in, size_t in_len, float *out,
                      size_t out_len, int n, int threads, lt_err *err)
{
    lt_workspace *ws;
    int rc = infer_ws(m, &ws, err);
    if (rc) return rc;
    const int ib = ws->max_batch;
    for (int s = 0; s < n; s += ib) {
        int bn = n - s < ib ? n - s : ib;
        /* Callers see PyTorch's channels-first layout; inside it is channels last. */
        const lt_layer *fl = &m->layers[from], *ll = &m->layers[to - 1];
        const int conv_in = fl->in_c > 1 && fl->in_h * fl->in_w > 1, conv_out = ll->out_c > 1 && ll->out_h * ll->out_w > 1;
        if (!conv_in && !conv_out) {
            /* One channel (or none) each side: the layouts agree, no copies. */
            lt_net_forward_io(m, ws, bn, from, to, in + (size_t)s * in_len, out + (size_t)s * out_len, threads);
            continue;
        }
        if (conv_in)
            lt_nchw_to_nhwc(ws->act[from], in + (size_t)s * in_len, bn, fl->in_c, fl->in_h * fl->in_w);
        else
            memcpy(ws->act[from], in + (size_t)s * in_len, sizeof(float) * in_len * bn);
        lt_net_forward(m, ws, bn, from, to, 0, 0, 0, threads);
        if (conv_out)
            lt_nhwc_to_nchw(out + (size_t)s * out_len, ws->act[to], bn, ll->out_c, ll->out_h * ll->out_w);
        else
            memcpy(out + (size_t)s * out_len, ws->act[to], sizeof(float) * out_len * bn);
    }
    return 0;
}

static size_t image_size(const lt_model *m) { return (size_t)m->c * m->h * m->w; }

static int need_latent(const lt_model *m, const char *what, lt_err *err)
{
    if (m->kind == LT_MODEL_CLF)
        return lt_errf(err, LT_EINVAL, "%s: the model is a classifier, which has no latent space", what);
    return 0;
}

int lt_model_encode(lt_model *m, const float *x, int n, float *z, int threads, lt_err *err)
{
    if (need_latent(m, "encode", err)) return LT_EINVAL;
    return run_layers(m, 0, m->encoder_end, x, image_size(m), z, (size_t)m->latent, n, threads, err);
}

int lt_model_encode_dist(lt_model *m, const float *x, int n, float *stats, int threads, lt_err *err)
{
    if (m->kind != LT_MODEL_VAE) return lt_errf(err, LT_EINVAL, "encode: only a variational autoencoder has a posterior");
    return run_layers(m, 0, m->encoder_end - 1, x, image_size(m), stats, 2 * (size_t)m->latent, n, threads, err);
}

int lt_model_predict(lt_model *m, const float *x, int n, float *probs, int threads, lt_err *err)
{
    if (m->kind != LT_MODEL_CLF) return lt_errf(err, LT_EINVAL, "predict: the model is not a classifier");
    int rc = run_layers(m, 0, m->n_layers, x, image_size(m), probs, (size_t)m->classes, n, threads, err);
    for (int i = 0; !rc && i < n; i++) {
        float *p = probs + (size_t)i * m->classes, mx = p[0];
        for (int c = 1; c < m->classes; c++) mx = p[c] > mx ? p[c] : mx;
        double se = 0.0;
        for (int c = 0; c < m->classes; c++) se += exp((double)p[c] - mx);
        for (int c = 0; c < m->classes; c++) p[c] = (float)(exp((double)p[c] - mx) / se);
    }
    return rc;
}

int lt_model_decode(lt_model *m, const float *z, int n, float *y, int threads, lt_err *err)
{
    if (need_latent(m, "decode", err)) return LT_EINVAL;
    return run_layers(m, m->encoder_end, m->n_layers, z, (size_t)m->latent, y, image_size(m), n, threads, err);
}

int lt_model_reconstruct(lt_model *m, const float *x, int n, float *y, int threads, lt_err *err)
{
    if (need_latent(m, "reconstruct", err)) return LT_EINVAL;
    return run_layers(m, 0, m->n_layers, x, image_size(m), y, image_size(m), n, threads, err);
}

int lt_model_eval(lt_model *m, const lt_dataset *ds, int first, int count, int threads,
                  lt_eval_result *res, int64_t *confusion, lt_err *err)
{
    /* IDX datasets have one channel, where channels first and last agree. */
    if (ds->c != m->c || ds->h != m->h || ds->w != m->w)
        return lt_errf(err, LT_EINVAL, "the data has %dx%dx%d images but the model takes %dx%dx%d",
                       ds->c, ds->h, ds->w, m->c, m->h, m->w);
    if (first < 0 || count <= 0 || first + count > ds->n)
        return lt_errf(err, LT_EINVAL, "images %d..%d are outside the dataset of %d", first, first + count, ds->n);
    if (m->kind == LT_MODEL_CLF && ds->n_classes > m->classes)
        return lt_errf(err, LT_EINVAL, "the data has labels up to %d but the classifier has %d classes",
                       ds->n_classes - 1, m->classes);
    lt_workspace *ws;
    int rc = infer_ws(m, &ws, err);
    if (rc) return rc;
    const int ib = ws->max_batch, L = m->n_layers;
    const size_t sz = image_size(m);
    double loss = 0.0, rec = 0.0, kl = 0.0, sq = 0.0;
    long correct = 0;
    if (confusion) memset(confusion, 0, sizeof(int64_t) * (size_t)m->classes * m->classes);
    for (int s = 0; s < count; s += ib) {
        int bn = count - s < ib ? count - s : ib;
        /* Noise keyed by the image's index: the same noisy test set every time. */
        lt_batch_prepare(m, ws, ds, NULL, first + s, bn, LT_EVAL_NOISE_SEED, ~0ull, (uint64_t)(first + s), threads);
        /* A VAE is scored as it trains, with a sampled z (from a stream keyed
         * by the batch's first image); the MSE below decodes the mean. */
        ws->sample = m->kind == LT_MODEL_VAE;
        lt_batch_loss bl = lt_net_loss(m, ws, bn, LT_EVAL_NOISE_SEED, (uint64_t)(first + s), 0, threads);
        ws->sample = 0;
        loss += bl.loss * bn, rec += bl.rec * bn, kl += bl.kl * bn, correct += bl.correct;
        if (m->kind == LT_MODEL_VAE) lt_net_forward(m, ws, bn, 0, L, 0, 0, 0, threads);
        /* Summed on one thread in image order: the same total for any thread count. */
        if (m->kind != LT_MODEL_CLF) sq += lt_mse_loss(NULL, ws->act[L], ws->target, sz * bn, 1.0);
        if (confusion)
            for (int i = 0; i < bn; i++) {
                const float *z = ws->act[L] + (size_t)i * m->classes;
                int best = 0;
                for (int c = 1; c < m->classes; c++) best = z[c] > z[best] ? c : best;
                confusion[(size_t)ws->labels[i] * m->classes + best]++;
            }
    }
    lt_eval_result r = {0};
    r.loss = loss / count;
    if (m->kind == LT_MODEL_AE) r.loss = sq / ((double)count * (double)sz);
    r.mse = m->kind == LT_MODEL_CLF ? NAN : sq / ((double)count * (double)sz);
    r.accuracy = m->kind == LT_MODEL_CLF ? (double)correct / count : NAN;
    r.rec = m->kind == LT_MODEL_VAE ? rec / count : NAN;
    r.kl = m->kind == LT_MODEL_VAE ? kl / count : NAN;
    *res = r;
    return 0;
}

int lt_model_eval_mse(lt_model *m, const lt_dataset *ds, int first, int count, int threads,
                      double *mse, lt_err *err)
{
    if (m->kind == LT_MODEL_CLF) return lt_errf(err, LT_EINVAL, "the model is a classifier: it has no reconstruction error");
    lt_eval_result r = {0};
    int rc = lt_model_eval(m, ds, first, count, threads, &r, NULL, err);
    if (!rc) *mse = r.mse;
    return rc;
}
