/* Finite-difference checks of the classifier's and the VAE's gradients: the
 * max-pool and sample layers, softmax cross-entropy, the KL term and both VAE
 * likelihoods, each through a whole small model (lt_net_loss), so the layers'
 * backward passes are checked where they are used. Smooth activations
 * (sigmoid) keep central differences exact up to round-off; max-pool winners
 * are checked unchanged by every step. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nn/net.h"
#include "testutil.h"

/* Snapshot of every max-pool winner after the last forward. */
static size_t winners(const lt_model *m, const lt_workspace *ws, int n, float *buf)
{
    size_t k = 0;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].kind == LT_L_MAXPOOL && ws->mask[i])
            for (size_t e = 0; e < (size_t)n * m->layers[i].out_size; e++) {
                if (buf) buf[k] = ws->mask[i][e];
                k++;
            }
    return k;
}

/* Analytic gradient of the mean loss against central differences for every
 * parameter. Returns the relative error of the whole vector; fails when either
 * gradient is (nearly) zero, so a backward pass that adds nothing cannot pass. */
static double fd_check(const char *what, lt_model *m, lt_workspace *ws, int n, float h)
{
    const size_t P = m->n_params;
    double l0 = lt_net_loss(m, ws, n, 3, 7, 1, 1).loss;
    assert_true(isfinite(l0));
    float *ga = malloc(sizeof(float) * P), *gn = malloc(sizeof(float) * P);
    memcpy(ga, ws->grad, sizeof(float) * P);
    size_t nw = winners(m, ws, n, NULL), skipped = 0;
    float *w0 = malloc(sizeof(float) * (nw + 1)), *w1 = malloc(sizeof(float) * (nw + 1));
    winners(m, ws, n, w0);
    for (size_t j = 0; j < P; j++) {
        float v = m->params[j];
        m->params[j] = v + h;
        double dp = (double)m->params[j] - v;
        double lp = lt_net_loss(m, ws, n, 3, 7, 1, 1).loss;
        int moved = winners(m, ws, n, w1) && memcmp(w0, w1, sizeof(float) * nw);
        m->params[j] = v - h;
        double dm = (double)m->params[j] - v;
        double lm = lt_net_loss(m, ws, n, 3, 7, 1, 1).loss;
        moved |= winners(m, ws, n, w1) && memcmp(w0, w1, sizeof(float) * nw);
        m->params[j] = v;
        /* A step that changes a max-pool winner crosses a kink: leave it out. */
        if (moved) {
            gn[j] = ga[j];
            skipped++;
        } else {
            gn[j] = (float)((lp - lm) / (dp - dm));
        }
    }
    if (skipped * 10 > P) fail_msg("%s: %zu of %zu parameters at max-pool kinks", what, skipped, P);
    double d = 0, na = 0, nn = 0;
    for (size_t j = 0; j < P; j++) {
        d += ((double)ga[j] - gn[j]) * ((double)ga[j] - gn[j]);
        na += (double)ga[j] * ga[j];
        nn += (double)gn[j] * gn[j];
    }
    double r = sqrt(d) / fmax(sqrt(na), sqrt(nn));
    print_message("  %-28s %zu params (%zu at max-pool kinks)  |a| %.3e  |n| %.3e  rel %.2e\n", what, P, skipped,
                  sqrt(na), sqrt(nn), r);
    if (!(sqrt(nn) > 1e-4)) fail_msg("%s: numeric gradient is (nearly) zero", what);
    if (!(sqrt(na) > 1e-4)) fail_msg("%s: analytic gradient is (nearly) zero", what);
    /* Tensor by tensor too: a layer whose gradient is missing cannot hide
     * behind the others. */
    for (int i = 0; i < m->n_layers; i++) {
        const lt_layer *l = &m->layers[i];
        if (!l->w_len) continue;
        double li = 0, ln = 0, ld = 0;
        for (size_t e = l->w_off; e < l->b_off + l->b_len; e++) {
            li += (double)ga[e] * ga[e], ln += (double)gn[e] * gn[e];
            ld += ((double)ga[e] - gn[e]) * ((double)ga[e] - gn[e]);
        }
        if (!(sqrt(ld) <= 2e-2 * fmax(sqrt(li), sqrt(ln)) && ln > 0))
            fail_msg("%s: layer %s: analytic %.3e numeric %.3e differ by %.3e", what, l->name, sqrt(li), sqrt(ln), sqrt(ld));
    }
    free(ga), free(gn), free(w0), free(w1);
    return r;
}

static lt_model *make(const char *spec, int c, int h, int w)
{
    lt_model *m = NULL;
    lt_err err = {0};
    if (lt_model_create(&m, spec, c, h, w, 0.0f, 11, &err)) fail_msg("lt_model_create: %s", err.msg);
    /* Doubled weights: gradients reaching the first layers of these narrow
     * nets are otherwise so small that round-off swamps the differences. */
    for (size_t j = 0; j < m->n_params; j++) m->params[j] *= 2.0f;
    return m;
}

