/* latent: unsupervised learning on images, in C.
 *
 * This header is the library's whole public API. The `latent` command-line tool
 * is a thin client of it. Conventions:
 *  - Functions that can fail return 0 on success or a negative LT_E* code and
 *    fill the lt_err passed last (which may be NULL) with a one-line message.
 *    The library never prints and never exits.
 *  - Images are float32 in [0, 1], laid out N x C x H x W (PyTorch's NCHW).
 *  - Every random choice is driven by an explicit seed; the same seed gives
 *    bit-identical results for any thread count. */
#ifndef LATENT_H
#define LATENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LATENT_VERSION "0.1.0"

/* ---- reproducibility ----
 * The same seed gives the same bits for any thread count and, on x86-64
 * CPUs with AVX2 and FMA (AVX-512 ones included), on any such machine with
 * the same build: the layers' matrix products run in LIBXSMM's AVX2 kernels
 * there, or in plain loops. LATENT_KERNELS=native in the environment lets
 * LIBXSMM generate for this CPU instead (other bits on an AVX-512 CPU, a few
 * percent faster); LIBXSMM_TARGET, when set, is LIBXSMM's own choice and is
 * left alone. This returns the kernels' target ("hsw" for AVX2, "skx" or
 * "spr" and so on for AVX-512; "generic" where LIBXSMM generates nothing),
 * or "openblas" in a build without LIBXSMM. */
const char *lt_kernel_target(void);
/* 1 on an x86-64 CPU with AVX2 and FMA, where the AVX2 kernels run. */
int lt_cpu_has_avx2_fma(void);
/* 1 when this process asks for the AVX2 kernels: such a CPU, and
 * LATENT_KERNELS is not "native". */
int lt_kernels_portable(void);

/* ---- errors ---- */
enum {
    LT_OK = 0,
    LT_EINVAL = -1,   /* bad argument or option value */
    LT_EIO = -2,      /* a file could not be opened, read or written */
    LT_EFORMAT = -3,  /* a file is malformed: wrong magic, size, shape, ... */
    LT_ENOMEM = -4,   /* out of memory */
    LT_ENAN = -5,     /* training diverged: NaN or Inf */
    LT_EINTR = -6,    /* interrupted on request (SIGINT/SIGTERM); state saved */
    LT_ENOTSUP = -7,  /* valid request that latent does not support (yet) */
};

typedef struct lt_err {
    int code;
    char msg[512];
} lt_err;

/* ---- datasets (IDX files: MNIST and friends) ----
 * A dataset keeps its images as bytes (N x C x H x W, row-major, as in the IDX
 * file); batches are converted to float on the fly. */
typedef struct lt_dataset {
    int n;          /* number of images */
    int c, h, w;    /* channels (always 1 for IDX), height, width */
    int n_classes;  /* max label + 1 */
    uint8_t *images;
    uint8_t *labels;
} lt_dataset;

/* Load DIR/<prefix>-images-idx3-ubyte and DIR/<prefix>-labels-idx1-ubyte (each
 * plain or with .gz), where prefix is "train" for split "train" and "t10k" for
 * split "test". Everything is validated: magic, dtype, rank, dimensions against
 * the file size, label range and that the image and label counts match. */
int lt_dataset_load(lt_dataset *ds, const char *dir, const char *split, lt_err *err);
void lt_dataset_free(lt_dataset *ds);
/* The MNIST cache directory: $XDG_CACHE_HOME/latent/mnist, else ~/.cache/latent/mnist. */
int lt_default_data_dir(char *buf, size_t size, lt_err *err);

/* ---- models ----
 * A model is a list of parts ("encoder", "decoder", ...), each a sequence of
 * layers described by a short spec string, one part after another:
 *
 *   encoder: conv(8,3,2,1) relu conv(16,3,2,1) relu conv(32,3,2,0) relu flatten
 *            dense(64) relu dropout dense(2);
 *   decoder: dense(64) relu dropout dense(288) relu unflatten(32,3,3)
 *            convt(16,3,2,0,0) relu convt(8,3,2,1,1) relu convt(1,3,2,1,1) sigmoid
 *
 * Layers: conv(out,k,stride,pad), convt(out,k,stride,pad,outpad), dense(out),
 * relu, sigmoid, dropout (probability from the model) or dropout(p), flatten,
 * unflatten(c,h,w). Layer i of part P is PyTorch's module "P.i" of an
 * nn.Sequential, so parameters are named like "encoder.0.weight" and saved in
 * PyTorch's layouts. Whitespace and newlines are free; '#' starts a comment. */
typedef struct lt_model lt_model;

/* What a model is follows from its spec: a "sample" layer at the end of the
 * encoder makes a variational autoencoder (the encoder's last layer gives 2k
 * values, means then log-variances, and the decoder takes k); a spec with no
 * "decoder" part is a classifier whose output size is the number of classes;
 * otherwise it is an autoencoder (denoising when it has input noise). */
