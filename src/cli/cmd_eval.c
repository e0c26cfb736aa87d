/* latent eval and latent reconstruct: use a trained checkpoint on the test set. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int cmd_eval(int argc, char **argv)
{
    const char *usage = "Usage: latent eval CHECKPOINT [--data DIR] [--threads N] [--json]\n\n"
                        "Mean squared reconstruction error of CHECKPOINT on the test split.";
    const char *data = NULL, *ckpt = NULL;
    int json = 0, threads = 0, np = 0;
    cli_opt opts[] = {
        {"--data", OPT_STRING, &data, "directory with IDX files (default: the MNIST cache)", 0, 0, 0},
        {"--threads", OPT_INT, &threads, "threads (default: all cores)", 1, 1024, 0},
        {"--json", OPT_FLAG, &json, "print {\"test_loss\", \"test_mse\", \"n\"} as JSON on stdout", 0, 0, 0},
    };
    int rc = cli_parse("eval", usage, argc, argv, opts, 3, &ckpt, 1, &np);
    if (rc) return rc == 1 ? 0 : rc;
    if (!np) {
        fprintf(stderr, "latent eval: a CHECKPOINT (model.safetensors) is required\n");
        return EXIT_USAGE;
    }
    lt_model *m;
    lt_dataset ds = {0};
    if (load("eval", ckpt, data, &m, &ds)) return 1;
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
    for (int i = 0; !rc && i < count; i++)
        for (size_t k = 0; k < sz; k++) clean[i * sz + k] = ds.images[i * sz + k] / 255.0f;
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
    return rc ? 1 : 0;
}
