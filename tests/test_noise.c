/* Denoising autoencoder pieces: the noise syntax, what each noise does to
 * images, that it is reproducible, and the baselines (noisy input, LMMSE). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "testutil.h"

static void test_parse_and_format(void **state)
{
    (void)state;
    const char *good[] = {"none", "gaussian:1", "gaussian:0.5:clip", "saltpepper:0.2", "mask:0.3"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        lt_noise n;
        lt_err err = {0};
        char back[64];
        if (lt_noise_parse(good[i], &n, &err)) fail_msg("%s: %s", good[i], err.msg);
        assert_int_equal(lt_noise_format(&n, back, sizeof back), 0);
        assert_string_equal(back, good[i]);
    }
    struct { const char *text, *needle; } bad[] = {
        {"gaussian", "expected"}, {"gaussian:abc", "number"}, {"gaussian:-1", "sigma"}, {"gaussian:1:clop", "unexpected"},
        {"saltpepper:1.5", "probability"}, {"mask:0", "probability"}, {"mask:0.1:clip", "gaussian"}, {"blur:1", "unknown"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lt_noise n;
        lt_err err = {0};
        assert_int_equal(lt_noise_parse(bad[i].text, &n, &err), LT_EINVAL);
        if (!strstr(err.msg, bad[i].needle) || !strstr(err.msg, bad[i].text))
            fail_msg("'%s': message '%s' lacks '%s'", bad[i].text, err.msg, bad[i].needle);
    }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The ziggurat's normals against the normal distribution: mean, variance,
 * the Kolmogorov-Smirnov distance to the normal CDF over 2^20 draws (the 0.1%
 * critical value is 1.95/sqrt(n)), and how often the tail beyond 3.4426, the
 * ziggurat's base layer, is drawn (its own code path). */
static void test_normals(void **state)
{
    (void)state;
    enum { N = 1 << 20 };
    float *z = malloc(sizeof(float) * N);
    lt_rng r = lt_rng_for(5, 6, 7, 8);
    lt_rng_normals(&r, z, 1000);
    lt_rng_normals(&r, z + 1000, 1);
    lt_rng_normals(&r, z + 1001, N - 1001);
    double mean = 0, var = 0;
    int tail = 0;
    for (int i = 0; i < N; i++) mean += z[i], tail += fabsf(z[i]) > 3.442619855899f;
    mean /= N;
    for (int i = 0; i < N; i++) var += (z[i] - mean) * (z[i] - mean);
    var /= N - 1;
    qsort(z, N, sizeof(float), cmp_float);
    double ks = 0;
    for (int i = 0; i < N; i++) {
        double cdf = 0.5 * erfc(-z[i] / sqrt(2.0));
        double d = fmax(fabs(cdf - (double)i / N), fabs(cdf - (double)(i + 1) / N));
        if (d > ks) ks = d;
    }
    double tail_expected = N * erfc(3.442619855899 / sqrt(2.0)), tail_sd = sqrt(tail_expected);
    print_message("mean %.5f, variance %.5f, KS %.5f (limit %.5f), tail %d (expected %.0f +- %.0f)\n", mean, var, ks,
                  1.95 / sqrt(N), tail, tail_expected, tail_sd);
    assert_true(fabs(mean) < 5.0 / sqrt(N));
    assert_true(fabs(var - 1.0) < 5.0 * sqrt(2.0 / N));
    assert_true(ks < 1.95 / sqrt(N));
    assert_true(fabs(tail - tail_expected) < 5 * tail_sd);
    free(z);
}

/* Each kind changes the image the way it says, and the same stream gives
 * the same noise while another gives different noise. */
