/* Per-layer and whole-step speed of latent's models, in GFLOP/s and as a
 * share of this machine's peak.
 *
 *   build/bench_layers [--model ae] [--threads N] [--batch 256] [--latent 2] [--ghz 3.0]
 *   valgrind --tool=callgrind build/bench_layers --steps 3   (instruction counts)
 *   build/bench_layers --infer 1000 --threads N   (inference images/s, JSON)
 *   build/bench_layers --infer 1000 --steps 5     (just 5 inference calls, for callgrind)
 *   build/bench_layers --info --latent D          (MFLOP per image and peak, JSON)
 *
 * --model picks the network as `latent train --model` builds it: ae and dae
 * (the same network; the noise is added outside the step), vae (--latent is
 * k, the encoder ends in 2k), clf (the autoencoder's encoder with a 10-class
 * head) or cnn (the PyTorch MNIST example's CNN). --infer runs
 * lt_model_reconstruct, or lt_model_predict for the classifiers.
 *
 * Each layer's forward and backward run on one chunk (LT_CHUNK samples) on
 * one thread, repeated for about 0.3 s, median of 5; the whole training step
 * runs on a batch with N threads. Peak = cores x the FLOP rate of one core,
 * measured (peak.c: vector multiply-adds on every FMA unit, at the clock the
 * core runs at); --ghz G scales that rate to G GHz. Where it cannot be
 * measured (no AVX2 and FMA), 2 FMA units x 2 FLOP x 4 floats x the clock of
 * /proc/cpuinfo. FLOPs count 2 per multiply-add of the convolutions and
 * dense layers only, as a direct convolution does them: a convolution that
 * runs Winograd's F(2x2, 3x3) (the CNN's 32->64) does 2.25 times fewer, so
 * its rate is an effective one and can pass 100% of the peak. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/net.h"
#include "peak.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Multiply-adds per sample of a layer's forward pass. */
static double layer_macs(const lt_layer *l)
{
    switch (l->kind) {
    case LT_L_CONV: return (double)l->g.oc * l->g.c * l->g.k * l->g.k * l->g.oh * l->g.ow;
    case LT_L_CONVT: return (double)l->g.c * l->g.oc * l->g.k * l->g.k * l->g.h * l->g.w;
    case LT_L_DENSE: return (double)l->in_c * l->out_c;
    default: return 0.0;
    }
}

static double cpu_ghz(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    double mhz = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "cpu MHz", 7)) {
            mhz = atof(strchr(line, ':') + 1);
            break;
        }
    if (f) fclose(f);
    return mhz > 0 ? mhz / 1000.0 : 3.0;
}

/* Per core: measured, or from the nominal clock where it cannot be. */
static double core_peak(double ghz, char *how, size_t size)
{
    bench_peak p = bench_measure_peak();
    /* FLOP per cycle come in multiples of 4 (2 per multiply-add, vectors of
     * 2 or more floats); rounding takes out the two measurements' noise. It
     * rounds to 0 under an emulator such as valgrind. */
    const double per_cycle = p.gflops > 0 && p.ghz > 0 ? 4.0 * (int)(p.gflops / p.ghz / 4.0 + 0.5) : 0;
    if (per_cycle >= 4) {
        if (ghz <= 0) ghz = p.ghz;
        snprintf(how, size, "measured: %.0f FLOP per cycle with %d-bit vectors, at %.2f GHz", per_cycle, p.bits, ghz);
        return per_cycle * ghz;
    }
    if (ghz <= 0) ghz = cpu_ghz();
    snprintf(how, size, "not measurable here: 2 FMA units x 4 floats x 2 at %.2f GHz", ghz);
    return 2.0 * 2.0 * 4 * ghz;
}

typedef struct { const lt_model *m; lt_workspace *ws; int i, n, backward; } job;

