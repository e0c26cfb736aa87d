/* The command-line tool as a user meets it: help, bad flags (one line naming
 * the flag, exit code 2), and a tiny train/eval/reconstruct on IDX files the
 * test writes itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/png.h"
#include "io/safetensors.h"
#include "testutil.h"

static void test_help_and_bad_flags(void **state)
{
    (void)state;
    char out[8192];
    assert_int_equal(tu_sh(out, sizeof out, "%s --help", LATENT_CLI), 0);
    assert_non_null(strstr(out, "train"));
    assert_int_equal(tu_sh(out, sizeof out, "%s train --help", LATENT_CLI), 0);
    assert_non_null(strstr(out, "--weight-decay"));
    assert_int_equal(tu_sh(out, sizeof out, "%s train --out /tmp/x --lr abc", LATENT_CLI), 2);
    assert_non_null(strstr(out, "--lr"));
    assert_non_null(strstr(out, "abc"));
    assert_int_equal(tu_sh(out, sizeof out, "%s train --out /tmp/x --batch 0", LATENT_CLI), 2);
    assert_non_null(strstr(out, "--batch"));
    assert_int_equal(tu_sh(out, sizeof out, "%s train --out /tmp/x --optimizer adamax", LATENT_CLI), 2);
    assert_non_null(strstr(out, "adamax"));
    assert_int_equal(tu_sh(out, sizeof out, "%s train --out /tmp/x --frobnicate", LATENT_CLI), 2);
    assert_non_null(strstr(out, "--frobnicate"));
    assert_int_equal(tu_sh(out, sizeof out, "%s frobnicate", LATENT_CLI), 2);
    assert_int_equal(tu_sh(out, sizeof out, "%s eval /nonexistent.safetensors", LATENT_CLI), 1);
    assert_non_null(strstr(out, "/nonexistent.safetensors"));
}

static void test_train_eval_reconstruct(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), out[8192];
    lt_dataset ds;
    tu_make_dataset(&ds, 200, 28, 28, 3);
    tu_write_idx_split(dir, "train", &ds);
    tu_write_idx_split(dir, "t10k", &ds);
    int rc = tu_sh(out, sizeof out, "%s train --data %s --out %s/run --epochs 2 --batch 32 --val 40 --json", LATENT_CLI, dir, dir);
    if (rc) fail_msg("train failed: %s", out);
    assert_non_null(strstr(out, "\"val_loss\""));
    rc = tu_sh(out, sizeof out, "%s eval %s/run/model.safetensors --data %s --json", LATENT_CLI, dir, dir);
    if (rc) fail_msg("eval failed: %s", out);
    assert_non_null(strstr(out, "\"test_mse\""));
    assert_non_null(strstr(out, "\"n\": 200"));
    rc = tu_sh(out, sizeof out, "%s reconstruct %s/run/model.safetensors --data %s --out %s/rec.png --count 20", LATENT_CLI,
            dir, dir, dir);
    if (rc) fail_msg("reconstruct failed: %s", out);
    char png[4200];
    snprintf(png, sizeof png, "%s/rec.png", dir);
    uint8_t *pix;
    int w, h;
    lt_err err = {0};
    assert_int_equal(lt_png_read_gray(png, &pix, &w, &h, &err), 0);
    /* 20 digits: two row pairs of 16 columns, 3x scale, 2-pixel gaps. */
    assert_int_equal(w, 16 * (28 * 3 + 2) + 2);
    assert_int_equal(h, 4 * (28 * 3 + 2) + 2);
    free(pix);
    /* Resuming a finished run to more epochs works; a run in place is not overwritten. */
    rc = tu_sh(out, sizeof out, "%s train --data %s --out %s/run --epochs 2 --batch 32 --val 40", LATENT_CLI, dir, dir);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--resume"));
    rc = tu_sh(out, sizeof out, "%s train --data %s --out %s/run --epochs 3 --resume", LATENT_CLI, dir, dir);
    if (rc) fail_msg("resume failed: %s", out);
    assert_non_null(strstr(out, "epoch 3/3"));
    lt_dataset_free(&ds);
    tu_rmtree(dir);
    free(dir);
}

