/* latent eval and latent reconstruct: use a trained checkpoint on the test set. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

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
    if (rc) fprintf(stderr, "latent eval: %s\n", err.msg);
    else if (json) printf("{\"test_loss\": %.10g, \"test_mse\": %.10g, \"n\": %d}\n", mse, mse, ds.n);
    else printf("test MSE %.6f on %d images\n", mse, ds.n);
    lt_dataset_free(&ds);
    lt_model_free(m);
    return rc ? 1 : 0;
}

int cmd_reconstruct(int argc, char **argv)
{
    const char *usage = "Usage: latent reconstruct CHECKPOINT --out FILE.png [--count 16] [--data DIR]\n\n"
                        "Writes a PNG with the first COUNT test digits, each row of inputs above\n"
                        "the row of their reconstructions, scaled up 3x.";
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
    float *x = malloc(sizeof(float) * sz * count), *y = malloc(sizeof(float) * sz * count);
    const int cols = count < 16 ? count : 16, tiles = (count + cols - 1) / cols * 2 * cols;
    /* Zeroed: a short last row pair leaves black tiles after it. */
    float *grid = calloc((size_t)tiles * sz, sizeof(float));
    lt_err err = {0};
    rc = (!x || !y || !grid) ? 1 : 0;
    if (rc) fprintf(stderr, "latent reconstruct: out of memory\n");
    for (int i = 0; !rc && i < count; i++)
        for (size_t k = 0; k < sz; k++) x[i * sz + k] = ds.images[i * sz + k] / 255.0f;
    if (!rc && (rc = lt_model_reconstruct(m, x, count, y, 0, &err))) fprintf(stderr, "latent reconstruct: %s\n", err.msg);
    if (!rc) {
        /* Rows of up to 16 inputs, each followed by the row of their reconstructions. */
        int k = 0;
        for (int r = 0; r < count; r += cols) {
            int n = count - r < cols ? count - r : cols;
            memcpy(grid + k * sz, x + r * sz, sizeof(float) * sz * n);
            k += cols;
            memcpy(grid + k * sz, y + r * sz, sizeof(float) * sz * n);
            k += cols;
        }
        if ((rc = lt_write_image_grid(out, grid, k, ds.h, ds.w, cols, 3, &err)))
            fprintf(stderr, "latent reconstruct: %s\n", err.msg);
        else
            fprintf(stderr, "wrote %s (%d test digits above their reconstructions)\n", out, count);
    }
    free(x);
    free(y);
    free(grid);
    lt_dataset_free(&ds);
    lt_model_free(m);
    return rc ? 1 : 0;
}
