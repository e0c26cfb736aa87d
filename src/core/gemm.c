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
 * C^T = B^T A^T, so A and B swap places and nothing is copied. What its
 * generator (1.17) cannot do, or does slower than OpenBLAS, stays with
 * OpenBLAS: B transposed (row-major NT; the layers lay their weights out so
 * as not to need it), outputs of one or two columns (latent size 2) or of
 * more than XSMM_MAX_N, and any shape for which no kernel comes back (a CPU
 * it does not know). */
#include <cblas.h>
#include <string.h>

#include "core/core.h"

#ifdef LATENT_HAVE_XSMM
#include <libxsmm.h>
#include <threads.h>

static once_flag xsmm_once = ONCE_FLAG_INIT;
static void xsmm_start(void) { libxsmm_init(); }

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
#endif

/* Widest C (row-major columns) given to LIBXSMM: its kernels keep a whole
 * column of C^T in registers' reach, and the CNN's 9216-wide dense layer ran
 * 3x slower backward than through OpenBLAS. The autoencoder's widest is 288. */
#define XSMM_MAX_N 512

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
#ifdef LATENT_HAVE_XSMM
    if (!tb && n > 2 && n <= XSMM_MAX_N && xsmm_gemm(ta, m, n, k, a, lda, b, ldb, accumulate, c, ldc) == 0) return;
#endif
    /* With beta 0 OpenBLAS clears C in a pass of its own (sgemm_beta) that
     * perf put at 7% of a training step, several times slower than memset;
     * the result is the same (0 + x is x). */
    if (!accumulate) clear(c, m, n, ldc);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a,
                lda, b, ldb, 1.0f, c, ldc);
}
