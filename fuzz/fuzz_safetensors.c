/* libFuzzer harness: safetensors parsing from memory (lt_st_parse).
 *
 * Every tensor's bytes are read back (so AddressSanitizer checks the bounds the
 * parser computed), every name and metadata key is looked up, and a file that
 * parses is written again with lt_st_write and read back with lt_st_read: the
 * copy must hold the same tensors and metadata. */
#include "fuzz_common.h"
#include "io/safetensors.h"

static int same_file(const lt_st_file *a, const lt_st_file *b)
{
    if (a->n != b->n || a->n_meta != b->n_meta) return 0;
    for (int i = 0; i < a->n; i++) {
        const lt_st_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        if (strcmp(x->name, y->name) || x->dtype != y->dtype || x->rank != y->rank || x->nbytes != y->nbytes)
            return 0;
        if (memcmp(x->shape, y->shape, sizeof x->shape)) return 0;
        if (x->nbytes && memcmp(x->data, y->data, x->nbytes)) return 0;
    }
    for (int i = 0; i < a->n_meta; i++)
        if (strcmp(a->meta_keys[i], b->meta_keys[i]) || strcmp(a->meta_vals[i], b->meta_vals[i])) return 0;
    return 1;
}

static void round_trip(const lt_st_file *f)
{
    lt_st_entry *e = calloc((size_t)f->n + 1, sizeof *e);
    const char **kv = calloc(2 * (size_t)f->n_meta + 1, sizeof *kv);
    if (!e || !kv) abort();
    for (int i = 0; i < f->n; i++) {
        const lt_st_tensor *t = &f->tensors[i];
        e[i] = (lt_st_entry){t->name, t->dtype, t->rank, t->shape, t->data};
    }
    for (int i = 0; i < f->n_meta; i++) kv[2 * i] = f->meta_keys[i], kv[2 * i + 1] = f->meta_vals[i];
    const char *path = fz_path("copy.safetensors");
    lt_err err;
    if (lt_st_write(path, e, f->n, kv, f->n_meta, &err) == 0) {
        lt_st_file g;
        if (lt_st_read(path, &g, &err) != 0) __builtin_trap(); /* we cannot read what we wrote */
        if (!same_file(f, &g)) __builtin_trap();                /* ... or it changed on the way */
        lt_st_free(&g);
    }
    free(e);
    free(kv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lt_st_file f;
    lt_err err;
    if (lt_st_parse(data, size, "fuzz.safetensors", &f, &err) != 0) {
        /* A failure leaves the struct zeroed. */
        if (f.n || f.tensors || f.n_meta || f.meta_keys || f.meta_vals || f.buf) __builtin_trap();
        lt_st_free(&f);
        return 0;
    }
    for (int i = 0; i < f.n; i++) {
        const lt_st_tensor *t = &f.tensors[i];
        if (lt_st_find(&f, t->name) != t) __builtin_trap(); /* names are unique */
        if (!lt_dtype_name(t->dtype) || lt_dtype_size(t->dtype) == 0) __builtin_trap();
        if (t->rank < 0 || t->rank > LT_ST_MAX_RANK) __builtin_trap();
        fz_touch(t->name, strlen(t->name));
        if (t->nbytes) fz_touch(t->data, t->nbytes);
    }
    for (int i = 0; i < f.n_meta; i++) {
        if (!lt_st_meta(&f, f.meta_keys[i])) __builtin_trap();
        fz_touch(f.meta_vals[i], strlen(f.meta_vals[i]));
    }
    (void)lt_st_find(&f, "encoder.0.weight");
    (void)lt_st_meta(&f, "latent.spec");
    round_trip(&f);
    lt_st_free(&f);
    lt_st_free(&f); /* documented as safe on a freed file */
    return 0;
}
