/* Forward and backward passes of a model over a batch, split into chunks that
 * run in parallel (see LT_CHUNK in net.h for why results stay bit-identical). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "nn/net.h"

static size_t round64(size_t floats) { return (floats + 15) / 16 * 16; }

/* Flatten and unflatten move data only when a spatial map has several
 * channels: channels last inside, PyTorch's channels first in flat vectors. */
static int moves_data(const lt_layer *l)
{
    if (l->kind == LT_L_FLATTEN) return l->in_c > 1 && l->in_h * l->in_w > 1;
    if (l->kind == LT_L_UNFLATTEN) return l->out_c > 1 && l->out_h * l->out_w > 1;
    return 0;
}

/* Both conversions write in order and read with a stride: a loop that
 * stored with a stride of c floats was 1.6% of the autoencoder's step in
 * perf (each store to another cache line), for 288 values per image. */
void lt_nchw_to_nhwc(float *dst, const float *src, int n, int c, int plane)
{
    for (int s = 0; s < n; s++, src += (size_t)c * plane, dst += (size_t)c * plane)
        for (int p = 0; p < plane; p++)
            for (int ch = 0; ch < c; ch++) dst[(size_t)p * c + ch] = src[(size_t)ch * plane + p];
}

void lt_nhwc_to_nchw(float *dst, const float *src, int n, int c, int plane)
{
    for (int s = 0; s < n; s++, src += (size_t)c * plane, dst += (size_t)c * plane)
        for (int ch = 0; ch < c; ch++)
            for (int p = 0; p < plane; p++) dst[(size_t)ch * plane + p] = src[(size_t)p * c + ch];
}

/* Layers that keep per-sample state between forward and backward: dropout
 * masks and max-pool winners in training; VAE noise always, since inference
 * may sample too (to score the ELBO). */
static int has_mask(const lt_layer *l, int train)
{
    return l->kind == LT_L_SAMPLE || (train && (l->kind == LT_L_DROPOUT || l->kind == LT_L_MAXPOOL));
}

static int n_chunks(int n) { return (n + LT_CHUNK - 1) / LT_CHUNK; }
/* One past the last sample of chunk c of a batch of n. */
static int chunk_end(int n, int c) { return n - c * LT_CHUNK < LT_CHUNK ? n : c * LT_CHUNK + LT_CHUNK; }

/* A ReLU right after a convolution or dense layer works in place: their
 * backward passes read their input, never their output, and the ReLU's reads
 * only its output. One activation array less to write and to keep in cache
 * (the ReLUs were 7% of a training step, mostly memory traffic). */
static int relu_in_place(const lt_model *m, int i)
{
    if (m->layers[i].kind != LT_L_RELU || i == 0) return 0;
    const int k = m->layers[i - 1].kind;
    return k == LT_L_CONV || k == LT_L_CONVT || k == LT_L_DENSE;
}

/* Layer i, a convolution or dense layer, leaves its bias to the ReLU in
 * place after it when both run in the same pass (layers before `to`): the
 * layer writes its products alone and the ReLU adds the bias in its own
 * pass (lt_bias_relu_forward), one pass over the activation less. Backward,
 * the ReLU sums the bias gradient as it masks the gradient. */
static int bias_in_relu(const lt_model *m, int i, int to) { return i + 1 < to && relu_in_place(m, i + 1); }

/* Layer i's output is its input's array: a flatten or unflatten that moves
 * no data (same bytes, another shape), or a ReLU in place. */
static int output_is_input(const lt_model *m, int i)
{
    const lt_layer *l = &m->layers[i];
    return ((l->kind == LT_L_FLATTEN || l->kind == LT_L_UNFLATTEN) && !moves_data(l)) || relu_in_place(m, i);
}

static void blas_single_threaded(void)
{
    /* We parallelise over chunks ourselves; OpenBLAS's own threads would
     * oversubscribe the cores and make results depend on its split. */
    openblas_set_num_threads(1);
}

