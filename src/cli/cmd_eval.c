/* latent eval and latent reconstruct: use a trained checkpoint on the test set. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"

/* Peak signal-to-noise ratio of images in [0, 1]: 10 log10(1 / MSE). */
static double psnr(double mse) { return 10.0 * log10(1.0 / mse); }

/* The checkpoint and the test split every command here works on. */
static int load(const char *cmd, const char *path, const char *data, lt_model **m, lt_dataset *ds)
{
    lt_err err = {0};
    if (lt_model_load(m, path, &err)) {
        fprintf(stderr, "latent %s: %s\n", cmd, err.msg);
        return 1;
    }
    if (cli_load_split(data, "test", ds)) {
        lt_model_free(*m);
        return 1;
    }
    return 0;
}

static int eval_classifier(lt_model *m, const lt_dataset *ds, int threads, int json, const char *confusion)
{
    const int C = lt_model_classes(m);
    int64_t *cm = calloc((size_t)C * C, sizeof(int64_t));
    lt_eval_result r;
    lt_err err = {0};
    if (!cm) {
        fprintf(stderr, "latent eval: out of memory\n");
        return 1;
    }
    int rc = lt_model_eval(m, ds, 0, ds->n, threads, &r, cm, &err);
    if (rc) {
        fprintf(stderr, "latent eval: %s\n", err.msg);
        free(cm);
        return 1;
    }
    double *per = malloc(sizeof(double) * (size_t)C);
    for (int i = 0; per && i < C; i++) {
        int64_t row = 0;
        for (int j = 0; j < C; j++) row += cm[(size_t)i * C + j];
        per[i] = row ? (double)cm[(size_t)i * C + i] / (double)row : NAN;
    }
    if (!per) rc = 1;
    const char *ext = confusion ? strrchr(confusion, '.') : NULL;
    if (!rc && ext && (!strcasecmp(ext, ".png") || !strcasecmp(ext, ".svg"))) {
        double *v = malloc(sizeof(double) * (size_t)C * C);
        if (!v) rc = 1;
        for (int i = 0; !rc && i < C * C; i++) v[i] = (double)cm[i];
        char title[128];
        snprintf(title, sizeof title, "Confusion matrix: test accuracy %.2f%% (%d images)", 100.0 * r.accuracy, ds->n);
        if (!rc && (rc = lt_plot_heatmap(confusion, title, "predicted", "true label", NULL, NULL, v, C, C, 1, &err) ? 1 : 0))
            fprintf(stderr, "latent eval: --confusion: %s\n", err.msg);
        free(v);
    } else if (!rc && confusion) {
        /* A table a spreadsheet opens: rows are true labels, columns predictions. */
        size_t cap = 64 + (size_t)C * C * 12, used = 0;
        char *csv = malloc(cap);
        if (!csv) rc = 1;
        for (int j = -1; !rc && j < C; j++) used += (size_t)snprintf(csv + used, cap - used, j < 0 ? "true\\predicted" : ",%d", j);
        for (int i = 0; !rc && i < C; i++) {
            used += (size_t)snprintf(csv + used, cap - used, "\n%d", i);
            for (int j = 0; j < C; j++) used += (size_t)snprintf(csv + used, cap - used, ",%lld", (long long)cm[(size_t)i * C + j]);
        }
        if (!rc) used += (size_t)snprintf(csv + used, cap - used, "\n");
        if (!rc && (rc = lt_write_file_atomic(confusion, csv, used, &err))) fprintf(stderr, "latent eval: %s\n", err.msg);
        free(csv);
    }
    if (!rc && json) {
        printf("{\"test_accuracy\": %.10g, \"test_loss\": %.10g, \"per_class_accuracy\": [", r.accuracy, r.loss);
        for (int i = 0; i < C; i++) printf(isfinite(per[i]) ? "%s%.6g" : "%snull", i ? ", " : "", per[i]);
        printf("], \"confusion\": [");
        for (int i = 0; i < C; i++) {
            printf("%s[", i ? ", " : "");
            for (int j = 0; j < C; j++) printf("%s%lld", j ? ", " : "", (long long)cm[(size_t)i * C + j]);
            printf("]");
        }
        printf("], \"n\": %d}\n", ds->n);
    } else if (!rc) {
        printf("test accuracy %.2f%% (%d images), loss %.5f\n\nconfusion matrix (rows: true label, columns: prediction)\n      ",
               100.0 * r.accuracy, ds->n, r.loss);
        for (int j = 0; j < C; j++) printf("%6d", j);
        printf("   accuracy\n");
        for (int i = 0; i < C; i++) {
            printf("%6d", i);
            for (int j = 0; j < C; j++) printf("%6lld", (long long)cm[(size_t)i * C + j]);
            printf("   %6.2f%%\n", 100.0 * per[i]);
        }
    }
    free(per);
    free(cm);
    return rc;
}

