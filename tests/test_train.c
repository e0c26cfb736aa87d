/* Training: determinism across thread counts, exact resume (after whole epochs
 * and after an interruption mid-epoch), divergence detection, and refusal to
 * overwrite a run. Uses a small synthetic dataset the test makes itself. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/core.h"
#include "nn/net.h"
#include "optim/optim.h"
#include "testutil.h"

static lt_dataset ds;

static int setup(void **state)
{
    (void)state;
    tu_make_dataset(&ds, 300, 28, 28, 7);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    lt_dataset_free(&ds);
    return 0;
}

static void base_config(lt_train_config *cfg, const char *dir)
{
    lt_train_config_default(cfg);
    cfg->out_dir = dir;
    cfg->epochs = 2;
    cfg->batch = 40;        /* 250 training images: 7 batches, the last one short */
    cfg->val = 50;
    cfg->dropout = 0.2f;    /* exercises the per-sample dropout streams */
    cfg->threads = 1;
}

static char *path(const char *dir, const char *name)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/%s", dir, name);
    return p;
}

/* Compare two files byte for byte. */
static void assert_same_file(const char *a, const char *b)
{
    void *x, *y;
    size_t nx, ny;
    lt_err err = {0};
    assert_int_equal(lt_read_file(a, &x, &nx, &err), 0);
    assert_int_equal(lt_read_file(b, &y, &ny, &err), 0);
    assert_int_equal(nx, ny);
    if (memcmp(x, y, nx) != 0) fail_msg("%s and %s differ", a, b);
    free(x);
    free(y);
}

/* The file with each line cut after its third field. */
static char *loss_columns(const char *file)
{
    void *data;
    size_t n;
    lt_err err = {0};
    assert_int_equal(lt_read_file(file, &data, &n, &err), 0);
    char *in = data, *out = calloc(n + 1, 1);
    size_t o = 0;
    int field = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\n') field = 0;
        else if (in[i] == ',') field++;
        if (field < 3) out[o++] = in[i];
    }
    free(data);
    return out;
}

static void run(lt_train_config *cfg, int expect)
{
    lt_err err = {0};
    lt_train_result res;
    int rc = lt_train(cfg, &ds, NULL, NULL, &res, &err);
    if (rc != expect) fail_msg("lt_train returned %d, expected %d: %s", rc, expect, err.msg);
}

static void test_threads_bit_identical(void **state)
{
    (void)state;
    char *d1 = tu_mkdtemp(), *d2 = tu_mkdtemp();
    lt_train_config cfg;
    base_config(&cfg, d1);
    run(&cfg, 0);
    base_config(&cfg, d2);
    cfg.threads = 2;
    run(&cfg, 0);
    char *a = path(d1, "model.safetensors"), *b = path(d2, "model.safetensors");
    assert_same_file(a, b);
    free(a), free(b);
    /* Training did something: the weights differ from a fresh model's. */
    lt_model *m, *fresh;
    lt_err err = {0};
    a = path(d1, "model.safetensors");
    assert_int_equal(lt_model_load(&m, a, &err), 0);
    char spec[1024];
    lt_default_spec(spec, sizeof spec, 2);
    assert_int_equal(lt_model_create(&fresh, spec, 1, 28, 28, 0.2f, 1, &err), 0);
    double mse_trained, mse_fresh;
    assert_int_equal(lt_model_eval_mse(m, &ds, 250, 50, 1, &mse_trained, &err), 0);
    assert_int_equal(lt_model_eval_mse(fresh, &ds, 250, 50, 1, &mse_fresh, &err), 0);
    assert_true(mse_trained < mse_fresh);
    lt_model_free(m), lt_model_free(fresh);
    free(a);
    tu_rmtree(d1), tu_rmtree(d2);
    free(d1), free(d2);
}