void lt_net_prepare_weights(const lt_model *m, lt_workspace *ws, int from, int to)
{
    for (int i = from; i < to; i++)
        if (ws->wt[i]) lt_dense_transpose(ws->wt[i], m->params + m->layers[i].w_off, m->layers[i].in_c, m->layers[i].out_c);
}

int lt_workspace_create(lt_workspace **out, const lt_model *m, int max_batch, int train,
                        lt_err *err)
{
    *out = NULL;
    if (max_batch <= 0) return lt_errf(err, LT_EINVAL, "batch size must be positive, found %d", max_batch);
    blas_single_threaded();
    const int L = m->n_layers, nch = n_chunks(max_batch);
    size_t *off = lt_calloc((size_t)L, sizeof(size_t), err);
    if (!off) return LT_ENOMEM;
    /* Inference layers share one scratch; in training each convolution keeps
     * its own, so its backward pass can reuse what the forward pass unfolded.
     * Dense layers keep their transposed weight (wts) instead. */
    size_t in0 = (size_t)m->c * m->h * m->w, maxsz = in0, cols = 16, wts = 0;
    for (int i = 0; i < L; i++) {
        const lt_layer *l = &m->layers[i];
        if (l->out_size > maxsz) maxsz = l->out_size;
        if (l->kind == LT_L_DENSE) wts += round64((size_t)l->in_c * l->out_c);
        if (l->kind == LT_L_DENSE && train) {
            const size_t ds = lt_dense_scratch_size(max_batch < LT_CHUNK ? max_batch : LT_CHUNK, l->in_c, l->out_c);
            if (ds) off[i] = cols, cols += round64(ds);
        }
        if (l->kind == LT_L_CONV || l->kind == LT_L_CONVT) {
            size_t cs = round64(lt_conv_scratch_size(&l->g, l->kind == LT_L_CONVT, max_batch < LT_CHUNK ? max_batch : LT_CHUNK));
            if (train) off[i] = cols, cols += cs;
            else if (cs > cols) cols = cs;
        }
    }
    /* First pass computes the size of the one block, second pass hands out pointers. */
    size_t total = round64(in0 * max_batch);
    for (int i = 0; i < L; i++) {
        const lt_layer *l = &m->layers[i];
        if (!output_is_input(m, i)) total += round64(l->out_size * max_batch);
        if (has_mask(l, train)) total += round64(l->out_size * max_batch);
    }
    /* Every thread this machine can run may take a chunk at once; a call with
     * more threads than that runs on n_slots. */
    int nslots = omp_get_max_threads() > omp_get_num_procs() ? omp_get_max_threads() : omp_get_num_procs();
    if (nslots > nch) nslots = nch;
    if (nslots < 1) nslots = 1;
    size_t per_slot = round64(cols) + (train ? 2 * round64(maxsz * LT_CHUNK) : 0);
    total += per_slot * (size_t)nslots;
    if (train) total += round64(m->n_params) * (size_t)nch;
    /* Targets (also for scoring in inference), labels and per-sample KL. */
    total += round64(in0 * max_batch) + round64((size_t)max_batch) /* labels: 4 per float */ + round64(2 * (size_t)max_batch);
    if (train) total += round64(m->n_params);
    total += wts;

    lt_workspace *ws = lt_calloc(1, sizeof *ws, err);
    if (!ws) {
        free(off);
        return LT_ENOMEM;
    }
    ws->scratch_off = off;
    ws->act = lt_calloc((size_t)L + 1, sizeof(float *), err);
    ws->mask = lt_calloc((size_t)L, sizeof(float *), err);
    ws->wt = lt_calloc((size_t)L, sizeof(float *), err);
    ws->chunks = lt_calloc((size_t)nch, sizeof(lt_chunk), err);
    ws->slots = lt_calloc((size_t)nslots, sizeof(lt_chunk), err);
    ws->chunk_loss = lt_calloc((size_t)nch, sizeof(double), err);
    ws->chunk_kl = lt_calloc((size_t)nch, sizeof(double), err);
    ws->chunk_correct = lt_calloc((size_t)nch, sizeof(int), err);
    size_t bytes;
    float *p = NULL;
    if (lt_mul_size(total, sizeof(float), &bytes) == 0) p = lt_aligned_alloc(bytes, err);
    if (!ws->act || !ws->mask || !ws->wt || !ws->chunks || !ws->slots || !ws->chunk_loss || !ws->chunk_kl || !ws->chunk_correct || !p) {
        free(p);
        lt_workspace_free(ws);
        return lt_errf(err, LT_ENOMEM, "out of memory for a batch of %d (%zu floats)", max_batch, total);
    }
    memset(p, 0, bytes);
    ws->block = p;
    ws->max_batch = max_batch;
    ws->train = train;
    ws->n_chunks_max = nch;
    ws->act[0] = p, p += round64(in0 * max_batch);
    for (int i = 0; i < L; i++) {
        const lt_layer *l = &m->layers[i];
        if (output_is_input(m, i)) {
            ws->act[i + 1] = ws->act[i];
        } else {
            ws->act[i + 1] = p, p += round64(l->out_size * max_batch);
        }
        if (has_mask(l, train)) ws->mask[i] = p, p += round64(l->out_size * max_batch);
    }
    ws->n_slots = nslots;
    for (int t = 0; t < nslots; t++) {
        lt_chunk *sl = &ws->slots[t];
        sl->cols = p, p += round64(cols);
        if (train) {
            sl->d[0] = p, p += round64(maxsz * LT_CHUNK);
            sl->d[1] = p, p += round64(maxsz * LT_CHUNK);
        }
    }
    for (int c = 0; train && c < nch; c++) ws->chunks[c].grads = p, p += round64(m->n_params);
    ws->target = p, p += round64(in0 * max_batch);
    ws->labels = (uint8_t *)p, p += round64((size_t)max_batch);
    ws->kl = (double *)p, p += round64(2 * (size_t)max_batch);
    if (train) ws->grad = p, p += round64(m->n_params);
    for (int i = 0; i < L; i++)
        if (m->layers[i].kind == LT_L_DENSE)
            ws->wt[i] = p, p += round64((size_t)m->layers[i].in_c * m->layers[i].out_c);
    *out = ws;
    return 0;
}

