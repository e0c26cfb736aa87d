/* libFuzzer harness: model checkpoints (lt_model_load), i.e. safetensors plus
 * the latent.* metadata and a spec from the file.
 *
 * lt_model_load reads a path, so each input is written to one temporary file
 * (on tmpfs when there is one) that is reused for the whole run. A loaded model
 * runs a forward pass on one image when it is small enough.
 *
 * The library builds the model a checkpoint's spec describes before it looks
 * at the tensors, and accepts specs of gigabytes of parameters (see
 * fuzz/README.md). So that one fuzzing run stays within memory, an input that
 * parses and whose spec would need more than FZ_MAX_PARAMS parameters is
 * skipped; everything else goes to lt_model_load as it is. */
#include "fuzz_common.h"
#include "io/safetensors.h"

/* Whether lt_model_load would build a model larger than the fuzzing limit. */
static int too_big(const uint8_t *data, size_t size)
{
    lt_st_file f;
    lt_err err;
    if (lt_st_parse(data, size, NULL, &f, &err) != 0) return 0;
    const char *spec = lt_st_meta(&f, "latent.spec"), *input = lt_st_meta(&f, "latent.input");
    int c, h, w, big = 0;
    char tail;
    if (spec && input && sscanf(input, "%d,%d,%d%c", &c, &h, &w, &tail) == 3 && c > 0 && h > 0 && w > 0 &&
        (long long)c * h * w <= (1LL << 26)) {
        fz_spec_cost k = fz_spec_measure(spec, c, h, w);
        big = k.params > FZ_MAX_PARAMS;
    }
    lt_st_free(&f);
    return big;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (too_big(data, size)) return 0;
    const char *path = fz_path("model.safetensors");
    fz_write_file(path, data, size);
    lt_model *m = NULL;
    lt_err err;
    int rc = lt_model_load(&m, path, &err);
    if (rc == 0) {
        if (!m) __builtin_trap();
        (void)lt_model_noise(m);
        (void)lt_model_dropout(m);
        /* The input shape is only reachable through the metadata. */
        lt_st_file f;
        if (lt_st_parse(data, size, NULL, &f, &err) != 0) __builtin_trap();
        int c = 0, h = 0, w = 0;
        if (sscanf(lt_st_meta(&f, "latent.input"), "%d,%d,%d", &c, &h, &w) != 3) __builtin_trap();
        lt_st_free(&f);
        fz_exercise_model(m, c, h, w);
    } else if (m || !err.msg[0]) {
        __builtin_trap(); /* failures leave no model and say why */
    }
    lt_model_free(m);
    return 0;
}