static void run_layer(const job *j)
{
    const lt_model *m = j->m;
    const lt_layer *l = &m->layers[j->i];
    lt_workspace *ws = j->ws;
    lt_chunk *c = &ws->slots[0];
    float *grads = ws->chunks[0].grads;
    float *scratch = c->cols + ws->scratch_off[j->i];
    const float *in = ws->act[j->i], *w = m->params + l->w_off, *b = m->params + l->b_off;
    float *out = ws->act[j->i + 1];
    float *dw = grads + l->w_off, *db = grads + l->b_off;
    size_t len = (size_t)j->n * l->out_size;
    if (!j->backward) {
        switch (l->kind) {
        case LT_L_CONV: lt_conv2d_forward(out, in, w, b, j->n, &l->g, scratch); break;
        case LT_L_CONVT: lt_convt2d_forward(out, in, w, b, j->n, &l->g, scratch); break;
        case LT_L_DENSE: lt_dense_forward(out, in, ws->wt[j->i], b, j->n, l->in_c, l->out_c); break;
        case LT_L_RELU: lt_relu_forward(out, in, len); break;
        case LT_L_SIGMOID: lt_sigmoid_forward(out, in, len); break;
        case LT_L_MAXPOOL: lt_maxpool_forward(out, ws->mask[j->i], in, j->n, l->in_h, l->in_w, l->in_c, l->pool); break;
        default: break;
        }
    } else {
        float *dinp = j->i > 0 ? c->d[1] : NULL;
        switch (l->kind) {
        case LT_L_CONV: lt_conv2d_backward(dinp, dw, db, c->d[0], in, w, j->n, &l->g, scratch, 1); break;
        case LT_L_CONVT: lt_convt2d_backward(dinp, dw, db, c->d[0], in, w, j->n, &l->g, scratch); break;
        case LT_L_DENSE:
            lt_dense_backward(dinp, dw, db, c->d[0], in, w, j->n, l->in_c, l->out_c,
                              lt_dense_scratch_size(j->n, l->in_c, l->out_c) ? scratch : NULL);
            break;
        case LT_L_RELU: if (dinp) lt_relu_backward(dinp, c->d[0], out, len); break;
        case LT_L_SIGMOID: if (dinp) lt_sigmoid_backward(dinp, c->d[0], out, len); break;
        case LT_L_MAXPOOL:
            if (dinp) lt_maxpool_backward(dinp, c->d[0], ws->mask[j->i], j->n, l->in_h, l->in_w, l->in_c, l->pool);
            break;
        default: break;
        }
    }
}

static double time_median(void (*fn)(const void *), const void *arg)
{
    double t[5];
    for (int r = 0; r < 5; r++) {
        int iters = 0;
        double t0 = now(), el;
        do {
            fn(arg);
            iters++;
            el = now() - t0;
        } while (el < 0.06);
        t[r] = el / iters;
    }
    qsort(t, 5, sizeof t[0], cmp);
    return t[2];
}

static void layer_fn(const void *a) { run_layer(a); }

typedef struct { const lt_model *m; lt_workspace *ws; int batch, threads; } step_job;
static void step_fn(const void *a)
{
    const step_job *s = a;
    lt_net_train_step(s->m, s->ws, s->batch, 1, 0, s->threads);
}

typedef struct { lt_model *m; const float *x; float *y; int n, threads; } infer_job;
static void infer_fn(const void *a)
{
    const infer_job *j = a;
    lt_err err;
    if (j->m->kind == LT_MODEL_CLF) lt_model_predict(j->m, j->x, j->n, j->y, j->threads, &err);
    else lt_model_reconstruct(j->m, j->x, j->n, j->y, j->threads, &err);
}

/* The spec `latent train --model` trains (see src/train/train.c). */
static int model_spec(char *spec, size_t size, const char *model, int latent)
{
    char ae[1024];
    lt_err err;
    if (!strcmp(model, "ae") || !strcmp(model, "dae")) return lt_default_spec(spec, size, latent);
    if (!strcmp(model, "vae")) return lt_default_vae_spec(spec, size, latent);
    if (!strcmp(model, "cnn")) return lt_mnist_cnn_spec(spec, size, 10);
    if (!strcmp(model, "clf"))
        return lt_default_spec(ae, sizeof ae, latent) || lt_classifier_spec(spec, size, ae, 10, &err) ? -1 : 0;
    return -1;
}

