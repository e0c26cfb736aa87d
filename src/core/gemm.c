/* The matrix products of the layers: row-major, single precision, alpha 1.
 *
 * The autoencoder's products are small (a chunk of 32 images gives at most
 * 1568 x 72 x 16), where OpenBLAS spends much of each call outside its
 * kernel: packing, blocking and dispatch tuned for large matrices. LIBXSMM
 * (Debian's libxsmm-dev) generates a kernel for each shape at its first use
 * and calls it directly. Measured on the 24 products of one training chunk
 * (bench notes in the README): 889 -> 643 us, 21 of 24 faster, and each
 * generated kernel gives the same bits on every run, whichever thread calls
 * it: LIBXSMM never splits a product over threads.
 *
 * LIBXSMM is column-major; a row-major C = A B is the column-major
 * C^T = B^T A^T, so A and B swap places and nothing is copied. Outputs of
 * one or two columns (latent size 2), which its generator (1.17) does not
 * take, are a plain loop here; wide ones go in slabs. So every product of
 * the layers runs in kernels that are the same on any machine with AVX2
 * (xsmm_start below), and the same seed gives the same bits there. OpenBLAS
 * remains for B transposed (row-major NT; the layers lay their weights out
 * so as not to need it), for a CPU LIBXSMM gives no kernel for, and for a
 * build without LIBXSMM. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

int lt_cpu_has_avx2_fma(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

int lt_kernels_portable(void)
{
    const char *k = getenv("LATENT_KERNELS");
    return !(k && !strcmp(k, "native")) && lt_cpu_has_avx2_fma();
}

#ifdef LATENT_HAVE_XSMM
#include <libxsmm.h>
#include <threads.h>

static once_flag xsmm_once = ONCE_FLAG_INIT;

/* LIBXSMM generates its kernels for the CPU it runs on, and an AVX-512
 * kernel adds a product's terms in another order than an AVX2 one: the same
 * seed trained to other weights on an AVX-512 machine than on an AVX2 one.
 * Its AVX2 kernels ("hsw") run on both, so they are asked for wherever the
 * CPU has AVX2 and FMA, unless LATENT_KERNELS=native or the user set
 * LIBXSMM_TARGET: then the same bits on any such machine (README, "Same bits
 * on other machines", for what it costs). */
static void xsmm_start(void)
{
    libxsmm_init();
    if (!getenv("LIBXSMM_TARGET") && lt_kernels_portable()) libxsmm_set_target_arch("hsw");
}

static libxsmm_smmfunction kernel(int m, int n, int k, int lda, int ldb, int ldc, int accumulate, int flags)
{
    const libxsmm_blasint bm = m, bn = n, bk = k, la = lda, lb = ldb, lc = ldc;
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    const int prefetch = LIBXSMM_GEMM_PREFETCH_NONE;
    /* Generated once per shape; later calls find it in LIBXSMM's registry. */
    return libxsmm_smmdispatch(bm, bn, bk, &la, &lb, &lc, &alpha, &beta, &flags, &prefetch);
}

/* Depth per kernel call when A is transposed (the weight gradients, whose
 * depth is every output pixel of a chunk): one kernel over a depth of 1568
 * ran slower than OpenBLAS, 32 at a time faster. */
#define KTILE 32

/* The generated kernels use the 256- or 512-bit registers and return with
 * their upper halves set. Until a vzeroupper, SSE instructions of the
 * baseline build may each wait on a merge with those halves (the ReLU
 * layers looked twice as slow in a first measurement). A kernel came back,
 * so the CPU has AVX. */
static inline void clean_upper(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("vzeroupper" ::: "memory");
#endif
}

const char *lt_kernel_target(void)
{
    call_once(&xsmm_once, xsmm_start);
    return libxsmm_get_target_arch();
}

static int xsmm_gemm(int ta, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                     int accumulate, float *c, int ldc)
{
    call_once(&xsmm_once, xsmm_start);
    if (!ta) {
        libxsmm_smmfunction f = kernel(n, m, k, ldb, lda, ldc, accumulate, LIBXSMM_GEMM_FLAG_NONE);
        if (!f) return -1;
        f(b, a, c);
        clean_upper();
        return 0;
    }
    /* C = A^T B: column-major C^T = B^T A with the second operand transposed. */
    const int flags = LIBXSMM_GEMM_FLAG_TRANS_B;
    const int kt = k > 2 * KTILE ? KTILE : k, rest = k % kt;
    libxsmm_smmfunction first = kernel(n, m, kt, ldb, lda, ldc, accumulate, flags);
    libxsmm_smmfunction next = kt < k ? kernel(n, m, kt, ldb, lda, ldc, 1, flags) : NULL;
    libxsmm_smmfunction last = rest ? kernel(n, m, rest, ldb, lda, ldc, 1, flags) : NULL;
    if (!first || (kt < k && !next) || (rest && !last)) return -1;
    /* Tiles in order, each adding to the last: the same sums on every run. */
    first(b, a, c);
    int p = kt;
    for (; p + kt <= k; p += kt) next(b + (size_t)p * ldb, a + (size_t)p * lda, c);
    if (rest) last(b + (size_t)p * ldb, a + (size_t)p * lda, c);
    clean_upper();
    return 0;
}
#else
const char *lt_kernel_target(void) { return "openblas"; }
#endif