/* latent pins LIBXSMM (the library) and OpenBLAS (the CLI) to their AVX2
 * kernels (the same bits on AVX2 and AVX-512 machines): a default run gives
 * the same weights as one that asks for those kernels itself, and
 * LATENT_KERNELS is checked. On an AVX-512 CPU a run without the pinning
 * differs, so this fails if latent stops pinning; on a CPU without AVX2
 * nothing is pinned, and the default run must equal a native one. */
static void test_portable_kernels(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), out[8192];
    assert_int_equal(tu_sh(out, sizeof out, "LATENT_KERNELS=fast %s --version", LATENT_CLI), 2);
    assert_non_null(strstr(out, "LATENT_KERNELS"));
    assert_non_null(strstr(out, "'fast'"));
    assert_int_equal(tu_sh(out, sizeof out, "env -u LIBXSMM_TARGET -u LATENT_KERNELS %s --version", LATENT_CLI), 0);
    if (lt_cpu_has_avx2_fma() && !strstr(out, "openblas for the layers")) assert_non_null(strstr(out, "hsw for the layers"));
    lt_dataset ds;
    tu_make_dataset(&ds, 160, 28, 28, 11);
    tu_write_idx_split(dir, "train", &ds);
    const char *pin = lt_cpu_has_avx2_fma() ? "LIBXSMM_TARGET=hsw OPENBLAS_CORETYPE=Haswell" : "";
    int rc = tu_sh(out, sizeof out, "env -u LIBXSMM_TARGET -u OPENBLAS_CORETYPE -u LATENT_KERNELS %s train --data %s "
                   "--out %s/a --epochs 1 --batch 32 --val 32 --threads 2", LATENT_CLI, dir, dir);
    if (rc) fail_msg("default run failed: %s", out);
    rc = tu_sh(out, sizeof out, "env -u LIBXSMM_TARGET -u OPENBLAS_CORETYPE LATENT_KERNELS=native %s %s train --data "
               "%s --out %s/b --epochs 1 --batch 32 --val 32 --threads 2", pin, LATENT_CLI, dir, dir);
    if (rc) fail_msg("pinned native run failed: %s", out);
    assert_int_equal(tu_sh(out, sizeof out, "cmp %s/a/model.safetensors %s/b/model.safetensors", dir, dir), 0);
    lt_dataset_free(&ds);
    tu_rmtree(dir);
    free(dir);
}

/* --model dae: training, its own metrics in eval, triplets in reconstruct;
 * and the flags that do not fit. */
static void test_dae(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), out[8192];
    lt_dataset ds;
    tu_make_dataset(&ds, 200, 28, 28, 4);
    tu_write_idx_split(dir, "train", &ds);
    tu_write_idx_split(dir, "t10k", &ds);
    assert_int_equal(tu_sh(out, sizeof out, "%s train --data %s --out %s/x --noise gaussian:1", LATENT_CLI, dir, dir), 2);
    assert_non_null(strstr(out, "--model dae"));
    assert_int_equal(tu_sh(out, sizeof out, "%s train --data %s --out %s/x --model dae --noise blur:1", LATENT_CLI, dir, dir), 2);
    assert_non_null(strstr(out, "blur"));
    assert_int_equal(tu_sh(out, sizeof out, "%s train --data %s --out %s/x --model vae --noise gaussian:1", LATENT_CLI, dir, dir), 2);
    assert_non_null(strstr(out, "--model dae only"));
    int rc = tu_sh(out, sizeof out, "%s train --data %s --out %s/dae --model dae --noise gaussian:0.5 --epochs 2 --batch 32 --val 40",
                LATENT_CLI, dir, dir);
    if (rc) fail_msg("dae train failed: %s", out);
    assert_non_null(strstr(out, "noise gaussian:0.5"));
    rc = tu_sh(out, sizeof out, "%s eval %s/dae/model.safetensors --data %s --json", LATENT_CLI, dir, dir);
    if (rc) fail_msg("dae eval failed: %s", out);
    const char *keys[] = {"\"test_mse\"", "\"test_psnr\"", "\"noisy_psnr\"", "\"lmmse_psnr\"", "\"noise\": \"gaussian:0.5\""};
    for (int i = 0; i < 5; i++)
        if (!strstr(out, keys[i])) fail_msg("eval --json lacks %s: %s", keys[i], out);
    rc = tu_sh(out, sizeof out, "%s reconstruct %s/dae/model.safetensors --data %s --out %s/tri.png --count 5", LATENT_CLI,
            dir, dir, dir);
    if (rc) fail_msg("dae reconstruct failed: %s", out);
    char png[4200];
    snprintf(png, sizeof png, "%s/tri.png", dir);
    uint8_t *pix;
    int w, h;
    lt_err err = {0};
    assert_int_equal(lt_png_read_gray(png, &pix, &w, &h, &err), 0);
    assert_int_equal(w, 5 * (28 * 3 + 2) + 2);
    assert_int_equal(h, 3 * (28 * 3 + 2) + 2); /* noisy, original, denoised */
    free(pix);
    lt_dataset_free(&ds);
    tu_rmtree(dir);
    free(dir);
}