void lt_workspace_free(lt_workspace *ws)
{
    if (!ws) return;
    free(ws->block);
    free(ws->act);
    free(ws->mask);
    free(ws->wt);
    free(ws->chunks);
    free(ws->slots);
    free(ws->chunk_loss);
    free(ws->chunk_kl);
    free(ws->chunk_correct);
    free(ws->scratch_off);
    free(ws);
}

static float dropout_p(const lt_model *m, const lt_layer *l) { return l->p < 0 ? m->dropout : l->p; }

/* x0 / yN (NULL: the workspace's arrays): where layer from reads its input
 * and layer to-1 writes its output, for lt_net_forward_io. */
static void forward_chunk(const lt_model *m, lt_workspace *ws, int first, int n, int from, int to,
                          int train, uint64_t seed, uint64_t step, float *cols, const float *x0, float *yN)
{
    for (int i = from; i < to; i++) {
        const lt_layer *l = &m->layers[i];
        const float *in = (i == from && x0 ? x0 : ws->act[i]) + (size_t)first * l->in_size;
        float *out = (i == to - 1 && yN ? yN : ws->act[i + 1]) + (size_t)first * l->out_size;
        const float *w = m->params + l->w_off, *b = bias_in_relu(m, i, to) ? NULL : m->params + l->b_off;
        size_t len = (size_t)n * l->out_size;
        switch (l->kind) {
        case LT_L_CONV: lt_conv2d_forward(out, in, w, b, n, &l->g, cols + ws->scratch_off[i]); break;
        case LT_L_CONVT: lt_convt2d_forward(out, in, w, b, n, &l->g, cols + ws->scratch_off[i]); break;
        case LT_L_DENSE: lt_dense_forward(out, in, ws->wt[i], b, n, l->in_c, l->out_c); break;
        case LT_L_RELU:
            if (i - 1 >= from && bias_in_relu(m, i - 1, to)) {
                const lt_layer *p = &m->layers[i - 1];
                lt_bias_relu_forward(out, m->params + p->b_off, len / (size_t)p->out_c, p->out_c);
            } else {
                lt_relu_forward(out, in, len);
            }
            break;
        case LT_L_SIGMOID: lt_sigmoid_forward(out, in, len); break;
        case LT_L_DROPOUT: {
            float *mask = ws->mask[i] ? ws->mask[i] + (size_t)first * l->out_size : NULL;
            lt_dropout_forward(out, mask, in, n, l->out_size, dropout_p(m, l), train && mask, seed,
                               step, (uint64_t)first, (uint64_t)i);
            break;
        }
        case LT_L_FLATTEN:
            if (moves_data(l)) lt_nhwc_to_nchw(out, in, n, l->in_c, l->in_h * l->in_w);
            break; /* otherwise an alias: nothing to move */
        case LT_L_UNFLATTEN:
            if (moves_data(l)) lt_nchw_to_nhwc(out, in, n, l->out_c, l->out_h * l->out_w);
            break;
        case LT_L_MAXPOOL:
            lt_maxpool_forward(out, ws->mask[i] ? ws->mask[i] + (size_t)first * l->out_size : NULL, in, n, l->in_h,
                               l->in_w, l->in_c, l->pool);
            break;
        case LT_L_SAMPLE: {
            float *eps = train || ws->sample ? ws->mask[i] + (size_t)first * l->out_size : NULL;
            lt_sample_forward(out, eps, !ws->fixed_eps, ws->kl + first, in, n, l->out_c, seed, step, (uint64_t)first,
                              (uint64_t)i);
            break;
        }
        }
    }
}

