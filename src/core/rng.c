/* xoshiro256** seeded by splitmix64 (Blackman and Vigna). Small, fast, and with
 * 256 bits of state plenty for shuffling and dropout masks. */
#include <math.h>
#include <threads.h>

#include "core/core.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void lt_rng_seed(lt_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

lt_rng lt_rng_for(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    /* Mix each counter through splitmix64 so nearby counters give unrelated streams. */
    uint64_t x = seed;
    uint64_t h = splitmix64(&x);
    x = h ^ a;
    h = splitmix64(&x);
    x = h ^ b;
    h = splitmix64(&x);
    x = h ^ c;
    h = splitmix64(&x);
    lt_rng r;
    lt_rng_seed(&r, h);
    return r;
}

uint64_t lt_rng_u64(lt_rng *r) { return lt_rng_next(r); }

float lt_rng_uniform(lt_rng *r) { return lt_rng_uniform_next(r); }

uint64_t lt_rng_below(lt_rng *r, uint64_t n)
{
    /* Rejection sampling: drop the top partial block so every value is equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = lt_rng_u64(r); while (x >= limit);
    return x % n;
}

float lt_rng_normal(lt_rng *r)
{
    /* Box-Muller in double; u1 in (0,1] so log never sees 0. */
    double u1 = ((double)(lt_rng_u64(r) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = (double)(lt_rng_u64(r) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Normals in bulk by the ziggurat method (Marsaglia and Tsang, "The
 * Ziggurat Method for Generating Random Variables", 2000; 128 layers): about
 * 99% of draws cost half a 64-bit number, a compare and a multiply, where
 * Box-Muller costs a logarithm and a sine or cosine per pair (30 ns a normal
 * here; the denoising autoencoder draws 784 per image, which took a third of
 * its training step). Each 32-bit half of a draw makes one normal: its low 7
 * bits pick the layer and its high 25 bits give the value (as many as a
 * float holds). Doornik (2005) showed that the original reuses the index bits
 * in the value; here they are separate.
 *
 * The tables depend on nothing but constants, so they are computed once for
 * the whole process (the only shared state of the RNG, read-only after
 * call_once). */
enum { ZIG_N = 128 };
static const double ZIG_R = 3.442619855899;      /* where the tail starts */
static const double ZIG_V = 9.91256303526217e-3; /* the area of each layer */
static struct {
    uint32_t k[ZIG_N]; /* |value| below k[i]: inside layer i's rectangle */
    double w[ZIG_N];   /* layer i's width over 2^31 */
    double f[ZIG_N];   /* the density at layer i's edge */
} zig;
static once_flag zig_once = ONCE_FLAG_INIT;

static void zig_init(void)
{
    const double m = 2147483648.0; /* 2^31, the magnitude of a signed 32-bit value */
    double dn = ZIG_R, tn = dn, q = ZIG_V / exp(-0.5 * dn * dn);
    zig.k[0] = (uint32_t)(dn / q * m);
    zig.k[1] = 0;
    zig.w[0] = q / m;
    zig.w[ZIG_N - 1] = dn / m;
    zig.f[0] = 1.0;
    zig.f[ZIG_N - 1] = exp(-0.5 * dn * dn);
    for (int i = ZIG_N - 2; i >= 1; i--) {
        dn = sqrt(-2.0 * log(ZIG_V / dn + exp(-0.5 * dn * dn)));
        zig.k[i + 1] = (uint32_t)(dn / tn * m);
        tn = dn;
        zig.f[i] = exp(-0.5 * dn * dn);
        zig.w[i] = dn / m;
    }
}

/* A 32-bit word's layer and signed value (its low 7 bits cleared). */
static inline int zig_layer(uint32_t word) { return (int)(word & (ZIG_N - 1)); }
static inline int32_t zig_value(uint32_t word) { return (int32_t)(word & ~(uint32_t)(ZIG_N - 1)); }
static inline uint32_t zig_abs(int32_t v) { return v < 0 ? 0u - (uint32_t)v : (uint32_t)v; }

/* Uniform in (0, 1), for the logarithms of the slow path. */
static double open_uniform(lt_rng *r) { return ((double)(lt_rng_u64(r) >> 11) + 0.5) * 0x1.0p-53; }

/* The 1% of words that fall outside their layer's rectangle: the tail beyond
 * ZIG_R (Marsaglia's exponential rejection) or a wedge, else a fresh word. */
static double zig_slow(lt_rng *r, uint32_t word)
{
    for (;;) {
        int i = zig_layer(word);
        int32_t v = zig_value(word);
        if (zig_abs(v) < zig.k[i]) return v * zig.w[i];
        double x = v * zig.w[i];
        if (i == 0) {
            double t, y;
            do {
                t = -log(open_uniform(r)) / ZIG_R;
                y = -log(open_uniform(r));
            } while (y + y < t * t);
            return v > 0 ? ZIG_R + t : -ZIG_R - t;
        }
        if (zig.f[i] + open_uniform(r) * (zig.f[i - 1] - zig.f[i]) < exp(-0.5 * x * x)) return x;
        word = (uint32_t)lt_rng_u64(r);
    }
}

static inline float zig_normal(lt_rng *r, uint32_t word)
{
    int i = zig_layer(word);
    int32_t v = zig_value(word);
    return (float)(zig_abs(v) < zig.k[i] ? v * zig.w[i] : zig_slow(r, word));
}

void lt_rng_normals(lt_rng *r, float *out, size_t n)
{
    call_once(&zig_once, zig_init);
    size_t j = 0;
    for (; j + 1 < n; j += 2) {
        uint64_t b = lt_rng_u64(r);
        out[j] = zig_normal(r, (uint32_t)b);
        out[j + 1] = zig_normal(r, (uint32_t)(b >> 32));
    }
    if (j < n) out[j] = zig_normal(r, (uint32_t)lt_rng_u64(r));
}

void lt_rng_shuffle(lt_rng *r, int *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)lt_rng_below(r, i);
        int t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
