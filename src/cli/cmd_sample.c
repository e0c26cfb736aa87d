/* latent sample: new digits from a VAE's prior, optionally scored by a classifier. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char *sample_usage =
    "Usage: latent sample CHECKPOINT --out FILE.png [--count 64] [--seed 1] [--score CLASSIFIER] [--json]\n"
    "\n"
    "Draws --count codes from the VAE's prior N(0, I), decodes them and writes them\n"
    "as a grid. With a 2-D latent space, --manifold FILE.png also decodes a regular\n"
    "grid over [-3, 3]^2 (the latent manifold). --score scores the samples with a\n"
    "classifier checkpoint (e.g. latent train --model cnn): the share it classifies\n"
    "with confidence above 0.9 and how evenly they spread over the classes.";

static int write_grid(const char *path, const float *img, int n, int h, int w, int cols)
{
    lt_err err = {0};
    if (lt_write_image_grid(path, img, n, h, w, cols, 2, &err)) {
        fprintf(stderr, "latent sample: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int cmd_sample(int argc, char **argv)
{
    const char *ckpt = NULL, *out = NULL, *manifold = NULL, *scorer = NULL;
    int count = 64, threads = 0, json = 0, np = 0;
    uint64_t seed = 1;
    cli_opt opts[] = {
        {"--out", OPT_STRING, &out, "PNG file for the samples (required)", 0, 0, 0},
        {"--count", OPT_INT, &count, "number of samples (default 64)", 1, 100000, 0},
        {"--seed", OPT_U64, &seed, "random seed (default 1)", 0, 9.2e18, 0},
        {"--manifold", OPT_STRING, &manifold, "2-D latent only: PNG of the decoded 20x20 grid over [-3,3]^2", 0, 0, 0},
        {"--score", OPT_STRING, &scorer, "classifier checkpoint that scores the samples", 0, 0, 0},
        {"--threads", OPT_INT, &threads, "threads (default: all cores)", 1, 1024, 0},
        {"--json", OPT_FLAG, &json, "print the result as one JSON object on stdout", 0, 0, 0},
    };
    const int nopts = (int)(sizeof opts / sizeof opts[0]);
    int rc = cli_parse("sample", sample_usage, argc, argv, opts, nopts, &ckpt, 1, &np);
    if (rc) return rc == 1 ? 0 : rc;
    if (!np || !out) {
        fprintf(stderr, "latent sample: %s is required\n", np ? "--out FILE.png" : "a CHECKPOINT (a VAE's model.safetensors)");
        return EXIT_USAGE;
    }
    lt_err err = {0};
    lt_model *m = NULL, *clf = NULL;
    if (lt_model_load(&m, ckpt, &err)) {
        fprintf(stderr, "latent sample: %s\n", err.msg);
        return 1;
    }
    rc = 0;
    if (lt_model_get_kind(m) != LT_MODEL_VAE) {
        fprintf(stderr, "latent sample: %s is a '%s' model; sampling from a prior needs a VAE (latent train --model vae)\n",
                ckpt, lt_model_kind_name(m));
        rc = EXIT_USAGE;
    } else if (manifold && lt_model_latent_dim(m) != 2) {
        fprintf(stderr, "latent sample: --manifold needs a 2-D latent space; this VAE has k=%d\n", lt_model_latent_dim(m));
        rc = EXIT_USAGE;
    }
    if (!rc && scorer && lt_model_load(&clf, scorer, &err)) {
        fprintf(stderr, "latent sample: --score: %s\n", err.msg);
        rc = 1;
    }
    if (!rc && clf && lt_model_get_kind(clf) != LT_MODEL_CLF) {
        fprintf(stderr, "latent sample: --score %s is not a classifier (train one with latent train --model cnn)\n", scorer);
        rc = EXIT_USAGE;
    }
    int c = 1, h = 1, w = 1;
    float *img = NULL;
    if (!rc) {
        lt_model_input_shape(m, &c, &h, &w);
        if (c != 1) {
            fprintf(stderr, "latent sample: the model makes %d-channel images; grids show one channel\n", c);
            rc = EXIT_USAGE;
        }
    }
    if (!rc) {
        img = malloc(sizeof(float) * (size_t)h * w * (size_t)count);
        if (!img) rc = 1, fprintf(stderr, "latent sample: out of memory\n");
    }
    if (!rc && (rc = lt_vae_sample(m, count, seed, img, threads, &err) ? 1 : 0)) fprintf(stderr, "latent sample: %s\n", err.msg);
    int cols = (int)ceil(sqrt((double)count));
    if (!rc) rc = write_grid(out, img, count, h, w, cols);
    double confident = NAN, spread = NAN;
    int counts[256] = {0};
    if (!rc && clf && lt_generative_score(clf, img, count, threads, &confident, &spread, counts, &err)) {
        fprintf(stderr, "latent sample: --score: %s\n", err.msg);
        rc = 1;
    }
    if (!rc && manifold) {
        const int g = 20;
        float *z = malloc(sizeof(float) * 2 * g * g), *grid = malloc(sizeof(float) * (size_t)h * w * g * g);
        if (!z || !grid) rc = 1;
        for (int i = 0; !rc && i < g; i++)
            for (int j = 0; j < g; j++) {
                /* Rows go down the second coordinate, as on a plot's y axis. */
                z[2 * (i * g + j)] = -3.0f + 6.0f * j / (g - 1);
                z[2 * (i * g + j) + 1] = 3.0f - 6.0f * i / (g - 1);
            }
        if (!rc && lt_model_decode(m, z, g * g, grid, threads, &err)) fprintf(stderr, "latent sample: %s\n", err.msg), rc = 1;
        if (!rc) rc = write_grid(manifold, grid, g * g, h, w, g);
        free(z), free(grid);
    }
    if (!rc) {
        fprintf(stderr, "wrote %s (%d samples from the prior, seed %llu)%s%s\n", out, count, (unsigned long long)seed,
                manifold ? " and " : "", manifold ? manifold : "");
        if (json) {
            printf("{\"samples\": %d, \"seed\": %llu, \"out\": \"%s\"", count, (unsigned long long)seed, out);
            if (clf) {
                printf(", \"confident\": %.6g, \"spread\": %.6g, \"class_counts\": [", confident, spread);
                for (int c = 0; c < lt_model_classes(clf); c++) printf("%s%d", c ? ", " : "", counts[c]);
                printf("]");
            }
            printf("}\n");
        } else if (clf) {
            printf("generative score by %s: %.1f%% of %d samples classified with confidence > 0.9; class spread %.3f "
                   "(1 = all classes equally often)\nclass counts:", scorer, 100 * confident, count, spread);
            for (int c = 0; c < lt_model_classes(clf); c++) printf(" %d:%d", c, counts[c]);
            printf("\n");
        }
    }
    free(img);
    lt_model_free(clf);
    lt_model_free(m);
    return rc;
}
