/* optim: SGD (momentum), Adam, AdamW, RMSprop and Adadelta with PyTorch 1.13's
 * exact update rules and defaults, so a run compares one to one with PyTorch.
 * State is one or two float arrays (slots) parallel to the parameter block. */
#ifndef LATENT_OPTIM_H
#define LATENT_OPTIM_H

#include "core/core.h"

typedef struct lt_optim {
    lt_opt_kind kind;
    double lr, weight_decay, momentum;
    double beta1, beta2, eps;  /* Adam/AdamW: 0.9, 0.999, 1e-8 */
    double alpha;              /* RMSprop: 0.99 (eps 1e-8) */
    double rho;                /* Adadelta: 0.9 (eps 1e-6) */
    int64_t t;                 /* steps taken */
    size_t n;
    size_t first;              /* parameters [0, first) are frozen: never updated */
    float *slot[2];
} lt_optim;

int lt_optim_init(lt_optim *o, lt_opt_kind kind, double lr, double weight_decay, double momentum,
                  size_t n, lt_err *err);
void lt_optim_free(lt_optim *o);
/* Number of state arrays the optimizer keeps (0, 1 or 2). */
int lt_optim_slots(const lt_optim *o);
/* One update of params from grad (grad is left unchanged), on `threads`
 * threads (0: OpenMP's default); the result does not depend on the count. */
void lt_optim_step(lt_optim *o, float *params, const float *grad, int threads);
/* The same in parts: lt_optim_begin counts the step, then lt_optim_update
 * updates params[lo, hi) (any split of [0, n) gives the same result, each
 * part once, from any thread; frozen parameters are skipped). */
void lt_optim_begin(lt_optim *o);
void lt_optim_update(const lt_optim *o, float *params, const float *grad, size_t lo, size_t hi);

#endif