typedef enum { LT_MODEL_AE, LT_MODEL_CLF, LT_MODEL_VAE } lt_model_kind;

/* A VAE's reconstruction term: Gaussian with variance c (per image the sum
 * over pixels of (x - x_hat)^2 / (2c), the study's convention, which leaves out
 * the constant) or Bernoulli on images binarized at 0.5 (sum of binary
 * cross-entropies: a true negative log-likelihood in nats). */
typedef struct lt_likelihood {
    int bernoulli;
    float c;
} lt_likelihood;
/* "gaussian:C" (C > 0; "gaussian" is C = 1) or "bernoulli". */
int lt_likelihood_parse(const char *text, lt_likelihood *out, lt_err *err);
int lt_likelihood_format(const lt_likelihood *lik, char *buf, size_t size);

/* Input corruption for a denoising autoencoder: the model sees noisy images
 * and is scored against the clean ones. Fresh noise is drawn for every image
 * of every epoch, from streams keyed by the seed, the epoch and the image's
 * position, so it does not depend on threads and a resumed run draws the
 * same noise. */
typedef enum { LT_NOISE_NONE, LT_NOISE_GAUSSIAN, LT_NOISE_SALT_PEPPER, LT_NOISE_MASK } lt_noise_kind;
typedef struct lt_noise {
    lt_noise_kind kind;
    float level;  /* gaussian: standard deviation; salt-and-pepper, mask: probability per pixel */
    int clip;     /* gaussian: clip the noisy image to [0, 1] */
} lt_noise;
/* "none", "gaussian:SIGMA", "gaussian:SIGMA:clip", "saltpepper:P", "mask:P". */
int lt_noise_parse(const char *text, lt_noise *out, lt_err *err);
int lt_noise_format(const lt_noise *noise, char *buf, size_t size);
/* Corrupt n images of `size` values in place; image i uses the stream
 * (seed, stream, first + i). Evaluations use seed LT_EVAL_NOISE_SEED and
 * stream ~0 with first = the image's index in its split, so every score and
 * figure of a model sees the very same noisy test images. */
#define LT_EVAL_NOISE_SEED 0x5EED0E7A1ull
void lt_noise_apply(const lt_noise *noise, float *x, int n, size_t size, uint64_t seed, uint64_t stream,
                    uint64_t first);

/* The mission's convolutional autoencoder with latent size d, written into buf. */
int lt_default_spec(char *buf, size_t size, int d);
/* Its variational twin: the encoder ends in dense(2k) and a sample layer. */
int lt_default_vae_spec(char *buf, size_t size, int k);
/* The classifier made from an autoencoder's encoder: everything up to its last
 * dense layer (the latent layer), which a dense(classes) "head" replaces.
 * From lt_default_spec, the same layers as the study's fine-tuned encoder. */
int lt_classifier_spec(char *buf, size_t size, const char *ae_spec, int classes, lt_err *err);
/* The PyTorch MNIST example's CNN: conv 32 and 64 3x3, max-pool 2, dropout
 * 0.25, dense 128, dropout 0.5, dense(classes). */
int lt_mnist_cnn_spec(char *buf, size_t size, int classes);

/* Build a model for inputs of shape c x h x w, with PyTorch's default
 * initialisation drawn from seed. For an autoencoder the spec needs parts
 * "encoder" and "decoder", and the decoder must give back the input shape. */
int lt_model_create(lt_model **out, const char *spec, int c, int h, int w, float dropout,
                    uint64_t seed, lt_err *err);
void lt_model_free(lt_model *m);
size_t lt_model_num_params(const lt_model *m);
lt_model_kind lt_model_get_kind(const lt_model *m);
void lt_model_input_shape(const lt_model *m, int *c, int *h, int *w);
/* "ae", "dae", "clf" or "vae" (the value of a checkpoint's latent.model). */
const char *lt_model_kind_name(const lt_model *m);
/* Classifier: number of classes; 0 for other kinds. */
int lt_model_classes(const lt_model *m);
const lt_likelihood *lt_model_likelihood(const lt_model *m);
int lt_model_set_likelihood(lt_model *m, const lt_likelihood *lik, lt_err *err);
/* Copy every tensor of the checkpoint at path whose name and shape match one
 * of m's (fine-tuning a pretrained encoder); *copied receives how many. No
 * match at all is an error: it means the two models have nothing in common. */
int lt_model_init_from(lt_model *m, const char *path, int *copied, lt_err *err);
/* Freeze the first `layers` layers (no gradient, no update): fine-tuning
 * with a fixed pretrained part. */
int lt_model_freeze(lt_model *m, int layers, lt_err *err);
int lt_model_latent_dim(const lt_model *m);
const char *lt_model_spec(const lt_model *m);
float lt_model_dropout(const lt_model *m);
/* The corruption a denoising autoencoder is trained and scored with (kind
 * LT_NOISE_NONE for a plain autoencoder). lt_model_eval_mse applies it to the
 * inputs with a fixed stream, so every evaluation sees the same noisy images. */
