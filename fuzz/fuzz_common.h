/* Shared helpers for the libFuzzer harnesses in fuzz/ (see fuzz/CMakeLists.txt
 * and scripts/fuzz). Header-only: each harness is one translation unit.
 *
 * Harnesses never print, free everything they allocate (LeakSanitizer reports
 * the rest) and always return 0; a bug shows up as a sanitizer report, an
 * abort, or a __builtin_trap() on a broken invariant. */
#ifndef LATENT_FUZZ_COMMON_H
#define LATENT_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "latent.h"
#include "nn/net.h"

/* A private directory for the temporary files one fuzzing process writes,
 * made on first use (on tmpfs when there is one) and removed at exit. */
static char fz_dir[64];
static char fz_cleanup_paths[8][128];
static int fz_n_cleanup;

static inline void fz_cleanup(void)
{
    for (int i = 0; i < fz_n_cleanup; i++) unlink(fz_cleanup_paths[i]);
    if (fz_dir[0]) rmdir(fz_dir);
}

static inline const char *fz_tmpdir(void)
{
    if (fz_dir[0]) return fz_dir;
    const char *bases[] = {"/dev/shm", getenv("TMPDIR"), "/tmp"};
    for (size_t i = 0; i < sizeof bases / sizeof *bases; i++) {
        if (!bases[i] || !*bases[i]) continue;
        snprintf(fz_dir, sizeof fz_dir, "%s/latent-fuzz-XXXXXX", bases[i]);
        if (mkdtemp(fz_dir)) {
            atexit(fz_cleanup);
            return fz_dir;
        }
    }
    abort(); /* no writable temporary directory: nothing can be fuzzed */
}

/* The path of file `name` in the temporary directory; every name used is
 * registered for removal at exit. */
static inline const char *fz_path(const char *name)
{
    const char *dir = fz_tmpdir();
    for (int i = 0; i < fz_n_cleanup; i++)
        if (!strcmp(strrchr(fz_cleanup_paths[i], '/') + 1, name)) return fz_cleanup_paths[i];
    if (fz_n_cleanup == (int)(sizeof fz_cleanup_paths / sizeof *fz_cleanup_paths)) abort();
    char *p = fz_cleanup_paths[fz_n_cleanup++];
    snprintf(p, sizeof fz_cleanup_paths[0], "%s/%s", dir, name);
    return p;
}

/* Replace the file at path with exactly these bytes. */
static inline void fz_write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();
}

/* A NUL-terminated copy of the input (the caller frees it). */
static inline char *fz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) abort();
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}

/* Read every byte so that AddressSanitizer checks the whole buffer. */
static volatile uint8_t fz_sink;
static inline void fz_touch(const void *p, size_t n)
{
    const volatile uint8_t *b = p;
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++) x ^= b[i];
    fz_sink = x;
}

/* What a spec asks for, from the parse alone (no parameters are allocated):
 * limits keep each fuzzing run within memory and time even though the
 * library accepts specs far larger than these. */
#define FZ_MAX_PARAMS (4u << 20)          /* floats of parameters: 16 MB */
#define FZ_MAX_FORWARD_VALUES (1u << 15)  /* activations + scratch per sample */
#define FZ_MAX_FORWARD_MACS (1u << 22)    /* multiply-adds per sample */

typedef struct fz_spec_cost {
    int ok;                 /* the spec parsed for this input shape */
    double params;          /* total parameters */
    double values;          /* activations and conv scratch per sample */
    double macs;            /* multiply-adds of one forward pass per sample */
} fz_spec_cost;

static inline fz_spec_cost fz_spec_measure(const char *spec, int c, int h, int w)
{
    fz_spec_cost k = {0};
    lt_model m;
    memset(&m, 0, sizeof m);
    m.c = c, m.h = h, m.w = w;
    lt_err err;
    if (lt_spec_parse(&m, spec, &err) == 0) {
        k.ok = 1;
        for (int i = 0; i < m.n_layers; i++) {
            const lt_layer *l = &m.layers[i];
            double wl = (double)l->w_len;
            k.params += wl + (double)l->b_len;
            k.values += (double)l->in_size + (double)l->out_size;
            if (l->kind == LT_L_CONV) {
                double cols = (double)l->out_h * l->out_w * l->g.k * l->g.k * l->g.c;
                k.values += cols;
                k.macs += wl * l->out_h * l->out_w;
            } else if (l->kind == LT_L_CONVT) {
                double cols = (double)l->in_h * l->in_w * l->g.k * l->g.k * l->g.oc;
                k.values += cols;
                k.macs += wl * l->in_h * l->in_w;
            } else {
                k.macs += wl + (double)l->out_size;
            }
        }
    }
    free(m.layers);
    return k;
}

/* Run the model on one image and check that it gives finite values. */
static inline void fz_exercise_model(lt_model *m, int c, int h, int w)
{
    char summary[4096];
    lt_model_summary(m, summary, sizeof summary);
    fz_touch(summary, strnlen(summary, sizeof summary));
    (void)lt_model_num_params(m);
    (void)lt_model_spec(m);
    fz_spec_cost k = fz_spec_measure(lt_model_spec(m), c, h, w);
    if (!k.ok) __builtin_trap(); /* the model was built from this very spec */
    if (k.values > FZ_MAX_FORWARD_VALUES || k.macs > FZ_MAX_FORWARD_MACS) return;
    size_t in = (size_t)c * h * w, lat = (size_t)lt_model_latent_dim(m);
    float *x = malloc(sizeof(float) * in), *y = malloc(sizeof(float) * in), *z = malloc(sizeof(float) * lat);
    if (!x || !y || !z) abort();
    for (size_t i = 0; i < in; i++) x[i] = (float)((i * 2654435761u) % 1000u) / 1000.0f;
    lt_err err;
    if (lt_model_encode(m, x, 1, z, 1, &err) == 0) fz_touch(z, sizeof(float) * lat);
    if (lt_model_decode(m, z, 1, y, 1, &err) == 0) fz_touch(y, sizeof(float) * in);
    if (lt_model_reconstruct(m, x, 1, y, 1, &err) == 0) fz_touch(y, sizeof(float) * in);
    free(x);
    free(y);
    free(z);
}

#endif
