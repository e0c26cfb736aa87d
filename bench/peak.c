/* The peak of "% of peak", measured on the core it will be compared with.
 *
 * Why not from the specification: the clock in /proc/cpuinfo is the nominal
 * one (2.6 GHz on the development machine, whose cores ran at 3.6 GHz), and
 * "two FMA units of the widest vector" overstates CPUs that split wide
 * vectors: Zen 4 accepts 512-bit FMAs but runs each as two 256-bit halves,
 * so it does 32 single-precision FLOP per cycle, not 64. Both errors made the
 * earlier peak 166 GFLOP/s per core where the core can do 116.
 *
 * How: the clock from a chain of dependent integer additions (one cycle each
 * on every x86-64 core), the rate from twelve independent chains of vector
 * multiply-adds (enough to cover the FMA latency on every unit), each the
 * best of several short runs so that an interruption does not count. */
#include "peak.h"

#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BENCH_X86 1
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#ifdef BENCH_X86
/* Written in assembly, loops included, so that the measurement is the same
 * in a debug build as in a release one. */
#define ADD10 "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" \
              "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t"

static double clock_ghz(void)
{
    double best = 0;
    for (int r = 0; r < 3; r++) {
        uint64_t x = 0;
        long n = 2000000;
        const long iters = n;
        double t0 = now();
        __asm__ volatile("1:\n\t" ADD10 "dec %1\n\t" "jnz 1b" : "+r"(x), "+r"(n) : : "cc");
        double t = now() - t0;
        if (t > 0 && 10.0 * iters / t > best) best = 10.0 * iters / t;
    }
    return best * 1e-9;
}

/* Twelve independent accumulators, a += b * c on zeros (no subnormal or
 * NaN slow paths): enough in flight to cover the FMA latency on every unit. */
#define FMA12(R)                                                                                            \
    "vfmadd231ps %%" R "12, %%" R "13, %%" R "0\n\t" "vfmadd231ps %%" R "12, %%" R "13, %%" R "1\n\t"    \
    "vfmadd231ps %%" R "12, %%" R "13, %%" R "2\n\t" "vfmadd231ps %%" R "12, %%" R "13, %%" R "3\n\t"    \
    "vfmadd231ps %%" R "12, %%" R "13, %%" R "4\n\t" "vfmadd231ps %%" R "12, %%" R "13, %%" R "5\n\t"    \
    "vfmadd231ps %%" R "12, %%" R "13, %%" R "6\n\t" "vfmadd231ps %%" R "12, %%" R "13, %%" R "7\n\t"    \
    "vfmadd231ps %%" R "12, %%" R "13, %%" R "8\n\t" "vfmadd231ps %%" R "12, %%" R "13, %%" R "9\n\t"    \
    "vfmadd231ps %%" R "12, %%" R "13, %%" R "10\n\t" "vfmadd231ps %%" R "12, %%" R "13, %%" R "11\n\t"
#define ZERO14                                                                                              \
    "vxorps %%xmm0, %%xmm0, %%xmm0\n\t" "vxorps %%xmm1, %%xmm1, %%xmm1\n\t" "vxorps %%xmm2, %%xmm2, %%xmm2\n\t" \
    "vxorps %%xmm3, %%xmm3, %%xmm3\n\t" "vxorps %%xmm4, %%xmm4, %%xmm4\n\t" "vxorps %%xmm5, %%xmm5, %%xmm5\n\t" \
    "vxorps %%xmm6, %%xmm6, %%xmm6\n\t" "vxorps %%xmm7, %%xmm7, %%xmm7\n\t" "vxorps %%xmm8, %%xmm8, %%xmm8\n\t" \
    "vxorps %%xmm9, %%xmm9, %%xmm9\n\t" "vxorps %%xmm10, %%xmm10, %%xmm10\n\t"                               \
    "vxorps %%xmm11, %%xmm11, %%xmm11\n\t" "vxorps %%xmm12, %%xmm12, %%xmm12\n\t"                            \
    "vxorps %%xmm13, %%xmm13, %%xmm13\n\t"
#define CLOBBER14 "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
                  "xmm11", "xmm12", "xmm13", "cc"

/* GFLOP/s of n rounds of twelve FMAs on vectors of `floats` floats. */
static double fma_rate(long n, int floats)
{
    const long iters = n;
    double t0 = now();
    if (floats == 16)
        __asm__ volatile(ZERO14 "1:\n\t" FMA12("zmm") "dec %0\n\t" "jnz 1b\n\t" "vzeroupper" : "+r"(n) : : CLOBBER14);
    else
        __asm__ volatile(ZERO14 "1:\n\t" FMA12("ymm") "dec %0\n\t" "jnz 1b\n\t" "vzeroupper" : "+r"(n) : : CLOBBER14);
    double t = now() - t0;
    return 12.0 * iters * floats * 2 / t;
}
#endif

bench_peak bench_measure_peak(void)
{
    bench_peak p = {0, 0, 0};
#ifdef BENCH_X86
    __builtin_cpu_init();
    const int w512 = __builtin_cpu_supports("avx512f"), w256 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!w512 && !w256) {
        p.ghz = clock_ghz();
        return p;
    }
    p.bits = w512 ? 512 : 256;
    /* Turns taken, so that both see the core at the clock it settles at
     * under load (an idle core starts lower). */
    for (int r = 0; r < 6; r++) {
        double g = fma_rate(3000000, w512 ? 16 : 8), c = clock_ghz();
        if (r == 0) continue;
        if (g > p.gflops) p.gflops = g;
        if (c > p.ghz) p.ghz = c;
    }
    p.gflops *= 1e-9;
#endif
    return p;
}