/* Ctrl-C (SIGINT) and SIGTERM: the run is saved, the exit code is 130 and the
 * message says how to resume; the saved model loads. */
static void test_signal_saves_run(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), out[8192];
    lt_dataset ds;
    tu_make_dataset(&ds, 400, 28, 28, 5);
    tu_write_idx_split(dir, "train", &ds);
    const int sigs[2] = {SIGINT, SIGTERM};
    for (int k = 0; k < 2; k++) {
        char run[4200], log[4200];
        snprintf(run, sizeof run, "%s/run%d", dir, k);
        snprintf(log, sizeof log, "%s/log%d", dir, k);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            FILE *f = freopen(log, "w", stderr);
            (void)f;
            execl(LATENT_CLI, LATENT_CLI, "train", "--data", dir, "--out", run, "--epochs", "100000", "--batch", "16",
                  "--val", "40", "--threads", "1", (char *)NULL);
            _exit(127);
        }
        /* Wait until the first epoch is saved, then interrupt mid-run. */
        char state_path[4300];
        snprintf(state_path, sizeof state_path, "%s/train_state.safetensors", run);
        for (int i = 0; i < 600 && access(state_path, F_OK) != 0; i++) nanosleep(&(struct timespec){0, 50000000}, NULL);
        assert_int_equal(access(state_path, F_OK), 0);
        assert_int_equal(kill(pid, sigs[k]), 0);
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 130);
        FILE *f = fopen(log, "r");
        assert_non_null(f);
        size_t n = fread(out, 1, sizeof out - 1, f);
        out[n] = 0;
        fclose(f);
        assert_non_null(strstr(out, "--resume"));
        char model[4300];
        snprintf(model, sizeof model, "%s/model.safetensors", run);
        lt_model *m = NULL;
        lt_err err = {0};
        assert_int_equal(lt_model_load(&m, model, &err), 0);
        lt_model_free(m);
    }
    lt_dataset_free(&ds);
    tu_rmtree(dir);
    free(dir);
}

/* A PNG that libpng reads, of a plausible size. */
static int tu_png_ok(const char *path)
{
    uint8_t *px = NULL;
    int w = 0, h = 0;
    lt_err err = {0};
    if (lt_png_read_gray(path, &px, &w, &h, &err)) {
        /* Plots are in colour: the gray reader refuses them; check the signature instead. */
        FILE *f = fopen(path, "rb");
        unsigned char sig[8] = {0};
        int ok = f && fread(sig, 1, 8, f) == 8 && !memcmp(sig, "\x89PNG\r\n\x1a\n", 8);
        if (f) fclose(f);
        return ok;
    }
    free(px);
    return w > 0 && h > 0;
}

/* Two tensors of two checkpoints, bit for bit. */
static int same_tensor(const char *a, const char *b, const char *name)
{
    lt_st_file fa, fb;
    lt_err err = {0};
    if (lt_st_read(a, &fa, &err) || lt_st_read(b, &fb, &err)) fail_msg("%s", err.msg);
    const lt_st_tensor *ta = lt_st_find(&fa, name), *tb = lt_st_find(&fb, name);
    assert_non_null(ta);
    assert_non_null(tb);
    int same = ta->nbytes == tb->nbytes && !memcmp(ta->data, tb->data, ta->nbytes);
    lt_st_free(&fa), lt_st_free(&fb);
    return same;
}