/* Backward from the gradient in s->d[0] (per chunk, [n, out_size of layer
 * top]) down to the first trainable layer, adding parameter gradients into
 * s->grads. kl_scale: weight of a VAE's KL term in the loss. */
static void backward_chunk(const lt_model *m, lt_workspace *ws, int first, int n, int train, int top,
                           float kl_scale, lt_chunk *s, float *grads)
{
    int cur = 0;
    for (int i = top; i >= m->first_trainable; i--) {
        const lt_layer *l = &m->layers[i];
        const float *in = ws->act[i] + (size_t)first * l->in_size;
        const float *out = ws->act[i + 1] + (size_t)first * l->out_size;
        const float *w = m->params + l->w_off;
        const float *dout = s->d[cur];
        /* The input image, and a frozen part, need no gradient: skip that work. */
        float *dinp = i > m->first_trainable ? s->d[1 - cur] : NULL;
        float *dw = l->frozen ? NULL : grads + l->w_off;
        /* The ReLU after the layer, when this pass ran it, summed db. */
        float *db = l->frozen || bias_in_relu(m, i, top + 1) ? NULL : grads + l->b_off;
        size_t len = (size_t)n * l->out_size;
        switch (l->kind) {
        case LT_L_CONV:
            lt_conv2d_backward(dinp, dw, db, dout, in, w, n, &l->g, s->cols + ws->scratch_off[i], ws->train);
            break;
        case LT_L_CONVT: lt_convt2d_backward(dinp, dw, db, dout, in, w, n, &l->g, s->cols + ws->scratch_off[i]); break;
        case LT_L_DENSE:
            lt_dense_backward(dinp, dw, db, dout, in, w, n, l->in_c, l->out_c,
                              ws->train && lt_dense_scratch_size(n, l->in_c, l->out_c) ? s->cols + ws->scratch_off[i] : NULL);
            break;
        case LT_L_RELU:
            /* In place in the gradient buffer: one array less to write. */
            if (dinp && relu_in_place(m, i)) {
                const lt_layer *p = &m->layers[i - 1];
                lt_relu_bias_backward(s->d[cur], p->frozen ? NULL : grads + p->b_off, out, len / (size_t)p->out_c,
                                      p->out_c);
            } else if (dinp) {
                lt_relu_backward(s->d[cur], dout, out, len);
            }
            continue;
        case LT_L_SIGMOID: if (dinp) lt_sigmoid_backward(dinp, dout, out, len); break;
        case LT_L_DROPOUT:
            if (dinp) {
                if (train && dropout_p(m, l) > 0.0f)
                    lt_dropout_backward(dinp, dout, ws->mask[i] + (size_t)first * l->out_size, len);
                else
                    memcpy(dinp, dout, sizeof(float) * len);
            }
            break;
        case LT_L_FLATTEN:
        case LT_L_UNFLATTEN:
            if (!moves_data(l)) continue; /* same gradient, same buffer */
            if (dinp && l->kind == LT_L_FLATTEN) lt_nchw_to_nhwc(dinp, dout, n, l->in_c, l->in_h * l->in_w);
            if (dinp && l->kind == LT_L_UNFLATTEN) lt_nhwc_to_nchw(dinp, dout, n, l->out_c, l->out_h * l->out_w);
            break;
        case LT_L_MAXPOOL:
            if (dinp) lt_maxpool_backward(dinp, dout, ws->mask[i] + (size_t)first * l->out_size, n, l->in_h, l->in_w, l->in_c, l->pool);
            break;
        case LT_L_SAMPLE:
            if (dinp) lt_sample_backward(dinp, dout, ws->mask[i] + (size_t)first * l->out_size, in, n, l->out_c, kl_scale);
            break;
        }
        cur = 1 - cur;
    }
}