static int eval_vae(lt_model *m, const lt_dataset *ds, int threads, int json, int nll_k)
{
    lt_eval_result r;
    lt_err err = {0};
    double nll = NAN;
    char lik[64];
    lt_likelihood_format(lt_model_likelihood(m), lik, sizeof lik);
    if (lt_model_eval(m, ds, 0, ds->n, threads, &r, NULL, &err) ||
        (nll_k && lt_vae_nll(m, ds, 0, ds->n, nll_k, LT_EVAL_NOISE_SEED, threads, &nll, &err))) {
        fprintf(stderr, "latent eval: %s\n", err.msg);
        return 1;
    }
    if (json) {
        printf("{\"test_loss\": %.10g, \"test_rec\": %.10g, \"test_kl\": %.10g, \"test_mse\": %.10g, ", r.loss, r.rec,
               r.kl, r.mse);
        if (nll_k) printf("\"test_nll\": %.10g, \"nll_samples\": %d, ", nll, nll_k);
        printf("\"likelihood\": \"%s\", \"n\": %d}\n", lik, ds->n);
    } else {
        printf("test loss %.4f per image = reconstruction %.4f + KL %.4f (likelihood %s, %d images)\n", r.loss, r.rec,
               r.kl, lik, ds->n);
        printf("MSE of the decoded posterior mean %.6f\n", r.mse);
        if (nll_k) printf("negative log-likelihood %.3f nats (importance sampling, %d samples)\n", nll, nll_k);
    }
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    const char *usage = "Usage: latent eval CHECKPOINT [--data DIR] [--threads N] [--json]\n\n"
                        "Scores CHECKPOINT on the test split with its own metrics: an autoencoder's\n"
                        "mean squared error (a denoising one's PSNR beside the noisy input's and the\n"
                        "best linear denoiser's); a classifier's accuracy, loss, per-class accuracy\n"
                        "and confusion matrix; a VAE's loss with its reconstruction and KL parts\n"
                        "(and, with --nll K, the importance-sampled negative log-likelihood).";
    const char *data = NULL, *ckpt = NULL, *confusion = NULL;
    int json = 0, threads = 0, np = 0, nll_k = 0;
    cli_opt opts[] = {
        {"--data", OPT_STRING, &data, "directory with IDX files (default: the MNIST cache)", 0, 0, 0},
        {"--threads", OPT_INT, &threads, "threads (default: all cores)", 1, 1024, 0},
        {"--json", OPT_FLAG, &json, "print the scores as one JSON object on stdout", 0, 0, 0},
        {"--confusion", OPT_STRING, &confusion, "classifier: write the confusion matrix to FILE (.csv table, .png or .svg plot)", 0, 0, 0},
        {"--nll", OPT_INT, &nll_k, "vae: importance-sampled NLL with K samples per image (e.g. 100)", 1, 100000, 0},
    };
    int rc = cli_parse("eval", usage, argc, argv, opts, 5, &ckpt, 1, &np);
    if (rc) return rc == 1 ? 0 : rc;
    if (!np) {
        fprintf(stderr, "latent eval: a CHECKPOINT (model.safetensors) is required\n");
        return EXIT_USAGE;
    }
    lt_model *m;
    lt_dataset ds = {0};
    if (load("eval", ckpt, data, &m, &ds)) return 1;
    if (lt_model_get_kind(m) != LT_MODEL_CLF && confusion) {
        fprintf(stderr, "latent eval: --confusion applies to classifiers only\n");
        rc = EXIT_USAGE;
    } else if (lt_model_get_kind(m) != LT_MODEL_VAE && nll_k) {
        fprintf(stderr, "latent eval: --nll applies to variational autoencoders only\n");
        rc = EXIT_USAGE;
    } else if (lt_model_get_kind(m) == LT_MODEL_CLF) {
        rc = eval_classifier(m, &ds, threads, json, confusion);
    } else if (lt_model_get_kind(m) == LT_MODEL_VAE) {
        rc = eval_vae(m, &ds, threads, json, nll_k);
    }
    if (rc || lt_model_get_kind(m) != LT_MODEL_AE) {
        lt_dataset_free(&ds);
        lt_model_free(m);
        return rc;
    }
    double mse = NAN;
    lt_err err = {0};
    rc = lt_model_eval_mse(m, &ds, 0, ds.n, threads, &mse, &err);
    const lt_noise *noise = lt_model_noise(m);
    if (rc) {
        fprintf(stderr, "latent eval: %s\n", err.msg);
    } else if (noise->kind != LT_NOISE_NONE) {
        /* A denoising autoencoder: PSNR, beside the noisy input's and the best linear denoiser's. */
        double noisy = NAN, lmmse = NAN;
        lt_dataset train = {0};
        char ntext[64];
        lt_noise_format(noise, ntext, sizeof ntext);
        if ((rc = cli_load_split(data, "train", &train)) == 0 &&
            (rc = lt_denoise_baselines(&train, &ds, noise, threads, &noisy, &lmmse, &err)))
            fprintf(stderr, "latent eval: %s\n", err.msg);
        lt_dataset_free(&train);
        if (!rc && json) {
            printf("{\"test_loss\": %.10g, \"test_mse\": %.10g, \"test_psnr\": %.6g, \"noisy_mse\": %.10g, "
                   "\"noisy_psnr\": %.6g, ", mse, mse, psnr(mse), noisy, psnr(noisy));
            if (lmmse == lmmse) printf("\"lmmse_mse\": %.10g, \"lmmse_psnr\": %.6g, ", lmmse, psnr(lmmse));
            else printf("\"lmmse_mse\": null, \"lmmse_psnr\": null, ");
            printf("\"noise\": \"%s\", \"n\": %d}\n", ntext, ds.n);
        } else if (!rc) {
            printf("denoising (%s) on %d test images:\n", ntext, ds.n);
            printf("  model          MSE %.6f  PSNR %.2f dB\n", mse, psnr(mse));
            printf("  noisy input    MSE %.6f  PSNR %.2f dB\n", noisy, psnr(noisy));
            if (lmmse == lmmse) printf("  linear (LMMSE) MSE %.6f  PSNR %.2f dB\n", lmmse, psnr(lmmse));
            else printf("  linear (LMMSE) n/a: it is the linear optimum only for unclipped Gaussian noise\n");
        }
    } else if (json) {
        printf("{\"test_loss\": %.10g, \"test_mse\": %.10g, \"n\": %d}\n", mse, mse, ds.n);
    } else {
        printf("test MSE %.6f on %d images\n", mse, ds.n);
    }
    lt_dataset_free(&ds);
    lt_model_free(m);
    return rc ? 1 : 0;
}