int main(int argc, char **argv)
{
    int threads = 1, batch = 256, latent = 2, steps = 0, infer = 0, info = 0, latent_given = 0;
    const char *model = "ae";
    double ghz = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
        if (!strcmp(a, "--info")) { info = 1; continue; }
        if (!strcmp(a, "--infer")) infer = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--latent")) latent = atoi(v), latent_given = 1;
        else if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--ghz")) ghz = atof(v);
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else { fprintf(stderr, "bench_layers: unknown option %s\n", a); return 2; }
        i++;
    }
    if (!strcmp(model, "vae") && !latent_given) latent = 3; /* latent train's default k */
    char spec[1024];
    if (model_spec(spec, sizeof spec, model, latent)) {
        fprintf(stderr, "bench_layers: --model: expected ae, dae, vae, clf or cnn, found '%s'\n", model);
        return 2;
    }
    lt_model *m;
    lt_workspace *ws;
    lt_err err = {0};
    if (lt_model_create(&m, spec, 1, 28, 28, 0.0f, 1, &err) || lt_workspace_create(&ws, m, batch, 1, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < (size_t)batch * 784; i++) ws->act[0][i] = ws->target[i] = (float)((i * 7919) % 256) / 255.0f;
    lt_net_forward(m, ws, batch, 0, m->n_layers, 0, 0, 0, 1);
    /* Any non-zero upstream gradient will do for timing. */
    size_t maxsz = 784;
    for (int i = 0; i < m->n_layers; i++) maxsz = m->layers[i].out_size > maxsz ? m->layers[i].out_size : maxsz;
    for (size_t i = 0; i < (size_t)LT_CHUNK * maxsz; i++) ws->slots[0].d[0][i] = 1e-3f;
    const int n = batch < LT_CHUNK ? batch : LT_CHUNK;
    double macs = 0;
    for (int i = 0; i < m->n_layers; i++) macs += layer_macs(&m->layers[i]);
    if (info) {
        /* For bench/run: the work per image and the machine's peak. */
        char how[160];
        double peak = core_peak(ghz, how, sizeof how);
        printf("{\"mflop_per_image\": %.4f, \"peak_gflops_per_core\": %.2f, \"peak_how\": \"%s\"}\n",
               6 * macs * 1e-6, peak, how);
        return 0;
    }
    if (infer > 0) {
        /* Inference: encode + decode `infer` images in one call, as a user would. */
        float *x = malloc(sizeof(float) * 784 * (size_t)infer), *y = malloc(sizeof(float) * 784 * (size_t)infer);
        for (size_t i = 0; i < (size_t)infer * 784; i++) x[i] = (float)((i * 7919) % 256) / 255.0f;
        infer_job ij = {m, x, y, infer, threads};
        if (steps > 0) {
            /* A fixed amount of work, for callgrind or perf stat. */
            for (int r = 0; r < steps; r++) infer_fn(&ij);
            free(x), free(y);
            return 0;
        }
        double t = time_median(infer_fn, &ij);
        printf("{\"images_per_sec\": %.1f, \"gflops\": %.3f}\n", infer / t, 2 * macs * infer / t * 1e-9);
        free(x), free(y);
        return 0;
    }
    if (steps > 0) {
        /* Just run steps: for instruction counts under valgrind --tool=callgrind,
         * which stay the same when the machine is busy, unlike wall time. */
        for (int s = 0; s < steps; s++) lt_net_train_step(m, ws, batch, 1, (uint64_t)s, threads);
        lt_workspace_free(ws);
        lt_model_free(m);
        return 0;
    }
    char how[160];
    const double peak = core_peak(ghz, how, sizeof how);
    printf("peak: %.1f GFLOP/s per core (%s), %.1f for %d threads\n\n", peak, how, peak * threads, threads);
    printf("%-10s %-16s %12s %9s %7s %12s %9s %7s\n", "layer", "type", "fwd us/img", "GFLOP/s", "%peak",
           "bwd us/img", "GFLOP/s", "%peak");
    double tf_all = 0, tb_all = 0;
    static const char *kinds[] = {"Conv2d", "ConvTranspose2d", "Linear", "ReLU", "Sigmoid", "Dropout", "Flatten", "Unflatten",
                                  "MaxPool2d", "Sample"};
    for (int i = 0; i < m->n_layers; i++) {
        const lt_layer *l = &m->layers[i];
        if (l->kind == LT_L_FLATTEN || l->kind == LT_L_UNFLATTEN || l->kind == LT_L_DROPOUT || l->kind == LT_L_SAMPLE) continue;
        job jf = {m, ws, i, n, 0}, jb = {m, ws, i, n, 1};
        double tf = time_median(layer_fn, &jf) / n, tb = time_median(layer_fn, &jb) / n;
        tf_all += tf, tb_all += tb;
        double mac = layer_macs(l);
        if (mac > 0)
            printf("%-10s %-16s %12.2f %9.2f %6.1f%% %12.2f %9.2f %6.1f%%\n", l->name, kinds[l->kind], tf * 1e6,
                   2 * mac / tf * 1e-9, 200 * mac / tf * 1e-9 / peak, tb * 1e6, 4 * mac / tb * 1e-9,
                   400 * mac / tb * 1e-9 / peak);
        else
            printf("%-10s %-16s %12.2f %9s %7s %12.2f\n", l->name, kinds[l->kind], tf * 1e6, "", "", tb * 1e6);
    }
    step_job sj = {m, ws, batch, threads};
    double ts = time_median(step_fn, &sj) / batch;
    printf("\nlayers, one thread: forward %.1f us/img, backward %.1f us/img\n", tf_all * 1e6, tb_all * 1e6);
    printf("training step, batch %d, %d thread(s): %.1f us/img = %.0f images/s, %.2f GFLOP/s = %.1f%% of peak "
           "(%.2f MFLOP per image)\n",
           batch, threads, ts * 1e6, 1 / ts, 6 * macs / ts * 1e-9, 600 * macs / ts * 1e-9 / (peak * threads),
           6 * macs * 1e-6);
    lt_workspace_free(ws);
    lt_model_free(m);
    return 0;
}