static int resolve_threads(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

/* Threads for a pass over the workspace: at most one per scratch slot. */
static int ws_threads(const lt_workspace *ws, int threads)
{
    int t = resolve_threads(threads);
    return t < ws->n_slots ? t : ws->n_slots;
}

static void forward_pass(const lt_model *m, lt_workspace *ws, int n, int from, int to, int train, uint64_t seed,
                         uint64_t step, int threads, const float *x0, float *yN)
{
    const int nch = n_chunks(n);
    lt_net_prepare_weights(m, ws, from, to);
#pragma omp parallel for num_threads(ws_threads(ws, threads)) schedule(dynamic, 1)
    for (int c = 0; c < nch; c++) {
        int first = c * LT_CHUNK, cn = n - first < LT_CHUNK ? n - first : LT_CHUNK;
        lt_fpmode fm = lt_ftz_begin();
        forward_chunk(m, ws, first, cn, from, to, train, seed, step, ws->slots[omp_get_thread_num()].cols, x0, yN);
        lt_ftz_end(fm);
    }
}

void lt_net_forward(const lt_model *m, lt_workspace *ws, int n, int from, int to, int train,
                    uint64_t seed, uint64_t step, int threads)
{
    forward_pass(m, ws, n, from, to, train, seed, step, threads, NULL, NULL);
}

/* A layer that works in place (its output is its input's array) cannot read
 * from the caller's input or write to the caller's output; nor can the
 * first layer write to the caller's array when it is also the input. Then
 * the rows are copied through the workspace, as before this existed. Reading
 * and writing the caller's arrays in place saved the two copies that were 7%
 * of inference. */
void lt_net_forward_io(const lt_model *m, lt_workspace *ws, int n, int from, int to, const float *in,
                       float *out, int threads)
{
    const int in_direct = !output_is_input(m, from), out_direct = !output_is_input(m, to - 1);
    if (!in_direct)
        memcpy(ws->act[from], in, sizeof(float) * m->layers[from].in_size * (size_t)n);
    forward_pass(m, ws, n, from, to, 0, 0, 0, threads, in_direct ? in : NULL, out_direct ? out : NULL);
    if (!out_direct)
        memcpy(out, ws->act[to], sizeof(float) * m->layers[to - 1].out_size * (size_t)n);
}

/* Bernoulli likelihood on the logits a (the input of a final sigmoid):
 * per value softplus(a) - t*a, the binary cross-entropy of sigmoid(a), with
 * gradient sigmoid(a) - t; computed from a for accuracy where the sigmoid
 * saturates. */
static double bernoulli_logits(float *da, const float *a, const float *t, size_t len, float scale)
{
    double sum = 0.0;
    for (size_t i = 0; i < len; i++) {
        double x = a[i];
        sum += (x > 0 ? x + log1p(exp(-x)) : log1p(exp(x))) - t[i] * x;
        if (da) da[i] = scale * (float)(1.0 / (1.0 + exp(-x)) - t[i]);
    }
    return sum;
}

static double gaussian_rec(float *dy, const float *y, const float *t, size_t len, float c, float scale)
{
    double sum = 0.0;
    const float g = scale / c;
    for (size_t i = 0; i < len; i++) {
        float d = y[i] - t[i];
        sum += (double)d * d;
        if (dy) dy[i] = g * d;
    }
    return sum / (2.0 * c);
}

static int argmax_correct(const float *logits, const uint8_t *labels, int n, int classes)
{
    int right = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * classes;
        int best = 0;
        for (int c = 1; c < classes; c++) best = z[c] > z[best] ? c : best;
        right += best == labels[i];
    }
    return right;
}

