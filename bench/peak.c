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
 * best of five short runs so that an interruption does not count. */
#include "peak.h"

#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define BENCH_X86 1
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#ifdef BENCH_X86
#define ADD10 "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" \
              "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t"

static double clock_ghz(void)
{
    double best = 0;
    for (int r = 0; r < 3; r++) {
        uint64_t x = 0;
        const long n = 2000000;
        double t0 = now();
        for (long i = 0; i < n; i++) __asm__ volatile(ADD10 : "+r"(x));
        double t = now() - t0;
        if (t > 0 && 10.0 * n / t > best) best = 10.0 * n / t;
    }
    return best * 1e-9;
}

/* Twelve accumulators a = a * b + c, started apart so that the compiler
 * cannot merge them. */
#define CHAINS(V, SET, FMA, n, out)                                                                        \
    do {                                                                                                   \
        V b = SET(0.999f), c = SET(0.001f);                                                                \
        V a0 = SET(0.1f), a1 = SET(0.2f), a2 = SET(0.3f), a3 = SET(0.4f), a4 = SET(0.5f), a5 = SET(0.6f);  \
        V a6 = SET(0.7f), a7 = SET(0.8f), a8 = SET(0.9f), a9 = SET(1.1f), a10 = SET(1.2f), a11 = SET(1.3f); \
        for (long i = 0; i < (n); i++) {                                                                   \
            a0 = FMA(a0, b, c), a1 = FMA(a1, b, c), a2 = FMA(a2, b, c), a3 = FMA(a3, b, c);                \
            a4 = FMA(a4, b, c), a5 = FMA(a5, b, c), a6 = FMA(a6, b, c), a7 = FMA(a7, b, c);                \
            a8 = FMA(a8, b, c), a9 = FMA(a9, b, c), a10 = FMA(a10, b, c), a11 = FMA(a11, b, c);            \
        }                                                                                                  \
        out = (((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))) + ((a8 + a9) + (a10 + a11));            \
    } while (0)

__attribute__((target("avx512f"))) static double fma512(long n)
{
    __m512 s;
    double t0 = now();
    CHAINS(__m512, _mm512_set1_ps, _mm512_fmadd_ps, n, s);
    double t = now() - t0;
    /* Use the result, so the loop is not thrown away. */
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return 12.0 * n * 16 * 2 / t;
}

__attribute__((target("avx2,fma"))) static double fma256(long n)
{
    __m256 s;
    double t0 = now();
    CHAINS(__m256, _mm256_set1_ps, _mm256_fmadd_ps, n, s);
    double t = now() - t0;
    float v[8];
    _mm256_storeu_ps(v, s);
    volatile float sink = v[0];
    (void)sink;
    return 12.0 * n * 8 * 2 / t;
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
        double g = w512 ? fma512(3000000) : fma256(3000000), c = clock_ghz();
        if (r == 0) continue;
        if (g > p.gflops) p.gflops = g;
        if (c > p.ghz) p.ghz = c;
    }
    p.gflops *= 1e-9;
#endif
    return p;
}
