/* This machine's peak single-precision rate per core, measured. */
#ifndef LATENT_BENCH_PEAK_H
#define LATENT_BENCH_PEAK_H

typedef struct bench_peak {
    double ghz;     /* the clock the core runs at now (0: not measurable here) */
    double gflops;  /* multiply-adds in flight on every FMA unit, x2 (0: not measurable) */
    int bits;       /* vector width of that measurement: 512, 256 or 0 */
} bench_peak;

bench_peak bench_measure_peak(void);

#endif