/* The classifier fine-tuned from an autoencoder (frozen and not), the CNN and
 * the VAE through train, eval and sample; and the flags that do not fit. */
static void test_other_models(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), out[16384], a[4200], b[4200];
    lt_dataset ds;
    tu_make_dataset(&ds, 200, 28, 28, 4);
    tu_write_idx_split(dir, "train", &ds);
    tu_write_idx_split(dir, "t10k", &ds);
    const char *common = "--epochs 2 --batch 32 --val 40 --threads 2";
    int rc = tu_sh(out, sizeof out, "%s train --data %s --out %s/ae %s", LATENT_CLI, dir, dir, common);
    if (rc) fail_msg("ae: %s", out);
    /* Bad combinations, each named. */
    assert_int_equal(tu_sh(out, sizeof out, "%s train --data %s --out %s/x --model clf --freeze", LATENT_CLI, dir, dir), 2);
    assert_non_null(strstr(out, "--freeze needs --init"));
    assert_int_equal(tu_sh(out, sizeof out, "%s train --data %s --out %s/x --model vae --init %s/ae/model.safetensors", LATENT_CLI, dir, dir, dir), 2);
    assert_non_null(strstr(out, "--init"));
    assert_int_equal(tu_sh(out, sizeof out, "%s train --data %s --out %s/x --model vae --likelihood poisson", LATENT_CLI, dir, dir), 2);
    assert_non_null(strstr(out, "poisson"));
    assert_true(tu_sh(out, sizeof out, "%s train --data %s --out %s/x --model clf --init %s/nothing.safetensors", LATENT_CLI, dir, dir, dir) != 0);
    assert_non_null(strstr(out, "nothing.safetensors"));

    /* Frozen: the encoder's tensors stay exactly the autoencoder's (weight
     * decay included); the head learns. Not frozen: they move. */
    rc = tu_sh(out, sizeof out, "%s train --data %s --out %s/clf_frozen --model clf --init %s/ae/model.safetensors --freeze %s",
            LATENT_CLI, dir, dir, dir, common);
    if (rc) fail_msg("clf frozen: %s", out);
    snprintf(a, sizeof a, "%s/ae/model.safetensors", dir);
    snprintf(b, sizeof b, "%s/clf_frozen/model.safetensors", dir);
    assert_true(same_tensor(a, b, "encoder.0.weight"));
    assert_true(same_tensor(a, b, "encoder.7.bias"));
    rc = tu_sh(out, sizeof out, "%s train --data %s --out %s/clf --model clf --init %s/ae/model.safetensors %s --json", LATENT_CLI,
            dir, dir, dir, common);
    if (rc) fail_msg("clf: %s", out);
    assert_non_null(strstr(out, "\"val_accuracy\""));
    /* A classifier resumes like any run (and keeps its settings). */
    rc = tu_sh(out, sizeof out, "%s train --data %s --out %s/clf --resume --epochs 3", LATENT_CLI, dir, dir);
    if (rc) fail_msg("clf resume: %s", out);
    assert_non_null(strstr(out, "epoch 3/3"));
    assert_non_null(strstr(out, "val acc"));
    rc = tu_sh(out, sizeof out, "%s train --data %s --out %s/clf_frozen --resume --epochs 3", LATENT_CLI, dir, dir);
    if (rc) fail_msg("frozen clf resume: %s", out);
    snprintf(b, sizeof b, "%s/clf_frozen/model.safetensors", dir);
    assert_true(same_tensor(a, b, "encoder.0.weight"));
    snprintf(b, sizeof b, "%s/clf/model.safetensors", dir);
    assert_false(same_tensor(a, b, "encoder.0.weight"));
    rc = tu_sh(out, sizeof out, "%s eval %s --data %s --json --confusion %s/cm.csv", LATENT_CLI, b, dir, dir);
    if (rc) fail_msg("clf eval: %s", out);
    const char *ckeys[] = {"\"test_accuracy\"", "\"test_loss\"", "\"per_class_accuracy\"", "\"confusion\": [["};
    for (int i = 0; i < 4; i++)
        if (!strstr(out, ckeys[i])) fail_msg("clf eval --json lacks %s: %s", ckeys[i], out);
    snprintf(a, sizeof a, "%s/cm.csv", dir);
    FILE *f = fopen(a, "r");
    assert_non_null(f);
    fclose(f);
    rc = tu_sh(out, sizeof out, "%s eval %s --data %s --confusion %s/cm.png", LATENT_CLI, b, dir, dir);
    if (rc) fail_msg("clf eval --confusion png: %s", out);
    snprintf(a, sizeof a, "%s/cm.png", dir);
    assert_true(tu_png_ok(a));
    rc = tu_sh(out, sizeof out, "%s curves %s/clf %s/ae --out %s/curves.svg --log", LATENT_CLI, dir, dir, dir);
    if (rc) fail_msg("curves: %s", out);
    assert_int_equal(tu_sh(out, sizeof out, "%s curves %s --out %s/c.png", LATENT_CLI, dir, dir), 1);
    assert_non_null(strstr(out, "metrics.csv"));
    /* A classifier reconstructs nothing, and a VAE has no confusion matrix. */
    assert_int_equal(tu_sh(out, sizeof out, "%s reconstruct %s --data %s --out %s/r.png", LATENT_CLI, b, dir, dir), 2);

    rc = tu_sh(out, sizeof out, "%s train --data %s --out %s/vae --model vae --latent 2 %s", LATENT_CLI, dir, dir, common);
    if (rc) fail_msg("vae: %s", out);
    assert_non_null(strstr(out, "rec "));
    snprintf(a, sizeof a, "%s/vae/model.safetensors", dir);
    rc = tu_sh(out, sizeof out, "%s eval %s --data %s --json --nll 4", LATENT_CLI, a, dir);
    if (rc) fail_msg("vae eval: %s", out);
    const char *vkeys[] = {"\"test_loss\"", "\"test_rec\"", "\"test_kl\"", "\"test_nll\"", "\"likelihood\": \"gaussian:1\""};
    for (int i = 0; i < 5; i++)
        if (!strstr(out, vkeys[i])) fail_msg("vae eval --json lacks %s: %s", vkeys[i], out);
    assert_int_equal(tu_sh(out, sizeof out, "%s eval %s --data %s --confusion %s/x.csv", LATENT_CLI, a, dir, dir), 2);
    rc = tu_sh(out, sizeof out, "%s sample %s --out %s/s.png --count 10 --manifold %s/m.png --score %s --json", LATENT_CLI, a,
            dir, dir, b);
    if (rc) fail_msg("sample: %s", out);
    assert_non_null(strstr(out, "\"confident\""));
    assert_non_null(strstr(out, "\"class_counts\""));
    snprintf(a, sizeof a, "%s/s.png", dir);
    int w = 0, h = 0;
    uint8_t *px = NULL;
    lt_err perr = {0};
    if (lt_png_read_gray(a, &px, &w, &h, &perr)) fail_msg("%s", perr.msg);
    free(px);
    assert_true(w > 3 * 28 && h > 3 * 28);
    /* sample needs a VAE. */
    assert_int_equal(tu_sh(out, sizeof out, "%s sample %s/ae/model.safetensors --out %s/s2.png", LATENT_CLI, dir, dir), 2);
    assert_non_null(strstr(out, "VAE"));

    rc = tu_sh(out, sizeof out, "%s train --data %s --out %s/vaeb --model vae --likelihood bernoulli %s", LATENT_CLI, dir, dir, common);
    if (rc) fail_msg("vae bernoulli: %s", out);
    rc = tu_sh(out, sizeof out, "%s train --data %s --out %s/vaeb --resume --epochs 3", LATENT_CLI, dir, dir);
    if (rc) fail_msg("vae bernoulli resume: %s", out);
    assert_non_null(strstr(out, "epoch 3/3"));
    lt_dataset_free(&ds);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_help_and_bad_flags), cmocka_unit_test(test_portable_kernels),
                                       cmocka_unit_test(test_train_eval_reconstruct),
                                       cmocka_unit_test(test_dae),
                                       cmocka_unit_test(test_other_models),
                                       cmocka_unit_test(test_signal_saves_run)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
