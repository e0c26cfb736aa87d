/* Forward, backward and optimizer steps against reference tensors written by
 * PyTorch (tests/gen_ref.py, stored in tests/ref/torch_ref.safetensors). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "io/safetensors.h"
#include "nn/net.h"
#include "optim/optim.h"
#include "testutil.h"

static lt_st_file ref;

static int setup(void **state)
{
    (void)state;
    lt_err err = {0};
    if (lt_st_read(LATENT_TEST_REF_DIR "/torch_ref.safetensors", &ref, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    lt_st_free(&ref);
    return 0;
}

/* A reference tensor as a malloc'ed float copy (the file data may be unaligned). */
static float *get(const char *fmt, ...)
{
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const lt_st_tensor *t = lt_st_find(&ref, name);
    if (!t) fail_msg("reference tensor %s missing", name);
    assert_int_equal(t->dtype, LT_DT_F32);
    float *p = malloc(t->nbytes + 4);
    memcpy(p, t->data, t->nbytes);
    return p;
}

static size_t count(const char *fmt, ...)
{
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const lt_st_tensor *t = lt_st_find(&ref, name);
    if (!t) fail_msg("reference tensor %s missing", name);
    return t->nbytes / sizeof(float);
}

/* Close to float precision, and the reference must not be all zeros (so a
 * kernel that writes nothing cannot pass against a zero reference). */
static void expect_close(const char *what, const float *got, const float *want, size_t n, double atol)
{
    double r = tu_close_ratio(got, want, n, atol, 1e-4);
    if (r > 1.0) {
        size_t worst = 0;
        double wd = 0;
        for (size_t i = 0; i < n; i++) {
            double d = got[i] - want[i];
            if (d * d > wd) wd = d * d, worst = i;
        }
        fail_msg("%s: differs from PyTorch (ratio %.3g; at %zu got %.8g want %.8g)", what, r, worst, got[worst], want[worst]);
    }
    assert_true(tu_norm(want, n) > 0.0);
}

typedef struct conv_case {
    const char *name;
    int transposed, n, c, h, w, oc, k, s, p, op;
} conv_case;

static const conv_case conv_cases[] = {
    {"conv_a", 0, 3, 2, 7, 7, 4, 3, 2, 1, 0},  {"conv_b", 0, 2, 3, 8, 8, 5, 3, 2, 0, 0},
    {"conv_c", 0, 2, 2, 5, 5, 3, 3, 1, 1, 0},  {"convt_a", 1, 3, 4, 3, 3, 2, 3, 2, 0, 0},
    {"convt_b", 1, 2, 3, 4, 4, 2, 3, 2, 1, 1}, {"convt_c", 1, 2, 2, 5, 5, 3, 3, 1, 1, 0},
    /* Winograd (lt_wino_applies), edge tiles cut on both axes. */
    {"conv_w1", 0, 2, 16, 5, 7, 24, 3, 1, 1, 0}, {"conv_w0", 0, 3, 16, 7, 6, 16, 3, 1, 0, 0},
};