static void test_classifier(void **state)
{
    (void)state;
    lt_model *m = make("features: conv(4,3,1,1) sigmoid maxpool(2) conv(3,3,1,0) sigmoid flatten dense(6) sigmoid;"
                       "head: dense(5)",
                       1, 8, 9);
    assert_int_equal(m->kind, LT_MODEL_CLF);
    assert_int_equal(m->classes, 5);
    lt_workspace *ws;
    lt_err err = {0};
    const int n = 6;
    assert_int_equal(lt_workspace_create(&ws, m, n, 1, &err), 0);
    tu_fill_uniform(ws->act[0], (size_t)n * 72, 0.0f, 1.0f, 41);
    for (int i = 0; i < n; i++) ws->labels[i] = (uint8_t)(i * 3 % 5);
    double r = fd_check("classifier (maxpool, xent)", m, ws, n, 2e-3f);
    assert_true(r < 1e-2);
    lt_workspace_free(ws);
    lt_model_free(m);
}

static void vae_case(int bernoulli)
{
    lt_model *m = make("encoder: conv(3,3,2,1) sigmoid flatten dense(6) sigmoid dense(4) sample;"
                       "decoder: dense(5) sigmoid dense(48) unflatten(3,4,4) convt(1,3,2,1,1) sigmoid",
                       1, 8, 8);
    assert_int_equal(m->kind, LT_MODEL_VAE);
    assert_int_equal(m->latent, 2);
    lt_likelihood lik = {bernoulli, bernoulli ? 0.0f : 0.5f};
    lt_err err = {0};
    assert_int_equal(lt_model_set_likelihood(m, &lik, &err), 0);
    lt_workspace *ws;
    const int n = 5;
    assert_int_equal(lt_workspace_create(&ws, m, n, 1, &err), 0);
    tu_fill_uniform(ws->act[0], (size_t)n * 64, 0.0f, 1.0f, 42);
    if (bernoulli)
        for (int i = 0; i < n * 64; i++) ws->act[0][i] = ws->act[0][i] > 0.5f;
    memcpy(ws->target, ws->act[0], sizeof(float) * n * 64);
    /* The same noise for every evaluation: drawn from (seed, step), fixed by the test's call. */
    lt_batch_loss bl = lt_net_loss(m, ws, n, 3, 7, 1, 1);
    assert_true(bl.kl > 0.0 && bl.rec > 0.0);
    assert_true(fabs(bl.loss - (bl.rec + bl.kl)) <= 1e-12 * bl.loss);
    double r = fd_check(bernoulli ? "vae bernoulli (sample, kl)" : "vae gaussian c=0.5 (sample, kl)", m, ws, n, 1e-2f);
    assert_true(r < 1e-2);
    lt_workspace_free(ws);
    lt_model_free(m);
}

static void test_vae(void **state)
{
    (void)state;
    vae_case(0);
    vae_case(1);
}

/* The KL term alone: with the decoder's gradient zero, the sample layer's
 * backward is exactly the KL's gradient, checked against differences of the KL. */
static void test_kl_layer(void **state)
{
    (void)state;
    const int n = 3, k = 4;
    float x[24], z[12], eps[12], dz[12] = {0}, dx[24];
    double kl[3], klp[3], klm[3];
    tu_fill_uniform(x, 24, -1.5f, 1.5f, 43);
    lt_sample_forward(z, eps, 1, kl, x, n, k, 1, 2, 0, 5);
    lt_sample_backward(dx, dz, eps, x, n, k, 1.0f);
    float num[24];
    for (int j = 0; j < 24; j++) {
        float v = x[j];
        x[j] = v + 1e-2f;
        lt_sample_forward(z, eps, 0, klp, x, n, k, 1, 2, 0, 5);
        x[j] = v - 1e-2f;
        lt_sample_forward(z, eps, 0, klm, x, n, k, 1, 2, 0, 5);
        x[j] = v;
        num[j] = (float)(((klp[0] + klp[1] + klp[2]) - (klm[0] + klm[1] + klm[2])) / 2e-2);
    }
    assert_true(tu_close_ratio(dx, num, 24, 1e-3, 1e-3) <= 1.0);
    assert_true(tu_norm(num, 24) > 0.1);
    /* And z really is mu + exp(logvar/2) eps with eps drawn from the stream. */
    lt_sample_forward(z, eps, 1, kl, x, n, k, 1, 2, 0, 5);
    for (int s = 0; s < n; s++)
        for (int j = 0; j < k; j++)
            assert_float_equal(z[s * k + j], x[s * 8 + j] + expf(0.5f * x[s * 8 + k + j]) * eps[s * k + j], 1e-6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classifier),
        cmocka_unit_test(test_vae),
        cmocka_unit_test(test_kl_layer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