static void test_resume_exact(void **state)
{
    (void)state;
    char *d1 = tu_mkdtemp(), *d2 = tu_mkdtemp();
    lt_train_config cfg;
    base_config(&cfg, d1);
    run(&cfg, 0);
    base_config(&cfg, d2);
    cfg.epochs = 1;
    run(&cfg, 0);
    base_config(&cfg, d2);
    cfg.resume = 1;
    run(&cfg, 0);
    const char *files[] = {"model.safetensors", "train_state.safetensors", "metrics.csv"};
    for (int i = 0; i < 3; i++) {
        char *a = path(d1, files[i]), *b = path(d2, files[i]);
        if (i == 2) {
            /* metrics.csv holds wall times: compare only epoch,train_loss,val_loss. */
            char *x = loss_columns(a), *y = loss_columns(b);
            assert_string_equal(x, y);
            assert_non_null(strstr(x, "\n2,"));
            free(x), free(y);
        } else if (i == 0) {
            assert_same_file(a, b);
        }
        free(a), free(b);
    }
    tu_rmtree(d1), tu_rmtree(d2);
    free(d1), free(d2);
}

/* A stop request mid-epoch saves the run; resuming it ends bit-identical to
 * an uninterrupted run. */
static volatile int stop_flag;
static int stop_after;

static void stop_progress(void *ctx, const lt_progress *p)
{
    (void)ctx;
    if (!p->epoch_done && p->epoch == 2 && p->batch == stop_after) stop_flag = 1;
}

static void test_interrupt_and_resume(void **state)
{
    (void)state;
    char *d1 = tu_mkdtemp(), *d2 = tu_mkdtemp();
    lt_train_config cfg;
    base_config(&cfg, d1);
    cfg.epochs = 3;
    run(&cfg, 0);

    base_config(&cfg, d2);
    cfg.epochs = 3;
    cfg.stop = &stop_flag;
    stop_flag = 0;
    stop_after = 3;
    lt_err err = {0};
    int rc = lt_train(&cfg, &ds, stop_progress, NULL, NULL, &err);
    assert_int_equal(rc, LT_EINTR);
    assert_non_null(strstr(err.msg, "--resume"));
    stop_flag = 0;
    base_config(&cfg, d2);
    cfg.epochs = 3;
    cfg.resume = 1;
    run(&cfg, 0);
    char *a = path(d1, "model.safetensors"), *b = path(d2, "model.safetensors");
    assert_same_file(a, b);
    free(a), free(b);
    tu_rmtree(d1), tu_rmtree(d2);
    free(d1), free(d2);
}

static void test_divergence_reported(void **state)
{
    (void)state;
    char *d = tu_mkdtemp();
    lt_train_config cfg;
    base_config(&cfg, d);
    cfg.optimizer = LT_OPT_SGD;
    cfg.lr = 1e30;  /* certain to blow up */
    cfg.epochs = 3;
    lt_err err = {0};
    int rc = lt_train(&cfg, &ds, NULL, NULL, NULL, &err);
    assert_int_equal(rc, LT_ENAN);
    assert_non_null(strstr(err.msg, "epoch"));
    assert_non_null(strstr(err.msg, "--lr"));
    tu_rmtree(d);
    free(d);
}

static void test_refuses_existing_run_and_checks_resume(void **state)
{
    (void)state;
    char *d = tu_mkdtemp();
    lt_train_config cfg;
    base_config(&cfg, d);
    cfg.epochs = 1;
    run(&cfg, 0);
    lt_err err = {0};
    assert_int_equal(lt_train(&cfg, &ds, NULL, NULL, NULL, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "--resume"));
    cfg.resume = 1;
    cfg.lr = 0.5;
    cfg.epochs = 2;
    assert_int_equal(lt_train(&cfg, &ds, NULL, NULL, NULL, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "--lr"));
    tu_rmtree(d);
    free(d);
}

/* Resume the 1-epoch run in dir to 2 epochs in a child process that
 * prepare() has set up to fail on writing: lt_train must return LT_EIO with a
 * message naming dir and containing needle, and the checkpoint already there
 * must stay byte-identical. */