static void prepare_rows(const lt_model *m, lt_workspace *ws, const lt_dataset *ds, const int *idx, int first, int lo,
                         int hi, uint64_t noise_seed, uint64_t noise_stream, uint64_t noise_first);

/* Forward and loss (and with grad, backward) of one chunk; its loss goes into
 * ws->chunk_loss[c] (VAE: reconstruction; KL into chunk_kl). */
static void loss_chunk(const lt_model *m, lt_workspace *ws, int c, int n, uint64_t seed, uint64_t step, int grad)
{
    const int L = m->n_layers, first = c * LT_CHUNK, cn = n - first < LT_CHUNK ? n - first : LT_CHUNK;
    lt_chunk *s = &ws->slots[omp_get_thread_num()];
    float *grads = ws->chunks[c].grads;
    const size_t osz = m->layers[L - 1].out_size;
    const float *y = ws->act[L] + (size_t)first * osz;
    const float *t = ws->target + (size_t)first * osz;
    float *dy = grad ? s->d[0] : NULL;
    int top = L - 1;
    if (ws->batch.pending)
        prepare_rows(m, ws, ws->batch.ds, ws->batch.idx, ws->batch.first, first, first + cn, ws->batch.noise_seed,
                     ws->batch.noise_stream, ws->batch.noise_first);
    if (grad) memset(grads, 0, sizeof(float) * m->n_params);
    forward_chunk(m, ws, first, cn, 0, L, grad, seed, step, s->cols, NULL, NULL);
    ws->chunk_kl[c] = 0.0;
    ws->chunk_correct[c] = 0;
    switch (m->kind) {
    case LT_MODEL_AE:
        ws->chunk_loss[c] = lt_mse_loss(dy, y, t, (size_t)cn * osz, (double)n * (double)osz);
        break;
    case LT_MODEL_CLF:
        ws->chunk_loss[c] = lt_xent_loss(dy, y, ws->labels + first, cn, (int)osz, (double)n);
        ws->chunk_correct[c] = argmax_correct(y, ws->labels + first, cn, (int)osz);
        break;
    case LT_MODEL_VAE:
        if (m->lik.bernoulli && m->layers[L - 1].kind == LT_L_SIGMOID) {
            /* Fused with the sigmoid: the gradient enters below it. */
            ws->chunk_loss[c] = bernoulli_logits(dy, ws->act[L - 1] + (size_t)first * osz, t, (size_t)cn * osz, 1.0f / (float)n);
            top = L - 2;
        } else if (m->lik.bernoulli) {
            ws->chunk_loss[c] = bernoulli_logits(dy, y, t, (size_t)cn * osz, 1.0f / (float)n);
        } else {
            ws->chunk_loss[c] = gaussian_rec(dy, y, t, (size_t)cn * osz, m->lik.c, 1.0f / (float)n);
        }
        for (int i = 0; i < cn; i++) ws->chunk_kl[c] += ws->kl[first + i];
        break;
    }
    if (grad) backward_chunk(m, ws, first, cn, 1, top, 1.0f / (float)n, s, grads);
}