const lt_noise *lt_model_noise(const lt_model *m);
int lt_model_set_noise(lt_model *m, const lt_noise *noise, lt_err *err);
/* Human-readable summary: one line per layer with output shape and parameters. */
int lt_model_summary(const lt_model *m, char *buf, size_t size);

/* Checkpoints are safetensors files holding only the model's tensors under
 * PyTorch's names and layouts, with the spec in the metadata, so PyTorch's
 * load_state_dict(strict=True) takes them as they are. */
int lt_model_save(const lt_model *m, const char *path, lt_err *err);
int lt_model_load(lt_model **out, const char *path, lt_err *err);

/* Inference (dropout off). x: n images [n, c, h, w]; z: [n, latent]. A VAE
 * encodes to the posterior mean; lt_model_encode_dist gives mean and
 * log-variance ([n, 2k]: k means then k log-variances per image). */
int lt_model_encode_dist(lt_model *m, const float *x, int n, float *stats, int threads, lt_err *err);
/* Classifier: class probabilities (softmax of the output) [n, classes]. */
int lt_model_predict(lt_model *m, const float *x, int n, float *probs, int threads, lt_err *err);
int lt_model_encode(lt_model *m, const float *x, int n, float *z, int threads, lt_err *err);
int lt_model_decode(lt_model *m, const float *z, int n, float *y, int threads, lt_err *err);
int lt_model_reconstruct(lt_model *m, const float *x, int n, float *y, int threads, lt_err *err);
/* Mean squared reconstruction error over images [first, first+count) of ds:
 * of the clean image, from the input corrupted by the model's noise if any. */
int lt_model_eval_mse(lt_model *m, const lt_dataset *ds, int first, int count, int threads,
                      double *mse, lt_err *err);
/* The same over the images idx[0..count) of ds (a cross-validation fold). */
int lt_model_eval_mse_idx(lt_model *m, const lt_dataset *ds, const int *idx, int count, int threads,
                          double *mse, lt_err *err);

/* A model's own scores on images [first, first+count) of ds. */
typedef struct lt_eval_result {
    double loss;       /* the training objective (autoencoder: MSE; classifier: mean cross-entropy;
                          VAE: mean per-image reconstruction NLL + KL with one sample of z) */
    double mse;        /* autoencoder, VAE: mean squared error per pixel (VAE: decoding the mean) */
    double accuracy;   /* classifier: share of right answers */
    double rec, kl;    /* VAE: the loss's two parts */
} lt_eval_result;
/* confusion (may be NULL): classes x classes counts, row = true label,
 * column = prediction. VAE sampling uses the fixed stream of LT_EVAL_NOISE_SEED,
 * so a model always gets the same score. */
int lt_model_eval(lt_model *m, const lt_dataset *ds, int first, int count, int threads,
                  lt_eval_result *res, int64_t *confusion, lt_err *err);
/* VAE: importance-sampled negative log-likelihood, in nats per image, with K
 * samples from the encoder's posterior (Burda et al.'s estimate; K = 1 is
 * the ELBO). The Bernoulli likelihood gives the number published for
 * binarized MNIST; for the Gaussian one it includes the constant. */
int lt_vae_nll(lt_model *m, const lt_dataset *ds, int first, int count, int k, uint64_t seed, int threads,
               double *nll, lt_err *err);
/* Draw n images from a VAE's prior: z ~ N(0, I) from seed, decoded. */
int lt_vae_sample(lt_model *m, int n, uint64_t seed, float *images, int threads, lt_err *err);
/* Score generated images with a classifier: the share it assigns a class with
 * probability above 0.9, and how evenly its answers cover the classes (the
 * entropy of the predicted-class histogram over log(classes), 1 = uniform).
 * counts (may be NULL) receives the histogram. */
int lt_generative_score(lt_model *clf, const float *images, int n, int threads, double *confident,
                        double *spread, int *counts, lt_err *err);

/* Baselines for a denoising autoencoder on test: the mean squared error of
 * the noisy images themselves, and of the best linear denoiser (Wiener /
 * LMMSE) fitted on train's mean and covariance, for the same noisy images
 * lt_model_eval_mse scores. lmmse_mse is NaN unless the noise is unclipped
 * Gaussian, where that estimate is the linear optimum. */
int lt_denoise_baselines(const lt_dataset *train, const lt_dataset *test, const lt_noise *noise, int threads,
                         double *noisy_mse, double *lmmse_mse, lt_err *err);

