/* core: errors, random numbers, memory and threads shared by every part of latent.
 *
 * Errors are values: a function that can fail returns 0 on success or a negative
 * LT_E* code, and fills an lt_err with a one-line message the caller can print.
 * Nothing in the library prints or exits. */
#ifndef LATENT_CORE_H
#define LATENT_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "latent.h"

/* Hot element-wise loops are compiled twice, for AVX2 and for the baseline
 * x86-64 (SSE2), and the loader picks one for the CPU at hand (an ifunc), so
 * one binary runs everywhere and uses 256-bit vectors where it can. ISO C
 * mode (-std=c17) keeps -ffp-contract=off and AVX2 alone brings no FMA, so
 * both versions round every operation the same way: results do not depend
 * on which one runs. Only static functions get clones (clang 14 cannot clone
 * one that other files call), so a public kernel calls a static cloned body. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__SANITIZE_ADDRESS__)
#define LT_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define LT_VECTOR_CLONES
#endif

/* Subnormal floats flushed to zero while the library computes (x86's FTZ and
 * DAZ bits of MXCSR, per thread): with weight decay, weights and optimizer
 * moments drift into subnormals, where every operation takes a slow path
 * (PyTorch was seen to slow by a third). Each parallel region sets the mode
 * in each of its threads and gives the caller's mode back at the end, so a
 * program embedding latent keeps its own. All threads flush alike: results
 * still do not depend on the thread count. A no-op elsewhere. */
#if defined(__x86_64__) || defined(__SSE2__)
#include <xmmintrin.h>
typedef unsigned int lt_fpmode;
static inline lt_fpmode lt_ftz_begin(void)
{
    lt_fpmode old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
}
static inline void lt_ftz_end(lt_fpmode old) { _mm_setcsr(old); }
#else
typedef int lt_fpmode;
static inline lt_fpmode lt_ftz_begin(void) { return 0; }
static inline void lt_ftz_end(lt_fpmode old) { (void)old; }
#endif

/* Fill err (which may be NULL) with a printf-style message and return code. */
int lt_errf(lt_err *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* malloc/calloc that never return NULL silently: on failure they fill err. */
void *lt_malloc(size_t n, lt_err *err);
void *lt_calloc(size_t count, size_t size, lt_err *err);
/* 64-byte aligned allocation (for vector loads); free with free(). */
void *lt_aligned_alloc(size_t n, lt_err *err);

/* Multiply with overflow check: returns 0 and sets *out, or -1 on overflow. */
int lt_mul_size(size_t a, size_t b, size_t *out);

/* ---- random numbers ----
 * Every random choice in latent comes from an explicit lt_rng seeded from the
 * run's seed; there is no global state. The generator is xoshiro256**, seeded
 * through splitmix64. lt_rng_for() derives an independent stream from a seed and
 * a few counters (epoch, step, sample), so per-sample randomness such as dropout
 * masks does not depend on how samples are split over threads. */
typedef struct lt_rng { uint64_t s[4]; } lt_rng;

void lt_rng_seed(lt_rng *r, uint64_t seed);
lt_rng lt_rng_for(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);
/* One xoshiro256** step, inline for loops that draw one value per element
 * (dropout masks); lt_rng_u64 is the same step. */
static inline uint64_t lt_rng_next(lt_rng *r)
{
    uint64_t *s = r->s;
    const uint64_t x = s[1] * 5, result = ((x << 7) | (x >> 57)) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}
uint64_t lt_rng_u64(lt_rng *r);
/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
static inline float lt_rng_uniform_next(lt_rng *r) { return (float)(lt_rng_next(r) >> 40) * 0x1.0p-24f; }
float lt_rng_uniform(lt_rng *r);
/* Uniform integer in [0, n) without modulo bias. */
uint64_t lt_rng_below(lt_rng *r, uint64_t n);
/* One standard normal (Box-Muller), for the few draws of the VAE, sampling
 * and t-SNE's start. */
float lt_rng_normal(lt_rng *r);
/* n standard normals (ziggurat: 15x faster), for the denoiser's noise. A
 * different sequence from n calls of lt_rng_normal. */
void lt_rng_normals(lt_rng *r, float *out, size_t n);
/* Fisher-Yates shuffle of idx[0..n). */
void lt_rng_shuffle(lt_rng *r, int *idx, size_t n);

/* ---- matrix products ----
 * Row-major C[m,n] = op(A)[m,k] op(B)[k,n], or C += that when accumulate;
 * op transposes when ta/tb is set. LIBXSMM where built with it and the shape
 * suits, else OpenBLAS (gemm.c says which); the same bits on every run. */
void lt_gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
             int accumulate, float *c, int ldc);

/* ---- files ----
 * Write a whole file atomically: data goes to PATH.tmp.XXXXXX, is fsynced and
 * renamed over PATH, so readers see the old file or the new one, never half. */
int lt_write_file_atomic(const char *path, const void *data, size_t n, lt_err *err);
/* Create a directory and any missing parents (mkdir -p). */
int lt_mkdir_p(const char *path, lt_err *err);
/* Read a whole file into a malloc'ed buffer (*out, *n). */
int lt_read_file(const char *path, void **out, size_t *n, lt_err *err);

#endif
