/* A real short run on MNIST (from the cache filled by scripts/fetch-mnist):
 * three epochs of the default autoencoder must beat the mean-image baseline
 * on the test set, and the checkpoint must reload with the same test error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

static void test_short_run_beats_mean_image(void **state)
{
    (void)state;
    char dir[4096];
    lt_err err = {0};
    lt_dataset train = {0}, test = {0};
    assert_int_equal(lt_default_data_dir(dir, sizeof dir, &err), 0);
    if (lt_dataset_load(&train, dir, "train", &err) || lt_dataset_load(&test, dir, "test", &err))
        fail_msg("%s (run scripts/fetch-mnist first)", err.msg);
    assert_int_equal(train.n, 60000);
    assert_int_equal(test.n, 10000);

    /* The baseline: predict the mean training image for every test image. */
    const size_t sz = (size_t)train.h * train.w;
    double *mean = calloc(sz, sizeof(double));
    for (int i = 0; i < 50000; i++)
        for (size_t k = 0; k < sz; k++) mean[k] += train.images[i * sz + k] / 255.0;
    double base = 0.0;
    for (size_t k = 0; k < sz; k++) mean[k] /= 50000;
    for (int i = 0; i < test.n; i++)
        for (size_t k = 0; k < sz; k++) {
            double d = test.images[i * sz + k] / 255.0 - mean[k];
            base += d * d;
        }
    base /= (double)test.n * sz;
    free(mean);
    print_message("mean-image baseline test MSE %.5f\n", base);

    char *out = tu_mkdtemp();
    lt_train_config cfg;
    lt_train_config_default(&cfg);
    cfg.out_dir = out;
    cfg.epochs = 3;
    lt_train_result res;
    if (lt_train(&cfg, &train, NULL, NULL, &res, &err)) fail_msg("%s", err.msg);
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    lt_model *m;
    assert_int_equal(lt_model_load(&m, path, &err), 0);
    double mse = 1.0, mse2 = 1.0;
    assert_int_equal(lt_model_eval_mse(m, &test, 0, test.n, 0, &mse, &err), 0);
    assert_int_equal(lt_model_eval_mse(m, &test, 0, test.n, 1, &mse2, &err), 0);
    print_message("after 3 epochs: val %.5f, test MSE %.5f (%.0f images/s)\n", res.val_loss, mse, res.images_per_sec);
    assert_true(mse < base);
    assert_true(mse == mse2); /* evaluation does not depend on the thread count */
    lt_model_free(m);
    tu_rmtree(out);
    free(out);
    lt_dataset_free(&train);
    lt_dataset_free(&test);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_short_run_beats_mean_image)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tu_release_threads();
    return rc;
}