/* ---- training ---- */
typedef enum { LT_OPT_ADAM, LT_OPT_ADAMW, LT_OPT_SGD, LT_OPT_RMSPROP, LT_OPT_ADADELTA } lt_opt_kind;
/* "adam" -> LT_OPT_ADAM, ...; returns -1 for an unknown name. */
int lt_opt_from_name(const char *name);
const char *lt_opt_name(lt_opt_kind k);

typedef struct lt_train_config {
    const char *out_dir;   /* receives model.safetensors, train_state.safetensors, metrics.csv */
    const char *spec;      /* NULL: lt_default_spec(latent) */
    int latent;            /* latent size d for the default spec */
    int epochs;            /* total epochs (a resumed run continues up to this) */
    int batch;
    double lr;
    double weight_decay;
    double momentum;       /* SGD only */
    float dropout;
    lt_noise noise;        /* kind LT_NOISE_NONE: autoencoder; else denoising autoencoder */
    lt_opt_kind optimizer;
    uint64_t seed;
    int threads;           /* 0: OpenMP's default */
    int val;               /* images held out from the end of the training file */
    int limit;             /* train on the first `limit` images of the rest; 0: all */
    int resume;            /* continue the run in out_dir */
    volatile const int *stop; /* when *stop becomes non-zero, save and return LT_EINTR */
    /* Other models (the spec, when given, decides; these pick the default one). */
    lt_model_kind model;   /* LT_MODEL_AE (default), LT_MODEL_CLF or LT_MODEL_VAE */
    lt_likelihood likelihood; /* VAE; c = 0 means gaussian:1 */
    const char *init;      /* checkpoint whose matching tensors start the model (fine-tuning) */
    int freeze;            /* with init: freeze the layers taken from it */
    /* Index subsets (k-fold cross-validation): when train_idx is set, train on
     * the images train_idx[0..n_train) of ds and validate on val_idx[0..n_val)
     * (n_val may be 0) instead of val/limit, which must then be 0. The state
     * file keeps a hash of both lists: a resumed run refuses other ones. */
    const int *train_idx;
    int n_train;
    const int *val_idx;
    int n_val;
    /* Data-parallel training over the processes of an MPI job (see lt_dist):
     * each computes a slice of every batch; NULL trains in this process alone. */
    struct lt_dist *dist;
} lt_train_config;

/* Fill cfg with the mission's baseline protocol (d=2, 40 epochs, batch 256,
 * Adam lr 1e-3, weight decay 5e-5, dropout 0, 10k validation images, seed 1). */
void lt_train_config_default(lt_train_config *cfg);

typedef struct lt_progress {
    int epoch, epochs;        /* 1-based epoch being run */
    int batch, batches;       /* batches done in this epoch */
    double train_loss;        /* mean over the batches done so far */
    double val_loss;          /* set when epoch_done */
    double images_per_sec;    /* this epoch so far */
    double epoch_seconds;     /* this epoch so far */
    double eta_seconds;       /* for the whole run */
    int epoch_done;           /* 1 on the call after an epoch's validation */
    double val_accuracy;      /* classifier, when epoch_done */
    double val_rec, val_kl;   /* VAE, when epoch_done */
} lt_progress;
typedef void (*lt_progress_fn)(void *ctx, const lt_progress *p);

typedef struct lt_train_result {
    int epochs_done;
    double train_loss, val_loss;  /* of the last epoch */
    double seconds;               /* wall time of this invocation */
    double images_per_sec;
    double val_accuracy;          /* classifier */
    double val_rec, val_kl;       /* VAE */
} lt_train_result;

/* On --resume: fill cfg with the settings stored by the run in dir (the spec is
 * copied into spec_buf), so only the settings a user gives again need checking. */
int lt_train_load_config(const char *dir, lt_train_config *cfg, char *spec_buf, size_t spec_size,
                         lt_err *err);

/* Train the model on ds (a "train" split) as cfg says, writing the model,
 * the training state and metrics.csv into cfg->out_dir after every epoch. */
int lt_train(const lt_train_config *cfg, const lt_dataset *ds, lt_progress_fn progress, void *ctx,
             lt_train_result *result, lt_err *err);

/* ---- processes of an MPI job ----
 * `mpirun -np N latent ...` starts N processes; lt_dist joins them. latent is
 * built with MPI when CMake finds it (OpenMPI); otherwise, or for a process not
 * started by mpirun, the job has one process and everything runs as usual. */
typedef struct lt_dist lt_dist;
/* Join the job (MPI_Init when started by mpirun/srun). Fails with LT_ENOTSUP
 * when started by mpirun with N > 1 but built without MPI. */
int lt_dist_init(lt_dist **out, int *argc, char ***argv, lt_err *err);
/* Leave the job (MPI_Finalize); NULL is a no-op. */
void lt_dist_finalize(lt_dist *d);
int lt_dist_rank(const lt_dist *d);   /* 0 for NULL */
int lt_dist_size(const lt_dist *d);   /* 1 for NULL */
int lt_dist_built(void);              /* 1 when built with MPI */

