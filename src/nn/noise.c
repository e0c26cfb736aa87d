/* Input corruption for the denoising autoencoder. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

int lt_noise_parse(const char *text, lt_noise *out, lt_err *err)
{
    memset(out, 0, sizeof *out);
    if (!strcmp(text, "none")) return 0;
    char kind[16];
    const char *colon = strchr(text, ':');
    size_t len = colon ? (size_t)(colon - text) : strlen(text);
    if (!colon || len >= sizeof kind)
        return lt_errf(err, LT_EINVAL, "noise '%s': expected none, gaussian:SIGMA[:clip], saltpepper:P or mask:P", text);
    memcpy(kind, text, len);
    kind[len] = 0;
    char *end;
    double v = strtod(colon + 1, &end);
    int clip = 0;
    if (end == colon + 1 || !isfinite(v)) return lt_errf(err, LT_EINVAL, "noise '%s': expected a number after '%s:'", text, kind);
    if (*end == ':' && !strcmp(end + 1, "clip")) clip = 1, end += 5;
    if (*end) return lt_errf(err, LT_EINVAL, "noise '%s': unexpected '%s'", text, end);
    if (!strcmp(kind, "gaussian")) {
        if (!(v > 0.0 && v <= 100.0)) return lt_errf(err, LT_EINVAL, "noise '%s': sigma must be in (0, 100], found %g", text, v);
        *out = (lt_noise){LT_NOISE_GAUSSIAN, (float)v, clip};
        return 0;
    }
    if (clip) return lt_errf(err, LT_EINVAL, "noise '%s': ':clip' applies to gaussian noise only", text);
    if (!strcmp(kind, "saltpepper") || !strcmp(kind, "mask")) {
        if (!(v > 0.0 && v < 1.0)) return lt_errf(err, LT_EINVAL, "noise '%s': probability must be in (0, 1), found %g", text, v);
        *out = (lt_noise){kind[0] == 's' ? LT_NOISE_SALT_PEPPER : LT_NOISE_MASK, (float)v, 0};
        return 0;
    }
    return lt_errf(err, LT_EINVAL, "noise '%s': unknown kind '%s' (expected gaussian, saltpepper or mask)", text, kind);
}

/* The shortest decimal that reads back as the same float ("0.2", not
 * "0.200000003"), so names and checkpoints show what the user typed. */
static void shortest(char *buf, size_t size, float v)
{
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (strtof(buf, NULL) == v) return;
    }
}

int lt_noise_format(const lt_noise *noise, char *buf, size_t size)
{
    char v[32];
    shortest(v, sizeof v, noise->level);
    int n;
    switch (noise->kind) {
    case LT_NOISE_GAUSSIAN: n = snprintf(buf, size, "gaussian:%s%s", v, noise->clip ? ":clip" : ""); break;
    case LT_NOISE_SALT_PEPPER: n = snprintf(buf, size, "saltpepper:%s", v); break;
    case LT_NOISE_MASK: n = snprintf(buf, size, "mask:%s", v); break;
    default: n = snprintf(buf, size, "none"); break;
    }
    return (n < 0 || (size_t)n >= size) ? LT_EINVAL : 0;
}

void lt_noise_apply(const lt_noise *noise, float *x, int n, size_t size, uint64_t seed, uint64_t stream,
                    uint64_t first)
{
    if (noise->kind == LT_NOISE_NONE) return;
    for (int i = 0; i < n; i++) {
        lt_rng r = lt_rng_for(seed, stream, first + (uint64_t)i, 0x4015E);
        float *p = x + (size_t)i * size;
        if (noise->kind == LT_NOISE_GAUSSIAN) {
            float z[256];
            for (size_t k = 0; k < size; k += 256) {
                size_t m = size - k < 256 ? size - k : 256;
                lt_rng_normals(&r, z, m);
                for (size_t j = 0; j < m; j++) {
                    float v = p[k + j] + noise->level * z[j];
                    p[k + j] = noise->clip ? (v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v) : v;
                }
            }
            continue;
        }
        for (size_t k = 0; k < size; k++) {
            switch (noise->kind) {
            case LT_NOISE_SALT_PEPPER:
                /* One draw decides whether the pixel is hit, a second whether it turns white or black. */
                if (lt_rng_uniform(&r) < noise->level) p[k] = lt_rng_uniform(&r) < 0.5f ? 0.0f : 1.0f;
                break;
            case LT_NOISE_MASK:
                if (lt_rng_uniform(&r) < noise->level) p[k] = 0.0f;
                break;
            default: break;
            }
        }
    }
}