static void test_conv_layers(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++) {
        const conv_case *cc = &conv_cases[i];
        lt_conv_geom g = {.c = cc->c, .h = cc->h, .w = cc->w, .oc = cc->oc, .k = cc->k, .stride = cc->s,
                          .pad = cc->p, .opad = cc->op};
        assert_int_equal(lt_conv_geom_init(&g, cc->transposed), 0);
        float *x = get("%s.x", cc->name), *w = get("%s.w", cc->name), *b = get("%s.b", cc->name);
        float *y = get("%s.y", cc->name), *dy = get("%s.dy", cc->name), *dx = get("%s.dx", cc->name);
        float *dw = get("%s.dw", cc->name), *db = get("%s.db", cc->name);
        size_t ny = count("%s.y", cc->name), nx = count("%s.x", cc->name);
        assert_int_equal(ny, (size_t)cc->n * g.oc * g.oh * g.ow);
        float *out = calloc(ny, sizeof(float)), *gx = calloc(nx, sizeof(float));
        float *gw = calloc(count("%s.w", cc->name), sizeof(float)), *gb = calloc((size_t)g.oc, sizeof(float));
        float *cols = calloc(lt_conv_scratch_size(&g, cc->transposed, cc->n), sizeof(float));
        /* The kernels work channels last; PyTorch's tensors are channels first. */
        float *xl = calloc(nx, sizeof(float)), *dyl = calloc(ny, sizeof(float));
        float *outl = calloc(ny, sizeof(float)), *gxl = calloc(nx, sizeof(float));
        lt_nchw_to_nhwc(xl, x, cc->n, g.c, g.h * g.w);
        lt_nchw_to_nhwc(dyl, dy, cc->n, g.oc, g.oh * g.ow);
        if (cc->transposed) {
            lt_convt2d_forward(outl, xl, w, b, cc->n, &g, cols);
            lt_convt2d_backward(gxl, gw, gb, dyl, xl, w, cc->n, &g, cols);
        } else {
            lt_conv2d_forward(outl, xl, w, b, cc->n, &g, cols);
            lt_conv2d_backward(gxl, gw, gb, dyl, xl, w, cc->n, &g, cols, 0);
        }
        lt_nhwc_to_nchw(out, outl, cc->n, g.oc, g.oh * g.ow);
        lt_nhwc_to_nchw(gx, gxl, cc->n, g.c, g.h * g.w);
        free(xl), free(dyl), free(outl), free(gxl);
        char what[64];
        snprintf(what, sizeof what, "%s forward", cc->name);
        expect_close(what, out, y, ny, 1e-5);
        snprintf(what, sizeof what, "%s dx", cc->name);
        expect_close(what, gx, dx, nx, 1e-5);
        snprintf(what, sizeof what, "%s dw", cc->name);
        expect_close(what, gw, dw, count("%s.w", cc->name), 1e-5);
        snprintf(what, sizeof what, "%s db", cc->name);
        expect_close(what, gb, db, (size_t)g.oc, 1e-5);
        free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db);
        free(out), free(gx), free(gw), free(gb), free(cols);
    }
}

static void test_dense_layer(void **state)
{
    (void)state;
    float *x = get("dense.x"), *w = get("dense.w"), *b = get("dense.b"), *y = get("dense.y");
    float *dy = get("dense.dy"), *dx = get("dense.dx"), *dw = get("dense.dw"), *db = get("dense.db");
    float out[20], gx[24], gw[30] = {0}, gb[5] = {0}, wt[30];
    lt_dense_transpose(wt, w, 6, 5);
    lt_dense_forward(out, x, wt, b, 4, 6, 5);
    lt_dense_backward(gx, gw, gb, dy, x, w, 4, 6, 5, NULL);
    expect_close("dense forward", out, y, 20, 1e-6);
    expect_close("dense dx", gx, dx, 24, 1e-6);
    expect_close("dense dw", gw, dw, 30, 1e-6);
    expect_close("dense db", gb, db, 5, 1e-6);
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db);
}

static void test_activations(void **state)
{
    (void)state;
    float out[40], gx[40];
    const char *names[2] = {"relu", "sigmoid"};
    for (int k = 0; k < 2; k++) {
        float *x = get("%s.x", names[k]), *y = get("%s.y", names[k]), *dy = get("%s.dy", names[k]);
        float *dx = get("%s.dx", names[k]);
        if (k == 0) {
            lt_relu_forward(out, x, 40);
            lt_relu_backward(gx, dy, out, 40);
        } else {
            lt_sigmoid_forward(out, x, 40);
            lt_sigmoid_backward(gx, dy, out, 40);
        }
        expect_close(names[k], out, y, 40, 1e-6);
        expect_close(names[k], gx, dx, 40, 1e-6);
        free(x), free(y), free(dy), free(dx);
    }
}