static void test_noise_statistics(void **state)
{
    (void)state;
    enum { N = 200, D = 784 };
    float *x = malloc(sizeof(float) * N * D), *y = malloc(sizeof(float) * N * D);
    for (size_t i = 0; i < (size_t)N * D; i++) x[i] = 0.25f + 0.5f * (float)(i % 2);
    lt_noise n;
    lt_err err = {0};

    assert_int_equal(lt_noise_parse("gaussian:0.5", &n, &err), 0);
    memcpy(y, x, sizeof(float) * N * D);
    lt_noise_apply(&n, y, N, D, 7, 3, 0);
    double mean = 0, var = 0;
    for (size_t i = 0; i < (size_t)N * D; i++) mean += y[i] - x[i];
    mean /= N * D;
    for (size_t i = 0; i < (size_t)N * D; i++) var += (y[i] - x[i] - mean) * (y[i] - x[i] - mean);
    var /= N * D;
    assert_true(fabs(mean) < 0.01);
    assert_true(fabs(sqrt(var) - 0.5) < 0.01);

    assert_int_equal(lt_noise_parse("gaussian:0.5:clip", &n, &err), 0);
    memcpy(y, x, sizeof(float) * N * D);
    lt_noise_apply(&n, y, N, D, 7, 3, 0);
    int outside = 0, at_edge = 0;
    for (size_t i = 0; i < (size_t)N * D; i++) outside += y[i] < 0 || y[i] > 1, at_edge += y[i] == 0 || y[i] == 1;
    assert_int_equal(outside, 0);
    assert_true(at_edge > N * D / 10);

    assert_int_equal(lt_noise_parse("saltpepper:0.2", &n, &err), 0);
    memcpy(y, x, sizeof(float) * N * D);
    lt_noise_apply(&n, y, N, D, 7, 3, 0);
    int hit = 0, white = 0;
    for (size_t i = 0; i < (size_t)N * D; i++) {
        if (y[i] != x[i]) {
            assert_true(y[i] == 0.0f || y[i] == 1.0f);
            hit++, white += y[i] == 1.0f;
        }
    }
    assert_true(fabs((double)hit / (N * D) - 0.2) < 0.01);
    assert_true(fabs((double)white / hit - 0.5) < 0.03);

    assert_int_equal(lt_noise_parse("mask:0.3", &n, &err), 0);
    memcpy(y, x, sizeof(float) * N * D);
    lt_noise_apply(&n, y, N, D, 7, 3, 0);
    int zero = 0;
    for (size_t i = 0; i < (size_t)N * D; i++) zero += y[i] == 0.0f;
    assert_true(fabs((double)zero / (N * D) - 0.3) < 0.01);

    /* Reproducible per image: applying to images one at a time with matching
     * `first` equals applying to all at once; another stream differs. */
    float *z = malloc(sizeof(float) * N * D);
    memcpy(z, x, sizeof(float) * N * D);
    for (int i = 0; i < N; i++) lt_noise_apply(&n, z + (size_t)i * D, 1, D, 7, 3, (uint64_t)i);
    assert_memory_equal(y, z, sizeof(float) * N * D);
    memcpy(z, x, sizeof(float) * N * D);
    lt_noise_apply(&n, z, N, D, 7, 4, 0);
    assert_true(memcmp(y, z, sizeof(float) * N * D) != 0);
    free(x), free(y), free(z);
}

/* The noisy input's error is the noise variance; the linear denoiser fitted
 * on training images does much better on images of the same kind. */
static void test_baselines(void **state)
{
    (void)state;
    lt_dataset train, test;
    tu_make_dataset(&train, 3000, 28, 28, 11);
    tu_make_dataset(&test, 500, 28, 28, 12);
    lt_noise n;
    lt_err err = {0};
    assert_int_equal(lt_noise_parse("gaussian:0.5", &n, &err), 0);
    double noisy, lmmse;
    if (lt_denoise_baselines(&train, &test, &n, 2, &noisy, &lmmse, &err)) fail_msg("%s", err.msg);
    print_message("noisy MSE %.4f, LMMSE MSE %.4f\n", noisy, lmmse);
    assert_true(fabs(noisy - 0.25) < 0.005);
    assert_true(lmmse < noisy / 5);
    /* Not the linear optimum for clipped noise: no LMMSE figure, but the noisy one. */
    assert_int_equal(lt_noise_parse("gaussian:0.5:clip", &n, &err), 0);
    assert_int_equal(lt_denoise_baselines(&train, &test, &n, 2, &noisy, &lmmse, &err), 0);
    assert_true(isnan(lmmse));
    assert_true(noisy > 0.0 && noisy < 0.25);
    lt_dataset_free(&train);
    lt_dataset_free(&test);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_parse_and_format), cmocka_unit_test(test_normals),
                                       cmocka_unit_test(test_noise_statistics),
                                       cmocka_unit_test(test_baselines)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tu_release_threads();
    return rc;
}
