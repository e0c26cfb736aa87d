/* xoshiro256** seeded by splitmix64 (Blackman and Vigna). Small, fast, and with
 * 256 bits of state plenty for shuffling and dropout masks. */
#include <math.h>

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

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t lt_rng_u64(lt_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float lt_rng_uniform(lt_rng *r) { return (float)(lt_rng_u64(r) >> 40) * 0x1.0p-24f; }

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

void lt_rng_shuffle(lt_rng *r, int *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)lt_rng_below(r, i);
        int t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