/* ---- hyperparameter search with k-fold cross-validation ---- */
typedef enum {
    LT_HP_LR, LT_HP_BATCH, LT_HP_LATENT, LT_HP_DROPOUT, LT_HP_WEIGHT_DECAY, LT_HP_MOMENTUM,
    LT_HP_OPTIMIZER, LT_HP_EPOCHS, LT_HP_COUNT
} lt_hp;
/* "lr", "batch", ..., "weight_decay", ... and the flag "--lr", ..., "--weight-decay". */
const char *lt_hp_name(lt_hp hp);
const char *lt_hp_flag(lt_hp hp);

/* Where a hyperparameter comes from: a fixed value, uniform:A:B,
 * loguniform:A:B, int:A:B, int:A:B:log or choice:a,b,c. The optimizer takes
 * names (choice:adam,rmsprop); integer hyperparameters (batch, latent,
 * epochs) take int: and integer choices; real ones uniform:, loguniform: and
 * choices. Every value is range-checked. */
typedef enum {
    LT_SPACE_FIXED, LT_SPACE_UNIFORM, LT_SPACE_LOGUNIFORM, LT_SPACE_INT, LT_SPACE_INT_LOG, LT_SPACE_CHOICE
} lt_space_kind;
#define LT_SPACE_MAX_CHOICES 16
typedef struct lt_space {
    lt_space_kind kind;
    double lo, hi;                          /* uniform, loguniform, int, int log */
    int n;                                  /* choice: number of values; fixed: 1 */
    double values[LT_SPACE_MAX_CHOICES];    /* choice, fixed (optimizer: its lt_opt_kind) */
} lt_space;
/* Parse text for hyperparameter hp; errors name the flag, what was expected and what was found. */
int lt_space_parse(lt_hp hp, const char *text, lt_space *out, lt_err *err);
/* Canonical text of a space (parses back to the same space). */
int lt_space_format(lt_hp hp, const lt_space *s, char *buf, size_t size);

typedef struct lt_hparams {
    double lr, weight_decay, momentum, dropout;
    int batch, latent, epochs;
    lt_opt_kind optimizer;
} lt_hparams;
double lt_hparams_get(const lt_hparams *h, lt_hp hp);
void lt_hparams_set(lt_hparams *h, lt_hp hp, double v);
/* One value as text: the optimizer's name, integers as integers, reals with %.10g. */
int lt_hparam_format(lt_hp hp, double v, char *buf, size_t size);
/* The hyperparameters of trial `trial` (0-based). Each one comes from its own
 * stream lt_rng_for(seed, trial, hp), so a flag added or changed never moves the
 * others; real values are rounded to 4 significant digits, so a table row can
 * be rerun by hand with latent train. */
void lt_space_draw(const lt_space space[LT_HP_COUNT], uint64_t seed, int trial, lt_hparams *out);

/* Assign n images to k folds: a permutation drawn from seed, cut into k blocks
 * whose sizes differ by at most one. fold_of[i] is image i's fold. */
int lt_kfold(int n, int k, uint64_t seed, int *fold_of, lt_err *err);

#define LT_SEARCH_MAX_FIXED 16
typedef struct lt_search_config {
    const char *out_dir;         /* results, the trials' runs, the refit model, the search state */
    lt_space space[LT_HP_COUNT];
    int n_fixed;                 /* > 0: run these trials instead of drawing (latent compare) */
    lt_hparams fixed[LT_SEARCH_MAX_FIXED];
    int trials, folds;
    uint64_t seed;               /* trials' draws, fold assignment, every run's seed */
    int limit;                   /* cross-validate on the first `limit` training images (0: all) */
    lt_noise noise;              /* input noise of every run (a denoising autoencoder); none by default */
    int threads;
    int refit;                   /* refit the best trial on all of them and score it on test */
    int prune;                   /* median rule: stop a fold whose validation loss after an epoch
                                    is above the median of earlier trials' at the same fold and epoch */
    int prune_startup;           /* trials that must have reached that point before any pruning */
    int prune_warmup;            /* epochs before the rule applies */
    int resume;                  /* continue the search in out_dir */
    volatile const int *stop;    /* non-zero: save every run and return LT_EINTR */
    lt_dist *dist;               /* spread folds over the job's processes; NULL: this one */
} lt_search_config;

/* The defaults of `latent search`: the study's space (lr loguniform:1e-4:1e-2,
 * batch choice:64,128,256, latent int:2:64, dropout uniform:0:0.2, weight decay
 * 5e-5, adam, 40 epochs), 5 trials, 5 folds, seed 1, refit on. */
void lt_search_config_default(lt_search_config *cfg);
/* On resume: the settings stored in dir's search.json. */
int lt_search_load_config(const char *dir, lt_search_config *cfg, lt_err *err);