int cmd_reconstruct(int argc, char **argv)
{
    const char *usage = "Usage: latent reconstruct CHECKPOINT --out FILE.png [--count 16] [--data DIR]\n\n"
                        "Writes a PNG with the first COUNT test digits, each row of inputs above\n"
                        "the row of their reconstructions, scaled up 3x. For a denoising autoencoder\n"
                        "each group has three rows: noisy input, original, denoised.";
    const char *data = NULL, *ckpt = NULL, *out = NULL;
    int count = 16, np = 0;
    cli_opt opts[] = {
        {"--out", OPT_STRING, &out, "PNG file to write (required)", 0, 0, 0},
        {"--count", OPT_INT, &count, "number of digits (default 16)", 1, 1000, 0},
        {"--data", OPT_STRING, &data, "directory with IDX files (default: the MNIST cache)", 0, 0, 0},
    };
    int rc = cli_parse("reconstruct", usage, argc, argv, opts, 3, &ckpt, 1, &np);
    if (rc) return rc == 1 ? 0 : rc;
    if (!np || !out) {
        fprintf(stderr, "latent reconstruct: %s is required\n", np ? "--out FILE.png" : "a CHECKPOINT");
        return EXIT_USAGE;
    }
    lt_model *m;
    lt_dataset ds = {0};
    if (load("reconstruct", ckpt, data, &m, &ds)) return 1;
    if (count > ds.n) count = ds.n;
    const size_t sz = (size_t)ds.h * ds.w;
    /* A denoising autoencoder shows triplets: noisy input, original, denoised,
     * with the same noisy images `latent eval` scores. */
    const lt_noise *noise = lt_model_noise(m);
    const int rows = noise->kind != LT_NOISE_NONE ? 3 : 2;
    float *clean = malloc(sizeof(float) * sz * count), *x = malloc(sizeof(float) * sz * count);
    float *y = malloc(sizeof(float) * sz * count);
    const int cols = count < 16 ? count : 16, tiles = (count + cols - 1) / cols * rows * cols;
    /* Zeroed: a short last group of rows leaves black tiles after it. */
    float *grid = calloc((size_t)tiles * sz, sizeof(float));
    lt_err err = {0};
    rc = (!clean || !x || !y || !grid) ? 1 : 0;
    if (rc) fprintf(stderr, "latent reconstruct: out of memory\n");
    /* A Bernoulli VAE models binarized images: show it what it was trained on. */
    const int binary = lt_model_get_kind(m) == LT_MODEL_VAE && lt_model_likelihood(m)->bernoulli;
    if (!rc && lt_model_get_kind(m) == LT_MODEL_CLF) {
        fprintf(stderr, "latent reconstruct: %s is a classifier: it does not reconstruct images\n", ckpt);
        rc = EXIT_USAGE;
    }
    for (int i = 0; !rc && i < count; i++)
        for (size_t k = 0; k < sz; k++) {
            float v = ds.images[i * sz + k] / 255.0f;
            clean[i * sz + k] = binary ? (v > 0.5f ? 1.0f : 0.0f) : v;
        }
    if (!rc) {
        memcpy(x, clean, sizeof(float) * sz * count);
        lt_noise_apply(noise, x, count, sz, LT_EVAL_NOISE_SEED, ~0ull, 0);
    }
    if (!rc && (rc = lt_model_reconstruct(m, x, count, y, 0, &err))) fprintf(stderr, "latent reconstruct: %s\n", err.msg);
    if (!rc) {
        /* Groups of up to 16 columns: (noisy,) original and reconstruction rows. */
        const float *row_src[3] = {x, clean, y};
        const int first_row = rows == 3 ? 0 : 1;
        int k = 0;
        for (int r = 0; r < count; r += cols) {
            int n = count - r < cols ? count - r : cols;
            for (int q = first_row; q < 3; q++, k += cols) memcpy(grid + k * sz, row_src[q] + r * sz, sizeof(float) * sz * n);
        }
        if ((rc = lt_write_image_grid(out, grid, k, ds.h, ds.w, cols, 3, &err)))
            fprintf(stderr, "latent reconstruct: %s\n", err.msg);
        else if (rows == 3)
            fprintf(stderr, "wrote %s (%d test digits: noisy input, original, denoised)\n", out, count);
        else
            fprintf(stderr, "wrote %s (%d test digits above their reconstructions)\n", out, count);
    }
    free(clean);
    free(x);
    free(y);
    free(grid);
    lt_dataset_free(&ds);
    lt_model_free(m);
    return rc == EXIT_USAGE ? rc : rc ? 1 : 0;
}
