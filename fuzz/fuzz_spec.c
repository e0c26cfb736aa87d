/* libFuzzer harness: the architecture spec (lt_model_create; grammar in
 * src/nn/spec.c).
 *
 * Input: 3 bytes choosing the input shape, then the spec text.
 *   byte 0: channels 1 + b % 4;  byte 1: height 1 + b % 32;  byte 2: width 1 + b % 32
 * (so "0;;" selects the MNIST shape 1x28x28). Every spec is parsed; one that
 * would build a model of more than FZ_MAX_PARAMS parameters is not created,
 * since the library accepts specs of gigabytes (see fuzz/README.md); one that
 * is built, and is small enough, also runs a forward pass on one image. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    int c = 1 + data[0] % 4, h = 1 + data[1] % 32, w = 1 + data[2] % 32;
    char *spec = fz_strndup(data + 3, size - 3);
    fz_spec_cost k = fz_spec_measure(spec, c, h, w);
    if (k.params <= FZ_MAX_PARAMS) {
        lt_model *m = NULL;
        lt_err err;
        int rc = lt_model_create(&m, spec, c, h, w, 0.25f, 42, &err);
        if (rc == 0) {
            if (!m || !k.ok) __builtin_trap(); /* created although the spec does not parse */
            fz_exercise_model(m, c, h, w);
        } else if (m || !memchr(err.msg, 0, sizeof err.msg) || !err.msg[0]) {
            __builtin_trap(); /* failures leave no model and say why */
        }
        lt_model_free(m);
    }
    free(spec);
    return 0;
}
