/* Helpers shared by the tests (linked into every test program). */
#ifndef LATENT_TESTUTIL_H
#define LATENT_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "latent.h"

/* UNDER_ASAN: built with AddressSanitizer (gcc or clang spelling). */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
/* Run a shell command line (printf-style); its exit code, or -1 when it did
 * not exit normally. out receives its stdout and stderr (tu_sh) or its stdout
 * alone (tu_sh_stdout), cut to size - 1 bytes and NUL-terminated. */
int tu_sh(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int tu_sh_stdout(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
/* Run a shell command line (printf-style); its exit code, or -1 when it did
 * not exit normally. out receives its stdout and stderr (tu_sh) or its stdout
 * alone (tu_sh_stdout), cut to size - 1 bytes and NUL-terminated. */
int tu_sh(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int tu_sh_stdout(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

/* A fresh directory under $TMPDIR (or /tmp); the caller removes it with tu_rmtree. */
char *tu_mkdtemp(void);
void tu_rmtree(const char *dir);
/* Write bytes to DIR/NAME; returns the malloc'ed path. */
char *tu_write(const char *dir, const char *name, const void *data, size_t n);
/* Largest |a-b| / (atol + rtol*|b|) over n values: <= 1 means all close. */
double tu_close_ratio(const float *a, const float *b, size_t n, double atol, double rtol);
/* Euclidean norm. */
double tu_norm(const float *a, size_t n);
/* Fill with U(lo, hi) from a seeded generator. */
void tu_fill_uniform(float *a, size_t n, float lo, float hi, uint64_t seed);
/* Write ds as DIR/<prefix>-images-idx3-ubyte and DIR/<prefix>-labels-idx1-ubyte
 * (prefix "train" or "t10k"), the layout latent reads with --data DIR. */
void tu_write_idx_split(const char *dir, const char *prefix, const lt_dataset *ds);
/* A small synthetic image dataset: n images of h x w with blobs, labels 0..9. */
void tu_make_dataset(lt_dataset *ds, int n, int h, int w, uint64_t seed);

/* Stop OpenMP's worker threads; call before main returns (see src/cli/main.c:
 * LeakSanitizer's exit-time check can crash while parked workers are alive). */
void tu_release_threads(void);

/* Run a shell command line (printf-style); its exit code, or -1 when it did
 * not exit normally. out receives its stdout and stderr (tu_sh) or its stdout
 * alone (tu_sh_stdout), cut to size - 1 bytes and NUL-terminated. */
int tu_sh(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int tu_sh_stdout(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