/* dst[i] = 0 + the chunks' grads[j0 + i], chunk by chunk in order. */
LT_VECTOR_CLONES static void sum_chunks(float *restrict dst, const lt_chunk *cs, int nch, size_t j0, size_t len)
{
    for (size_t i = 0; i < len; i++) dst[i] = 0.0f;
    for (int c = 0; c < nch; c++) {
        const float *restrict g = cs[c].grads + j0;
        for (size_t i = 0; i < len; i++) dst[i] += g[i];
    }
}

/* The batch's loss from its chunks' sums, in chunk order. */
static lt_batch_loss batch_result(const lt_model *m, const lt_workspace *ws, int nch, int n)
{
    lt_batch_loss r = {0};
    double loss = 0.0, kl = 0.0;
    for (int c = 0; c < nch; c++) loss += ws->chunk_loss[c], kl += ws->chunk_kl[c], r.correct += ws->chunk_correct[c];
    if (m->kind == LT_MODEL_AE) {
        r.loss = loss / ((double)n * (double)m->layers[m->n_layers - 1].out_size);
    } else {
        r.rec = loss / n, r.kl = kl / n;
        r.loss = r.rec + r.kl;
    }
    return r;
}

lt_batch_loss lt_net_loss(const lt_model *m, lt_workspace *ws, int n, uint64_t seed, uint64_t step, int grad,
                          int threads)
{
    const int nch = n_chunks(n);
    lt_chunk *cs = ws->chunks;
    const int nt = ws_threads(ws, threads);
    /* Data-parallel training: this process computes its share of the chunks, then exchange() fills in the rest. */
    const int split = grad && ws->exchange && ws->parts > 1;
    const int c0 = split ? nch * ws->part / ws->parts : 0, c1 = split ? nch * (ws->part + 1) / ws->parts : nch;
    lt_net_prepare_weights(m, ws, 0, m->n_layers);
#pragma omp parallel num_threads(nt)
    {
        lt_fpmode fm = lt_ftz_begin();
#pragma omp for schedule(dynamic, 1)
        for (int c = c0; c < c1; c++) loss_chunk(m, ws, c, n, seed, step, grad);
        if (split) {
            /* One thread talks to the other processes (MPI_THREAD_FUNNELED). */
#pragma omp master
            ws->exchange(ws->exchange_ctx, ws, nch, m->n_params);
#pragma omp barrier
        }
        /* Sum the chunks' gradients in chunk order, whichever thread ran them. */
        if (grad) {
            /* Every chunk's loss is in (the loop's barrier, or exchange's):
             * each thread finds the same total, so all update or none do. */
            const int update = ws->update && isfinite(batch_result(m, ws, nch, n).loss);
            /* Blocks of parameters, the chunks added one whole block at a
             * time: vector adds over contiguous memory, where a loop over
             * the chunks for each parameter was scalar (3% of a step). Each
             * sum is still ((0 + g0) + g1) + ..., the same bits. */
            const size_t blk = 2048, nblk = (m->n_params + blk - 1) / blk;
            /* nowait: the region's end waits for every thread anyway, and with
             * a passive wait policy each barrier can cost a thread wake-up. */
#pragma omp for schedule(static) nowait
            for (size_t b = 0; b < nblk; b++) {
                const size_t j0 = b * blk, len = m->n_params - j0 < blk ? m->n_params - j0 : blk;
                sum_chunks(ws->grad + j0, cs, nch, j0, len);
                if (update) ws->update(ws->update_ctx, j0, j0 + len);
            }
        }
        lt_ftz_end(fm);
    }
    ws->batch.pending = 0; /* consumed: a later call on other data must not redo it */
    return batch_result(m, ws, nch, n);
}

double lt_net_train_step(const lt_model *m, lt_workspace *ws, int n, uint64_t seed, uint64_t step,
                         int threads)
{
    return lt_net_loss(m, ws, n, seed, step, 1, threads).loss;
}

/* The dataset index of a batch's i-th image: idx[i], or first + i without idx. */
static inline int batch_index(const int *idx, int first, int i) { return idx ? idx[i] : first + i; }