static void expect_failed_resume_keeps_checkpoint(const char *dir, int (*prepare)(void), const char *needle)
{
    char *model = path(dir, "model.safetensors");
    void *before, *after;
    size_t nb, na;
    lt_err err = {0};
    assert_int_equal(lt_read_file(model, &before, &nb, &err), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (prepare() != 0) _exit(30);
        lt_train_config cfg;
        base_config(&cfg, dir);
        cfg.epochs = 2;
        cfg.resume = 1;
        lt_err e = {0};
        int rc = lt_train(&cfg, &ds, NULL, NULL, NULL, &e);
        if (rc != LT_EIO) _exit(10);
        if (!strstr(e.msg, dir) || !strstr(e.msg, needle)) _exit(11);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(lt_read_file(model, &after, &na, &err), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(before, after, nb);
    free(before), free(after), free(model);
}

/* The child's write() fails with EFBIG past 4 KiB instead of killing it. */
static int small_file_limit(void)
{
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {4096, 4096};
    return setrlimit(RLIMIT_FSIZE, &lim);
}

/* Root may write anywhere: drop to user nobody. */
static int not_root(void)
{
    return geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0) ? -1 : 0;
}

/* A full disk (here: a file size limit, so every large write fails) stops
 * training with an I/O error naming the file, and the checkpoint of the
 * epoch before is still there and intact. Runs in a child process so the
 * limit does not outlive the test. */
static void test_disk_full_keeps_last_checkpoint(void **state)
{
    (void)state;
    char *d = tu_mkdtemp();
    lt_train_config cfg;
    base_config(&cfg, d);
    cfg.epochs = 1;
    run(&cfg, 0);
    expect_failed_resume_keeps_checkpoint(d, small_file_limit, "");
    /* No temporary files left behind. */
    char cmd[4200], out[64] = {0};
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp", d);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    if (!fgets(out, sizeof out, p)) out[0] = 0;
    pclose(p);
    assert_int_equal(atoi(out), 0);
    tu_rmtree(d);
    free(d);
}

/* --out may name a directory several levels below an existing one; a path
 * through a file is refused with a message naming it. */
static void test_out_dir_created_with_parents(void **state)
{
    (void)state;
    char *d = tu_mkdtemp(), nested[1024], bad[2048];
    snprintf(nested, sizeof nested, "%s/a/b/c", d);
    lt_train_config cfg;
    base_config(&cfg, nested);
    cfg.epochs = 1;
    run(&cfg, 0);
    char *model = path(nested, "model.safetensors");
    assert_int_equal(access(model, F_OK), 0);
    snprintf(bad, sizeof bad, "%s/model.safetensors/x", nested);
    base_config(&cfg, bad);
    lt_err err = {0};
    assert_int_equal(lt_train(&cfg, &ds, NULL, NULL, NULL, &err), LT_EIO);
    assert_non_null(strstr(err.msg, "not a directory"));
    free(model);
    tu_rmtree(d);
    free(d);
}

/* A denoising autoencoder: the same weights for 1 and 2 threads, the same
 * after 1 + resume + 1 epochs as after 2, and it learns to denoise. */
static void test_dae_deterministic_and_resumable(void **state)
{
    (void)state;
    char *d1 = tu_mkdtemp(), *d2 = tu_mkdtemp(), *d3 = tu_mkdtemp();
    lt_err err = {0};
    lt_train_config cfg;
    base_config(&cfg, d1);
    assert_int_equal(lt_noise_parse("gaussian:0.5", &cfg.noise, &err), 0);
    run(&cfg, 0);
    base_config(&cfg, d2);
    assert_int_equal(lt_noise_parse("gaussian:0.5", &cfg.noise, &err), 0);
    cfg.threads = 2;
    run(&cfg, 0);
    base_config(&cfg, d3);
    assert_int_equal(lt_noise_parse("gaussian:0.5", &cfg.noise, &err), 0);
    cfg.epochs = 1;
    run(&cfg, 0);
    base_config(&cfg, d3);
    cfg.resume = 1;
    /* The stored noise is kept; a different one is refused, naming the flag. */
    assert_int_equal(lt_noise_parse("mask:0.5", &cfg.noise, &err), 0);
    assert_int_equal(lt_train(&cfg, &ds, NULL, NULL, NULL, &err), LT_EINVAL);
    assert_non_null(strstr(err.msg, "--noise"));
    assert_int_equal(lt_noise_parse("gaussian:0.5", &cfg.noise, &err), 0);
    run(&cfg, 0);
    char *a = path(d1, "model.safetensors"), *b = path(d2, "model.safetensors"), *c = path(d3, "model.safetensors");
    assert_same_file(a, b);
    assert_same_file(a, c);
    lt_model *m;
    assert_int_equal(lt_model_load(&m, a, &err), 0);
    assert_int_equal(lt_model_noise(m)->kind, LT_NOISE_GAUSSIAN);
    double denoised, noisy, lmmse;
    assert_int_equal(lt_model_eval_mse(m, &ds, 250, 50, 1, &denoised, &err), 0);
    lt_dataset val = ds;
    val.images = ds.images + (size_t)250 * 28 * 28;
    val.labels = ds.labels + 250;
    val.n = 50;
    assert_int_equal(lt_denoise_baselines(&ds, &val, lt_model_noise(m), 1, &noisy, &lmmse, &err), 0);
    print_message("DAE val MSE %.4f, noisy %.4f, LMMSE %.4f\n", denoised, noisy, lmmse);
    assert_true(denoised < noisy);
    lt_model_free(m);
    free(a), free(b), free(c);
    tu_rmtree(d1), tu_rmtree(d2), tu_rmtree(d3);
    free(d1), free(d2), free(d3);
}

/* An output directory that cannot be written: a clear error naming it, and
 * the checkpoint already there is untouched. As root (CI) the child drops to
 * user nobody first, since root may write anywhere. */
static void test_unwritable_out_dir(void **state)
{
    (void)state;
    char *d = tu_mkdtemp(), run_dir[1024];
    snprintf(run_dir, sizeof run_dir, "%s/run", d);
    lt_train_config cfg;
    base_config(&cfg, run_dir);
    cfg.epochs = 1;
    run(&cfg, 0);
    assert_int_equal(chmod(d, 0755), 0);
    assert_int_equal(chmod(run_dir, 0555), 0);
    expect_failed_resume_keeps_checkpoint(run_dir, not_root, "ermission");
    assert_int_equal(chmod(run_dir, 0755), 0);
    tu_rmtree(d);
    free(d);
}

/* The library flushes subnormals to zero while it computes (the optimizer's
 * update here) and leaves the caller's floating-point mode as it found it. */
static void test_flush_subnormals(void **state)
{
    (void)state;
#if defined(__x86_64__) || defined(__SSE2__)
    lt_optim o;
    lt_err err = {0};
    assert_int_equal(lt_optim_init(&o, LT_OPT_SGD, 1.0, 0.0, 0.0, 2, &err), 0);
    /* p - lr * g = 2e-38 - 1.99e-38 = 1e-40, a subnormal. */
    volatile float p0 = 2e-38f, g0 = 1.99e-38f;
    float p[2] = {p0, 1.0f}, g[2] = {g0, 0.5f};
    volatile float here = p0 - g0; /* the caller's mode keeps subnormals */
    assert_true(here != 0.0f && fabsf(here) < 1.17549435e-38f);
    const unsigned before = _mm_getcsr();
    lt_optim_step(&o, p, g, 2);
    assert_true(p[0] == 0.0f);
    assert_true(p[1] == 0.5f);
    /* The control bits (FTZ, DAZ, rounding, masks) are the caller's again; the
     * status flags may be cleared (LLVM's OpenMP runtime resets them when a
     * parallel region ends). */
    assert_int_equal(_mm_getcsr() & ~0x3fu, before & ~0x3fu);
    lt_optim_free(&o);
#endif
}

/* A batch left to lt_net_loss (lt_batch_defer, as training does: each chunk's
 * thread prepares its own samples) gives the same input, target, labels, loss
 * and gradient, bit for bit, as one prepared up front, for the input paths
 * that differ by model: a denoiser's noise, a Bernoulli VAE's binarized input,
 * a classifier's labels. 70 shuffled samples: two whole chunks and a short
 * one, on two threads. The deferred batch is used up by the loss. */
static void test_deferred_batch_same_bits(void **state)
{
    (void)state;
    const int n = 70;
    int idx[70];
    for (int i = 0; i < n; i++) idx[i] = (i * 37 + 11) % ds.n;
    for (int kind = 0; kind < 3; kind++) {
        char ae[1024], spec[1024];
        lt_err err = {0};
        lt_model *m;
        assert_int_equal(lt_default_spec(ae, sizeof ae, 3), 0);
        if (kind == 0) strcpy(spec, ae);
        else if (kind == 1) assert_int_equal(lt_default_vae_spec(spec, sizeof spec, 3), 0);
        else assert_int_equal(lt_classifier_spec(spec, sizeof spec, ae, 10, &err), 0);
        assert_int_equal(lt_model_create(&m, spec, 1, 28, 28, 0.1f, 5, &err), 0);
        if (kind == 0) assert_int_equal(lt_noise_parse("gaussian:0.5", &m->noise, &err), 0);
        if (kind == 1) {
            lt_likelihood lik;
            assert_int_equal(lt_likelihood_parse("bernoulli", &lik, &err), 0);
            assert_int_equal(lt_model_set_likelihood(m, &lik, &err), 0);
        }
        lt_workspace *ws;
        assert_int_equal(lt_workspace_create(&ws, m, n, 1, &err), 0);
        const size_t isz = 784, P = m->n_params;
        float *x = malloc(sizeof(float) * n * isz), *t = malloc(sizeof(float) * n * isz), *g = malloc(sizeof(float) * P);
        uint8_t lab[70];
        lt_batch_prepare(m, ws, &ds, idx, 0, n, 9, 4, 100, 2);
        memcpy(x, ws->act[0], sizeof(float) * n * isz);
        memcpy(t, ws->target, sizeof(float) * n * isz);
        memcpy(lab, ws->labels, (size_t)n);
        lt_batch_loss a = lt_net_loss(m, ws, n, 3, 7, 1, 2);
        memcpy(g, ws->grad, sizeof(float) * P);
        /* Clobber what the deferred batch must rebuild. */
        memset(ws->act[0], 0xff, sizeof(float) * n * isz);
        memset(ws->target, 0xff, sizeof(float) * n * isz);
        memset(ws->labels, 0xff, (size_t)n);
        memset(ws->grad, 0, sizeof(float) * P);
        lt_batch_defer(ws, &ds, idx, 0, 9, 4, 100);
        lt_batch_loss b = lt_net_loss(m, ws, n, 3, 7, 1, 2);
        assert_int_equal(ws->batch.pending, 0);
        assert_memory_equal(ws->act[0], x, sizeof(float) * n * isz);
        if (kind != 2) assert_memory_equal(ws->target, t, sizeof(float) * n * isz);
        assert_memory_equal(ws->labels, lab, (size_t)n);
        assert_memory_equal(&b.loss, &a.loss, sizeof a.loss);
        assert_int_equal(b.correct, a.correct);
        assert_memory_equal(ws->grad, g, sizeof(float) * P);
        /* The paths did something: noise moved the input off the target,
         * binarizing left only 0 and 1, and the gradient is not zero. */
        if (kind == 0) assert_memory_not_equal(x, t, sizeof(float) * n * isz);
        if (kind == 1)
            for (size_t i = 0; i < n * isz; i++) assert_true(x[i] == 0.0f || x[i] == 1.0f);
        double gn = 0;
        for (size_t j = 0; j < P; j++) gn += (double)g[j] * g[j];
        assert_true(gn > 0);
        free(x), free(t), free(g);
        lt_workspace_free(ws);
        lt_model_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flush_subnormals),
        cmocka_unit_test(test_threads_bit_identical),
        cmocka_unit_test(test_resume_exact),
        cmocka_unit_test(test_interrupt_and_resume),
        cmocka_unit_test(test_divergence_reported),
        cmocka_unit_test(test_refuses_existing_run_and_checks_resume),
        cmocka_unit_test(test_disk_full_keeps_last_checkpoint),
        cmocka_unit_test(test_out_dir_created_with_parents),
        cmocka_unit_test(test_unwritable_out_dir),
        cmocka_unit_test(test_dae_deterministic_and_resumable),
        cmocka_unit_test(test_deferred_batch_same_bits),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    tu_release_threads();
    return rc;
}