typedef enum { LT_FOLD_TODO, LT_FOLD_DONE, LT_FOLD_PRUNED, LT_FOLD_DIVERGED, LT_FOLD_SKIPPED } lt_fold_status;
const char *lt_fold_status_name(lt_fold_status s);

typedef struct lt_trial_result {
    lt_hparams hp;
    lt_fold_status status;       /* done, or the first of its folds that was not */
    double *score;               /* [folds] final validation loss per fold (NaN unless done) */
    double *curve;               /* [folds * hp.epochs] validation loss after each epoch (NaN: not run) */
    double mean, std;            /* over folds (population std, as sklearn); NaN unless all done */
    int rank;                    /* 1 = lowest mean; trials without a mean come last */
    double seconds;              /* training time of its folds, over every invocation */
} lt_trial_result;

typedef struct lt_search_result {
    int n_trials, folds;
    lt_trial_result *trials;
    int best;                    /* index of the best trial; -1 when none finished */
    double test_mse;             /* of the refit model; NaN without refit */
    double refit_seconds;
    double seconds;              /* wall time of this invocation */
} lt_search_result;
void lt_search_result_free(lt_search_result *r);

typedef struct lt_search_progress {
    int trial, fold;             /* the unit of work (fold -1: the refit) */
    int rank;                    /* process that ran it */
    int unit_done;               /* 1: the unit finished (status, score, unit_seconds set);
                                    0: live progress of a unit run by this process */
    lt_fold_status status;
    double score, unit_seconds;
    int epoch, epochs, batch, batches;
    double train_loss;
    int epoch_done;              /* live progress after an epoch's validation (val_loss set) */
    double val_loss;
    int units_done, units;       /* fold runs of the whole search, done and in all */
    double eta_seconds;          /* for the whole search, from this invocation's pace */
} lt_search_progress;
typedef void (*lt_search_progress_fn)(void *ctx, const lt_search_progress *p);

/* Run the search: every trial's k folds (each an lt_train run in
 * out_dir/trials/NNN/fold-K, so it resumes after an interruption), the table
 * (results.csv, results.json in the style of sklearn's cv_results_), then the
 * refit of the best trial on every image (out_dir/refit) scored on test (which
 * may be NULL without refit). On every process of cfg->dist; process 0 hands
 * out the folds, collects the results and writes the files, and only its
 * result is filled. */
int lt_search(const lt_search_config *cfg, const lt_dataset *train, const lt_dataset *test,
              lt_search_progress_fn progress, void *ctx, lt_search_result *result, lt_err *err);

/* ---- files ---- */
/* Write a whole file atomically (temporary file in the same directory, fsync,
 * rename): readers see the old file or the new one, never half of one. */
int lt_write_file_atomic(const char *path, const void *data, size_t n, lt_err *err);
/* Create a directory and any missing parents (mkdir -p). */
int lt_mkdir_p(const char *path, lt_err *err);

/* ---- images ---- */
/* Tile n one-channel images (floats in [0,1], each h x w, contiguous) into
 * a grid of `cols` columns, each pixel scaled up `scale` times with a 2-pixel
 * gap, and write it as a PNG. */
int lt_write_image_grid(const char *path, const float *images, int n, int h, int w, int cols,
                        int scale, lt_err *err);
/* Write an 8-bit grayscale PNG atomically (temporary file, then rename). */
int lt_png_write_gray(const char *path, const uint8_t *pixels, int width, int height, lt_err *err);

/* ---- plots ----
 * Figures drawn with cairo. The format follows the file name: ".png" or
 * ".svg" (any case); another ending is LT_EINVAL. Files are written
 * atomically (temporary file, then rename). An SVG also carries the title as
 * its <title> element. Non-finite values, and values <= 0 on a log axis, are
 * skipped (a line breaks there) and never move the axis ranges; a
 * non-finite heatmap cell is drawn grey and annotated "n/a". */
typedef struct lt_series {
    const char *label;       /* legend entry; NULL for none */
    const double *x, *y;     /* n points */
    int n;
    const double *lo, *hi;   /* optional shaded band (e.g. the spread over folds); both or NULL */
} lt_series;

/* Line chart of n_series curves, one colour each, with a legend; log_y: a logarithmic y axis. */
int lt_plot_lines(const char *path, const char *title, const char *xlabel, const char *ylabel,
                  const lt_series *series, int n_series, int log_y, lt_err *err);
/* Scatter of n points, coloured by class cls[i] in [0, n_classes) with a
 * legend "0", "1", ... (cls NULL: one colour). Optional marks (n_marks,
 * may be 0) are drawn on top as discs numbered 1.. in order. */
int lt_plot_scatter(const char *path, const char *title, const char *xlabel, const char *ylabel, const float *x,
                    const float *y, const int *cls, int n, int n_classes, const float *mark_x, const float *mark_y,
                    int n_marks, lt_err *err);