/* Rows [lo, hi) of a batch of images as floats in [0,1], at dst + lo rows. */
static void images_to_float_rows(float *dst, const lt_dataset *ds, const int *idx, int first, int lo, int hi)
{
    const size_t sz = (size_t)ds->c * ds->h * ds->w;
    /* Shuffled images are scattered over the whole dataset, so each one
     * starts with cache misses the hardware cannot foresee (the loads were
     * three quarters of this loop's time): ask for the images two ahead. */
    const int ahead = 2;
    for (int i = lo; i < hi; i++) {
        if (i + ahead < hi) {
            const char *next = (const char *)ds->images + (size_t)batch_index(idx, first, i + ahead) * sz;
            for (size_t off = 0; off < sz; off += 64) __builtin_prefetch(next + off);
            __builtin_prefetch(next + sz - 1);
        }
        const uint8_t *src = ds->images + (size_t)batch_index(idx, first, i) * sz;
        float *d = dst + (size_t)i * sz;
        for (size_t k = 0; k < sz; k++) d[k] = (float)src[k] / 255.0f;
    }
}

void lt_images_to_float(float *dst, const lt_dataset *ds, const int *idx, int first, int n, int threads)
{
    const int nch = n_chunks(n);
#pragma omp parallel for num_threads(resolve_threads(threads)) schedule(static)
    for (int c = 0; c < nch; c++)
        images_to_float_rows(dst, ds, idx, first, c * LT_CHUNK, chunk_end(n, c));
}

void lt_noise_batch(const lt_noise *noise, float *x, int n, size_t size, uint64_t seed, uint64_t stream,
                    uint64_t first, int threads)
{
    if (noise->kind == LT_NOISE_NONE) return;
#pragma omp parallel for num_threads(resolve_threads(threads)) schedule(static)
    for (int i = 0; i < n; i++) lt_noise_apply(noise, x + (size_t)i * size, 1, size, seed, stream, first + (uint64_t)i);
}

/* Samples [lo, hi) of the batch, as lt_batch_prepare describes: each row's
 * values depend only on its own image and noise stream, so any split of the
 * rows gives the same bits. */
static void prepare_rows(const lt_model *m, lt_workspace *ws, const lt_dataset *ds, const int *idx, int first, int lo,
                         int hi, uint64_t noise_seed, uint64_t noise_stream, uint64_t noise_first)
{
    const size_t isz = (size_t)ds->c * ds->h * ds->w, a = (size_t)lo * isz, b = (size_t)hi * isz;
    float *x = ws->act[0];
    images_to_float_rows(x, ds, idx, first, lo, hi);
    if (m->kind == LT_MODEL_VAE && m->lik.bernoulli)
        for (size_t i = a; i < b; i++) x[i] = x[i] > 0.5f ? 1.0f : 0.0f;
    if (m->kind != LT_MODEL_CLF) memcpy(ws->target + a, x + a, sizeof(float) * (b - a));
    for (int i = lo; i < hi; i++) ws->labels[i] = ds->labels[batch_index(idx, first, i)];
    lt_noise_apply(&m->noise, x + a, hi - lo, isz, noise_seed, noise_stream, noise_first + (uint64_t)lo);
}

void lt_batch_prepare(const lt_model *m, lt_workspace *ws, const lt_dataset *ds, const int *idx, int first, int n,
                      uint64_t noise_seed, uint64_t noise_stream, uint64_t noise_first, int threads)
{
    const int nch = n_chunks(n);
    ws->batch.pending = 0;
#pragma omp parallel for num_threads(resolve_threads(threads)) schedule(static)
    for (int c = 0; c < nch; c++)
        prepare_rows(m, ws, ds, idx, first, c * LT_CHUNK, chunk_end(n, c), noise_seed, noise_stream, noise_first);
}

void lt_batch_defer(lt_workspace *ws, const lt_dataset *ds, const int *idx, int first, uint64_t noise_seed,
                    uint64_t noise_stream, uint64_t noise_first)
{
    ws->batch.pending = 1;
    ws->batch.ds = ds, ws->batch.idx = idx, ws->batch.first = first;
    ws->batch.noise_seed = noise_seed, ws->batch.noise_stream = noise_stream, ws->batch.noise_first = noise_first;
}