static void test_losses(void **state)
{
    (void)state;
    float g[50];
    float *y = get("mse.y"), *t = get("mse.t"), *l = get("mse.loss"), *dy = get("mse.dy");
    float loss = (float)(lt_mse_loss(g, y, t, 40, 40.0) / 40.0);
    expect_close("mse loss", &loss, l, 1, 1e-7);
    expect_close("mse grad", g, dy, 40, 1e-7);
    free(y), free(t), free(l), free(dy);

    y = get("bce.y"), t = get("bce.t"), l = get("bce.loss"), dy = get("bce.dy");
    loss = (float)(lt_bce_loss(g, y, t, 40, 40.0) / 40.0);
    expect_close("bce loss", &loss, l, 1, 1e-6);
    expect_close("bce grad", g, dy, 40, 1e-6);
    free(y), free(t), free(l), free(dy);

    y = get("xent.y"), t = get("xent.t"), l = get("xent.loss"), dy = get("xent.dy");
    uint8_t labels[5];
    for (int i = 0; i < 5; i++) labels[i] = (uint8_t)t[i];
    loss = (float)(lt_xent_loss(g, y, labels, 5, 10, 5.0) / 5.0);
    expect_close("xent loss", &loss, l, 1, 1e-6);
    expect_close("xent grad", g, dy, 50, 1e-6);
    free(y), free(t), free(l), free(dy);
}

/* The whole default autoencoder: PyTorch's weights loaded by name, one
 * forward/backward on 4 images, compared with PyTorch's output and gradients. */
static void test_model(void **state)
{
    (void)state;
    char spec[1024];
    lt_default_spec(spec, sizeof spec, 2);
    lt_model *m;
    lt_err err = {0};
    assert_int_equal(lt_model_create(&m, spec, 1, 28, 28, 0.0f, 1, &err), 0);
    for (int i = 0; i < m->n_layers; i++) {
        const lt_layer *l = &m->layers[i];
        if (!l->w_len) continue;
        for (int which = 0; which < 2; which++) {
            char name[64];
            lt_param_name(l, which, name, sizeof name);
            float *p = get("model.%s", name);
            assert_int_equal(count("model.%s", name), which ? l->b_len : l->w_len);
            memcpy(m->params + (which ? l->b_off : l->w_off), p, sizeof(float) * (which ? l->b_len : l->w_len));
            free(p);
        }
    }
    lt_workspace *ws;
    assert_int_equal(lt_workspace_create(&ws, m, 4, 1, &err), 0);
    float *x = get("model.x"), *y = get("model.y"), *z = get("model.z"), *loss_ref = get("model.loss");
    memcpy(ws->act[0], x, sizeof(float) * 4 * 784);
    memcpy(ws->target, x, sizeof(float) * 4 * 784);
    float loss = (float)lt_net_train_step(m, ws, 4, 1, 0, 2);
    expect_close("model loss", &loss, loss_ref, 1, 1e-7);
    expect_close("model z", ws->act[m->encoder_end], z, 8, 1e-5);
    expect_close("model y", ws->act[m->n_layers], y, 4 * 784, 1e-6);
    for (int i = 0; i < m->n_layers; i++) {
        const lt_layer *l = &m->layers[i];
        if (!l->w_len) continue;
        for (int which = 0; which < 2; which++) {
            char name[64];
            lt_param_name(l, which, name, sizeof name);
            float *g = get("model.grad.%s", name);
            expect_close(name, ws->grad + (which ? l->b_off : l->w_off), g, which ? l->b_len : l->w_len, 1e-7);
            free(g);
        }
    }
    free(x), free(y), free(z), free(loss_ref);
    lt_workspace_free(ws);
    lt_model_free(m);
}

/* Max-pooling 2x2 on 6x7 maps (the odd column dropped), channels last inside. */
static void test_maxpool(void **state)
{
    (void)state;
    const int n = 2, c = 3, h = 6, w = 7, oh = 3, ow = 3;
    float *x = get("maxpool.x"), *y = get("maxpool.y"), *dy = get("maxpool.dy"), *dx = get("maxpool.dx");
    float xl[252], yl[54], dyl[54], dxl[252], arg[54], yc[54], dxc[252];
    lt_nchw_to_nhwc(xl, x, n, c, h * w);
    lt_nchw_to_nhwc(dyl, dy, n, c, oh * ow);
    lt_maxpool_forward(yl, arg, xl, n, h, w, c, 2);
    lt_maxpool_backward(dxl, dyl, arg, n, h, w, c, 2);
    lt_nhwc_to_nchw(yc, yl, n, c, oh * ow);
    lt_nhwc_to_nchw(dxc, dxl, n, c, h * w);
    expect_close("maxpool y", yc, y, 54, 0);
    expect_close("maxpool dx", dxc, dx, 252, 0);
    free(x), free(y), free(dy), free(dx);
}