/* The scatter with a legend of names (names[k] for class k; NULL entries
 * fall back to the number) under the heading given (NULL: "class"). */
int lt_plot_scatter_named(const char *path, const char *title, const char *xlabel, const char *ylabel,
                          const float *x, const float *y, const int *cls, int n, int n_classes,
                          const char *const *names, const char *heading, lt_err *err);
/* The same scatter with its n_marks (>= 1) numbered marks, beside a grid of
 * the n_marks images (floats in [0,1], h x w each) numbered alike; note
 * (may be NULL) is a line of text under the figure. */
int lt_plot_map_digits(const char *path, const char *title, const char *xlabel, const char *ylabel, const float *x,
                       const float *y, const int *cls, int n, int n_classes, const float *mark_x, const float *mark_y,
                       int n_marks, const float *images, int h, int w, const char *note, lt_err *err);
/* Heatmap of rows x cols values (row-major), e.g. a confusion matrix, with a
 * colour bar; row_labels / col_labels may be NULL (then 0, 1, ...);
 * annotate: print each value in its cell (integers without decimals). */
int lt_plot_heatmap(const char *path, const char *title, const char *xlabel, const char *ylabel,
                    const char *const *row_labels, const char *const *col_labels, const double *values, int rows,
                    int cols, int annotate, lt_err *err);

/* ---- embeddings: PCA and t-SNE maps of codes or images ----
 * Points are float rows [n, d]. Every result is bit-identical for the same
 * input and seed whatever the thread count. */

/* PCA through LAPACK. components holds k orthonormal rows of length d,
 * largest variance first, each signed so its largest entry is positive. */
typedef struct lt_pca {
    int d, k;
    float *mean;             /* [d] */
    float *components;       /* [k, d] */
    double *variance;        /* [k] variance along each component (divided by n - 1) */
    double *variance_ratio;  /* [k] share of the total variance */
    double total_variance;   /* trace of the covariance */
} lt_pca;
int lt_pca_fit(lt_pca *p, const float *x, int n, int d, int k, lt_err *err);
/* y [n, k] = (x - mean) components^T. */
int lt_pca_transform(const lt_pca *p, const float *x, int n, float *y, lt_err *err);
/* The exact inverse map: x [n, d] = mean + y components (a point of the
 * k-dimensional map goes back to the nearest point of the data space that
 * projects onto it). */
int lt_pca_inverse(const lt_pca *p, const float *y, int n, float *x, lt_err *err);
void lt_pca_free(lt_pca *p);

/* t-SNE (van der Maaten 2014) to 2-D: perplexity calibrated per point by
 * binary search over its 3*perplexity nearest neighbours (exact: brute force
 * through BLAS, or a vantage-point tree for low-dimensional inputs),
 * symmetrised sparse affinities, repulsion by FFT-accelerated interpolation
 * (Linderman et al. 2019, as FIt-SNE) or Barnes-Hut, early exaggeration,
 * momentum and per-coordinate gains, PCA initialisation. */
typedef enum { LT_TSNE_INIT_PCA, LT_TSNE_INIT_RANDOM } lt_tsne_init;
typedef enum { LT_REPULSION_AUTO, LT_REPULSION_BH, LT_REPULSION_FFT } lt_tsne_repulsion;
typedef enum { LT_KNN_AUTO, LT_KNN_BRUTE, LT_KNN_VPTREE } lt_knn_method;
typedef struct lt_tsne_config {
    double perplexity;         /* 30; needs n > 3 * perplexity */
    int iters;                 /* 1000, early exaggeration included */
    lt_tsne_repulsion repulsion; /* AUTO or BH: Barnes-Hut (exact when theta is 0); FFT: interpolation, theta unused */
    double theta;              /* Barnes-Hut accuracy, 0.5; 0 computes the repulsion exactly (O(n^2)) */
    double exaggeration;       /* 12 */
    int exaggeration_iters;    /* 250 */
    double learning_rate;      /* 0: max(n / exaggeration / 4, 50), scikit-learn's "auto" */
    double momentum, final_momentum; /* 0.5, then 0.8 after the exaggeration phase */
    lt_tsne_init init;         /* PCA (scaled to standard deviation 1e-4) or random N(0, 1e-4^2) */
    lt_knn_method knn;         /* AUTO: the tree for d <= 10, else brute force */
    uint64_t seed;             /* random initialisation and the tree's vantage points */
    int threads;               /* 0: OpenMP's default */
    volatile const int *stop;  /* when *stop becomes non-zero, return LT_EINTR */
} lt_tsne_config;
void lt_tsne_config_default(lt_tsne_config *cfg);

typedef struct lt_tsne_progress {
    int iter, iters;           /* iterations done */
    double kl;                 /* KL divergence of the map at this iteration (exaggeration removed) */
    double seconds;            /* since the start, neighbours included */
    double eta_seconds;
} lt_tsne_progress;
typedef void (*lt_tsne_progress_fn)(void *ctx, const lt_tsne_progress *p);