/* Widest C (row-major columns) given to one LIBXSMM kernel: its kernels keep
 * a whole column of C^T in registers' reach, and the CNN's 9216-wide dense
 * layer ran 3x slower backward as one kernel. Wider products go in slabs of
 * this many columns; each column's sums are the same whatever the slab
 * (slabs of 128, 512 and 2048 trained the CNN to the same bits), and 512
 * was the fastest of the three with the AVX2 kernels (its backward 103-118
 * us per image, against 124-136 and 106-132). The autoencoder's widest is
 * 288. */
#define XSMM_MAX_N 512

/* C with one or two columns (a latent size of 2): too narrow for LIBXSMM's
 * generator, and OpenBLAS's kernel, like LIBXSMM's, depends on the CPU. A
 * plain loop instead, the same bits on any machine: each sum from 0 over p
 * in order, then added to C or stored. Eight rows' sums run side by side in
 * registers: one sum at a time left the adder waiting on its latency (0.1
 * us per image for the latent layer). */
/* Rows i0 .. i0+r of C, r <= 8. */
static inline __attribute__((always_inline)) void narrow_rows(const int ta, int i0, const int r, const int n, int k,
                                                              const float *restrict a, int lda,
                                                              const float *restrict b, int ldb, int accumulate,
                                                              float *restrict c, int ldc)
{
    float acc[8][2] = {{0}};
    for (int p = 0; p < k; p++)
        for (int i = 0; i < r; i++) {
            const float ai = ta ? a[(size_t)p * lda + i0 + i] : a[(size_t)(i0 + i) * lda + p];
            for (int j = 0; j < n; j++) acc[i][j] += ai * b[(size_t)p * ldb + j];
        }
    for (int i = 0; i < r; i++)
        for (int j = 0; j < n; j++) {
            float *cij = c + (size_t)(i0 + i) * ldc + j;
            *cij = accumulate ? *cij + acc[i][j] : acc[i][j];
        }
}

static inline __attribute__((always_inline)) void narrow_gemm_n(const int ta, int m, const int n, int k,
                                                                 const float *restrict a, int lda,
                                                                 const float *restrict b, int ldb, int accumulate,
                                                                 float *restrict c, int ldc)
{
    int i0 = 0;
    /* Whole blocks of 8 rows with the count constant (unrolled, sums in
     * registers), then the rest. */
    for (; i0 + 8 <= m; i0 += 8) narrow_rows(ta, i0, 8, n, k, a, lda, b, ldb, accumulate, c, ldc);
    if (i0 < m) narrow_rows(ta, i0, m - i0, n, k, a, lda, b, ldb, accumulate, c, ldc);
}

/* Constant shapes, so that the sums stay in registers. */
static void narrow_gemm(int ta, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                        int accumulate, float *c, int ldc)
{
    if (ta && n == 1) narrow_gemm_n(1, m, 1, k, a, lda, b, ldb, accumulate, c, ldc);
    else if (ta) narrow_gemm_n(1, m, 2, k, a, lda, b, ldb, accumulate, c, ldc);
    else if (n == 1) narrow_gemm_n(0, m, 1, k, a, lda, b, ldb, accumulate, c, ldc);
    else narrow_gemm_n(0, m, 2, k, a, lda, b, ldb, accumulate, c, ldc);
}

static void clear(float *c, int m, int n, int ldc)
{
    if (ldc == n) memset(c, 0, sizeof(float) * (size_t)m * n);
    else
        for (int i = 0; i < m; i++) memset(c + (size_t)i * ldc, 0, sizeof(float) * (size_t)n);
}

void lt_gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
             int accumulate, float *c, int ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (!accumulate) clear(c, m, n, ldc);
        return;
    }
    if (!tb && n <= 2) {
        narrow_gemm(ta, m, n, k, a, lda, b, ldb, accumulate, c, ldc);
        return;
    }
#ifdef LATENT_HAVE_XSMM
    if (!tb && n <= XSMM_MAX_N && xsmm_gemm(ta, m, n, k, a, lda, b, ldb, accumulate, c, ldc) == 0) return;
    if (!tb && n > XSMM_MAX_N) {
        int j = 0;
        for (; j < n; j += XSMM_MAX_N) {
            const int w = n - j < XSMM_MAX_N ? n - j : XSMM_MAX_N;
            if (w <= 2) narrow_gemm(ta, m, w, k, a, lda, b + j, ldb, accumulate, c + j, ldc);
            /* A slab without a kernel (no LIBXSMM for this CPU): the rest
             * of the product goes to OpenBLAS below, from that slab on. */
            else if (xsmm_gemm(ta, m, w, k, a, lda, b + j, ldb, accumulate, c + j, ldc)) break;
        }
        if (j >= n) return;
        b += j, c += j, n -= j;
    }
#endif
    /* With beta 0 OpenBLAS clears C in a pass of its own (sgemm_beta) that
     * perf put at 7% of a training step, several times slower than memset;
     * the result is the same (0 + x is x). */
    if (!accumulate) clear(c, m, n, ldc);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a,
                lda, b, ldb, 1.0f, c, ldc);
}