/* Load PyTorch's parameters (names under prefix) into m. */
static void load_params(lt_model *m, const char *prefix)
{
    for (int i = 0; i < m->n_layers; i++) {
        const lt_layer *l = &m->layers[i];
        if (!l->w_len) continue;
        for (int which = 0; which < 2; which++) {
            char name[64];
            lt_param_name(l, which, name, sizeof name);
            float *p = get("%s.%s", prefix, name);
            assert_int_equal(count("%s.%s", prefix, name), which ? l->b_len : l->w_len);
            memcpy(m->params + (which ? l->b_off : l->w_off), p, sizeof(float) * (which ? l->b_len : l->w_len));
            free(p);
        }
    }
}

static void expect_grads(const lt_model *m, const lt_workspace *ws, const char *prefix, double atol)
{
    for (int i = 0; i < m->n_layers; i++) {
        const lt_layer *l = &m->layers[i];
        if (!l->w_len) continue;
        for (int which = 0; which < 2; which++) {
            char name[64];
            lt_param_name(l, which, name, sizeof name);
            float *g = get("%s.grad.%s", prefix, name);
            expect_close(name, ws->grad + (which ? l->b_off : l->w_off), g, which ? l->b_len : l->w_len, atol);
            free(g);
        }
    }
}

/* The MNIST example CNN as a classifier: logits, cross-entropy, gradients. */
static void test_cnn(void **state)
{
    (void)state;
    char spec[1024];
    assert_int_equal(lt_mnist_cnn_spec(spec, sizeof spec, 10), 0);
    /* Dropout off, as PyTorch's reference ran with p = 0; same layer indices. */
    for (char *d = strstr(spec, "dropout("); d; d = strstr(d + 1, "dropout("))
        for (char *q = d + 8; *q != ')'; q++) *q = q == d + 8 ? '0' : ' ';
    lt_model *m;
    lt_err err = {0};
    if (lt_model_create(&m, spec, 1, 28, 28, 0.0f, 1, &err)) fail_msg("%s", err.msg);
    assert_int_equal(m->kind, LT_MODEL_CLF);
    load_params(m, "cnn");
    lt_workspace *ws;
    assert_int_equal(lt_workspace_create(&ws, m, 4, 1, &err), 0);
    float *x = get("cnn.x"), *t = get("cnn.t"), *logits = get("cnn.logits"), *loss_ref = get("cnn.loss");
    memcpy(ws->act[0], x, sizeof(float) * 4 * 784);
    for (int i = 0; i < 4; i++) ws->labels[i] = (uint8_t)t[i];
    lt_batch_loss bl = lt_net_loss(m, ws, 4, 1, 0, 1, 2);
    float loss = (float)bl.loss;
    expect_close("cnn loss", &loss, loss_ref, 1, 1e-6);
    expect_close("cnn logits", ws->act[m->n_layers], logits, 40, 1e-5);
    expect_grads(m, ws, "cnn", 1e-6);
    free(x), free(t), free(logits), free(loss_ref);
    lt_workspace_free(ws);
    lt_model_free(m);
}