typedef struct lt_tsne_result {
    double kl;                 /* final KL divergence */
    double seconds;            /* wall time in all */
    double knn_seconds;        /* of which nearest neighbours and affinities */
    double learning_rate;      /* the one used */
    int neighbours;            /* nearest neighbours per point */
    lt_knn_method knn;         /* the method used */
    lt_tsne_repulsion repulsion; /* BH (theta 0: exact) or FFT */
} lt_tsne_result;

/* y [n, 2] gets the map of x [n, d]. progress (may be NULL) is called every
 * 50 iterations and at the end. */
int lt_tsne(const lt_tsne_config *cfg, const float *x, int n, int d, float *y, lt_tsne_progress_fn progress,
            void *ctx, lt_tsne_result *result, lt_err *err);

/* How faithful a 2-D map y of x is: the leave-one-out accuracy of a k-NN
 * majority vote of the labels in the map (ties: the label of the nearest
 * neighbour among the tied ones), over all n points, and trustworthiness
 * (Venna and Kaski 2001) with k neighbours against the input x. With
 * n > max_points (> 0), trustworthiness is computed on a seeded sample of
 * max_points points (both spaces restricted to the sample). */
typedef struct lt_map_quality {
    double knn_accuracy;
    double trustworthiness;
    int k;
    int n_knn;                 /* points voted on: n */
    int n_trust;               /* points trustworthiness was computed on: n, or max_points */
} lt_map_quality;
int lt_map_quality_score(const float *x, int n, int d, const float *y, const uint8_t *labels, int k,
                         int max_points, uint64_t seed, int threads, lt_map_quality *q, lt_err *err);
/* Trustworthiness T(k) of y [n, dy] for x [n, dx], all points, exactly. */
int lt_trustworthiness(const float *x, int dx, const float *y, int dy, int n, int k, int threads, double *t,
                       lt_err *err);

/* Back from a 2-D map to the data: each query point q [nq, 2] becomes the
 * average of the codes [n, d] of its k nearest points in coords [n, 2],
 * weighted by 1 / (distance^2 + eps^2) (eps: 1e-3 of the map's extent, so a
 * query on a point returns that point's code). out [nq, d]. */
int lt_map_inverse_knn(const float *coords, const float *codes, int n, int d, const float *q, int nq, int k,
                       float *out, lt_err *err);

/* A map as `latent embed` leaves it and `latent generate` reads it: a
 * safetensors file with tensors "coords" [n, 2] F32, "codes" [n, d] (F32
 * latent codes, or U8 pixels for a map of images), "labels" [n] U8, "index"
 * [n] I32 (the point's image in its split; "all" is train then test) and,
 * for PCA, "pca_mean" [d] and "pca_components" [2, d]; metadata "format":
 * "latent-map", "version": "1", "method", "input", "split", "params",
 * "image_shape". */
#define LT_MAP_FORMAT "latent-map"
#define LT_MAP_VERSION "1"
typedef struct lt_map {
    char method[16];      /* "pca" or "tsne" */
    char input[16];       /* "latent" or "pixels" */
    char split[16];       /* "test", "train" or "all" */
    char params[512];     /* the method's parameters, as text */
    int n, d;
    int h, w;             /* size of the images (metadata "image_shape" "HxW") */
    float *coords;        /* [n, 2] */
    float *codes;         /* [n, d]; pixels in [0, 1] for input "pixels" */
    uint8_t *labels;      /* [n] */
    int32_t *index;       /* [n] */
    lt_pca pca;           /* method "pca": k = 2; else zeroed */
} lt_map;
int lt_map_save(const lt_map *m, const char *path, lt_err *err);
/* Validates everything: format and version, shapes against each other, finite values. */
int lt_map_load(lt_map *m, const char *path, lt_err *err);
void lt_map_free(lt_map *m);

/* TensorBoard projector files in dir: tensors.tsv (x [n, d]), metadata.tsv
 * (columns label and index, with a header), sprite.png (the images [n, h*w]
 * as bytes, in a square grid; left out when it would exceed TensorBoard's
 * 8192 x 8192 limit, and *sprite is set to 0) and projector_config.pbtxt.
 * Each file is written atomically. */
int lt_projector_export(const char *dir, const char *tensor_name, const float *x, int n, int d,
                        const uint8_t *labels, const int32_t *index, const uint8_t *images, int h, int w,
                        int *sprite, lt_err *err);

/* Write a whole file atomically (temporary file, fsync, rename): for the
 * side files of figures and maps that the CLI composes as text. */
int lt_write_file_atomic(const char *path, const void *data, size_t n, lt_err *err);
/* Create a directory and any missing parents (mkdir -p). */
int lt_mkdir_p(const char *path, lt_err *err);

#ifdef __cplusplus
}
#endif
#endif