/* The default VAE with PyTorch's noise eps: z, output, loss parts, gradients. */
static void vae_check(const char *name, int k, int bernoulli)
{
    char spec[1024];
    assert_int_equal(lt_default_vae_spec(spec, sizeof spec, k), 0);
    lt_model *m;
    lt_err err = {0};
    if (lt_model_create(&m, spec, 1, 28, 28, 0.0f, 1, &err)) fail_msg("%s", err.msg);
    assert_int_equal(m->kind, LT_MODEL_VAE);
    lt_likelihood lik = {bernoulli, bernoulli ? 0.0f : 1.0f};
    assert_int_equal(lt_model_set_likelihood(m, &lik, &err), 0);
    load_params(m, name);
    lt_workspace *ws;
    assert_int_equal(lt_workspace_create(&ws, m, 4, 1, &err), 0);
    float *x = get("%s.x", name), *eps = get("%s.eps", name), *z = get("%s.z", name), *y = get("%s.y", name);
    float *loss_ref = get("%s.loss", name), *rec_ref = get("%s.rec", name), *kl_ref = get("%s.kl", name);
    memcpy(ws->act[0], x, sizeof(float) * 4 * 784);
    memcpy(ws->target, x, sizeof(float) * 4 * 784);
    memcpy(ws->mask[m->encoder_end - 1], eps, sizeof(float) * 4 * k);
    ws->fixed_eps = 1;
    lt_batch_loss bl = lt_net_loss(m, ws, 4, 1, 0, 1, 2);
    float loss = (float)bl.loss, rec = (float)bl.rec, kl = (float)bl.kl;
    expect_close("vae z", ws->act[m->encoder_end], z, 4 * (size_t)k, 1e-5);
    expect_close("vae y", ws->act[m->n_layers], y, 4 * 784, 1e-5);
    expect_close("vae loss", &loss, loss_ref, 1, 1e-4);
    expect_close("vae rec", &rec, rec_ref, 1, 1e-4);
    expect_close("vae kl", &kl, kl_ref, 1, 1e-5);
    expect_grads(m, ws, name, 1e-6);
    free(x), free(eps), free(z), free(y), free(loss_ref), free(rec_ref), free(kl_ref);
    lt_workspace_free(ws);
    lt_model_free(m);
}

static void test_vae(void **state)
{
    (void)state;
    vae_check("vae_g", 3, 0);
    vae_check("vae_b", 2, 1);
}

static void test_optimizers(void **state)
{
    (void)state;
    struct { const char *name; lt_opt_kind kind; double lr, wd, mom; } cases[] = {
        {"sgd", LT_OPT_SGD, 0.1, 1e-2, 0.9},       {"adam", LT_OPT_ADAM, 1e-3, 5e-5, 0},
        {"adamw", LT_OPT_ADAMW, 1e-3, 1e-2, 0},    {"rmsprop", LT_OPT_RMSPROP, 1e-2, 5e-5, 0},
        {"adadelta", LT_OPT_ADADELTA, 1.0, 5e-5, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        lt_optim o;
        lt_err err = {0};
        assert_int_equal(lt_optim_init(&o, cases[c].kind, cases[c].lr, cases[c].wd, cases[c].mom, 37, &err), 0);
        float *p = get("optim.%s.p0", cases[c].name), *p0 = get("optim.%s.p0", cases[c].name);
        for (int k = 1; k <= 3; k++) {
            float *g = get("optim.%s.g%d", cases[c].name, k), *want = get("optim.%s.p%d", cases[c].name, k);
            lt_optim_step(&o, p, g, 1);
            char what[64];
            snprintf(what, sizeof what, "%s step %d", cases[c].name, k);
            expect_close(what, p, want, 37, 1e-7);
            /* The step must have moved the parameters (a no-op optimizer would not). */
            float moved[37];
            for (int i = 0; i < 37; i++) moved[i] = want[i] - p0[i];
            assert_true(tu_norm(moved, 37) > 1e-6);
            free(g), free(want);
        }
        free(p), free(p0);
        lt_optim_free(&o);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_layers), cmocka_unit_test(test_dense_layer),
        cmocka_unit_test(test_activations), cmocka_unit_test(test_losses),
        cmocka_unit_test(test_model),       cmocka_unit_test(test_optimizers),
        cmocka_unit_test(test_maxpool),     cmocka_unit_test(test_cnn),
        cmocka_unit_test(test_vae),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    tu_release_threads();
    return rc;
}
