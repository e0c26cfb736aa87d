/* The training loop of the autoencoder: data order, steps, validation,
 * checkpoints every epoch, exact resume.
 *
 * Everything random is derived from the run's seed and counters (epoch for
 * the data order, global step for dropout), so the state to resume is small:
 * the parameters, the optimizer's moments and a few counters. They are written
 * together in one file (train_state.safetensors) so they can never disagree;
 * model.safetensors is the export for users and PyTorch. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dist/dist.h"
#include "io/safetensors.h"
#include "nn/net.h"
#include "optim/optim.h"

#define STATE_FILE "train_state.safetensors"
#define STATE_FORMAT "1"
/* metrics.csv: the same first columns for every model, then its own. */
static const char *metrics_header(lt_model_kind k)
{
    switch (k) {
    case LT_MODEL_CLF: return "epoch,train_loss,val_loss,seconds,images_per_sec,train_accuracy,val_accuracy\n";
    case LT_MODEL_VAE: return "epoch,train_loss,val_loss,seconds,images_per_sec,val_rec,val_kl\n";
    default: return "epoch,train_loss,val_loss,seconds,images_per_sec\n";
    }
}

void lt_train_config_default(lt_train_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->latent = 2;
    cfg->epochs = 40;
    cfg->batch = 256;
    cfg->lr = 1e-3;
    cfg->weight_decay = 5e-5;
    cfg->dropout = 0.0f;
    cfg->optimizer = LT_OPT_ADAM;
    cfg->seed = 1;
    cfg->val = 10000;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* What a run is, as stored in the state file: the settings that must not change
 * on resume, then the counters. */
typedef struct run_state {
    int epoch;            /* epochs completed */
    int batch;            /* batches of epoch+1 completed (0 at an epoch boundary) */
    int64_t step;         /* optimizer steps taken */
    double loss_sum;      /* sum of loss*images over the batches of the current epoch */
    int64_t correct;      /* classifier: right answers in the current epoch */
    char *metrics;        /* metrics.csv so far */
} run_state;

static int path_in(char *buf, size_t size, const char *dir, const char *name, lt_err *err)
{
    int n = snprintf(buf, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size) return lt_errf(err, LT_EINVAL, "output path too long: %s/%s", dir, name);
    return 0;
}

/* FNV-1a over the subset lists, so a resumed fold refuses another fold's images. */
static void subset_hash(const lt_train_config *cfg, char *buf, size_t size)
{
    if (!cfg->train_idx) {
        snprintf(buf, size, "none");
        return;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    const int *lists[2] = {cfg->train_idx, cfg->val_idx};
    const int counts[2] = {cfg->n_train, cfg->val_idx ? cfg->n_val : 0};
    for (int l = 0; l < 2; l++) {
        for (int i = 0; i < counts[l]; i++) h = (h ^ (uint32_t)lists[l][i]) * 0x100000001b3ull;
        h = (h ^ 0xffffffffu) * 0x100000001b3ull;
    }
    snprintf(buf, size, "%d/%d/%016llx", counts[0], counts[1], (unsigned long long)h);
}

static int save_state(const lt_train_config *cfg, const lt_model *m, const lt_optim *o,
                      const run_state *rs, lt_err *err)
{
    char path[4096];
    int rc = path_in(path, sizeof path, cfg->out_dir, STATE_FILE, err);
    if (rc) return rc;
    int64_t n = (int64_t)m->n_params;
    lt_st_entry e[3] = {{"params", LT_DT_F32, 1, &n, m->params}};
    int ne = 1;
    static const char *slot_names[2] = {"optim.slot0", "optim.slot1"};
    for (int s = 0; s < lt_optim_slots(o); s++) e[ne++] = (lt_st_entry){slot_names[s], LT_DT_F32, 1, &n, o->slot[s]};
    char v[21][64];
    snprintf(v[0], 64, "%d,%d,%d", m->c, m->h, m->w);
    snprintf(v[1], 64, "%.9g", m->dropout);
    snprintf(v[2], 64, "%d", rs->epoch);
    snprintf(v[3], 64, "%d", rs->batch);
    snprintf(v[4], 64, "%lld", (long long)rs->step);
    snprintf(v[5], 64, "%.17g", rs->loss_sum);
    snprintf(v[6], 64, "%d", cfg->batch);
    snprintf(v[7], 64, "%.17g", cfg->lr);
    snprintf(v[8], 64, "%.17g", cfg->weight_decay);
    snprintf(v[9], 64, "%.17g", cfg->momentum);
    snprintf(v[10], 64, "%llu", (unsigned long long)cfg->seed);
    snprintf(v[11], 64, "%d", cfg->val);
    snprintf(v[12], 64, "%d", cfg->limit);
    snprintf(v[13], 64, "%d", cfg->epochs);
    lt_noise_format(&m->noise, v[14], 64);
    lt_likelihood_format(&m->lik, v[15], 64);
    snprintf(v[16], 64, "%d", m->first_trainable);
    snprintf(v[17], 64, "%lld", (long long)rs->correct);
    subset_hash(cfg, v[18], 64);
    const char *meta[] = {"latent.state.format", STATE_FORMAT, "spec", m->spec, "input", v[0], "dropout", v[1],
                          "epoch", v[2], "batch", v[3], "step", v[4], "loss_sum", v[5], "batch_size", v[6],
                          "lr", v[7], "weight_decay", v[8], "momentum", v[9], "seed", v[10], "val", v[11],
                          "limit", v[12], "epochs", v[13], "noise", v[14], "likelihood", v[15],
                          "frozen", v[16], "correct", v[17], "model", lt_model_kind_name(m), "optimizer", lt_opt_name(o->kind),
                          "metrics", rs->metrics ? rs->metrics : "", "subset", v[18]};
    return lt_st_write(path, e, ne, meta, (int)(sizeof meta / sizeof meta[0] / 2), err);
}

static const char *get_meta(const lt_st_file *f, const char *key, const char *path, int *rc, lt_err *err)
{
    const char *v = lt_st_meta(f, key);
    if (!v && !*rc) *rc = lt_errf(err, LT_EFORMAT, "%s: training state has no '%s'", path, key);
    return v ? v : "";
}

int lt_train_load_config(const char *dir, lt_train_config *cfg, char *spec_buf, size_t spec_size,
                         lt_err *err)
{
    char path[4096];
    int rc = path_in(path, sizeof path, dir, STATE_FILE, err);
    lt_st_file f;
    if (rc || (rc = lt_st_read(path, &f, err))) return rc;
    const char *spec = get_meta(&f, "spec", path, &rc, err);
    int opt = lt_opt_from_name(get_meta(&f, "optimizer", path, &rc, err));
    cfg->batch = atoi(get_meta(&f, "batch_size", path, &rc, err));
    cfg->lr = strtod(get_meta(&f, "lr", path, &rc, err), NULL);
    cfg->weight_decay = strtod(get_meta(&f, "weight_decay", path, &rc, err), NULL);
    cfg->momentum = strtod(get_meta(&f, "momentum", path, &rc, err), NULL);
    cfg->seed = strtoull(get_meta(&f, "seed", path, &rc, err), NULL, 10);
    cfg->val = atoi(get_meta(&f, "val", path, &rc, err));
    cfg->limit = atoi(get_meta(&f, "limit", path, &rc, err));
    cfg->dropout = strtof(get_meta(&f, "dropout", path, &rc, err), NULL);
    cfg->epochs = atoi(get_meta(&f, "epochs", path, &rc, err));
    const char *noise = get_meta(&f, "noise", path, &rc, err);
    if (!rc && lt_noise_parse(noise, &cfg->noise, err)) rc = lt_errf(err, LT_EFORMAT, "%s: bad noise '%s'", path, noise);
    cfg->freeze = atoi(get_meta(&f, "frozen", path, &rc, err)) > 0;
    const char *kind = get_meta(&f, "model", path, &rc, err);
    cfg->model = !strcmp(kind, "clf") ? LT_MODEL_CLF : !strcmp(kind, "vae") ? LT_MODEL_VAE : LT_MODEL_AE;
    /* Only a VAE's likelihood means anything (early classifier runs stored
     * "gaussian:0" there). */
    const char *lik = get_meta(&f, "likelihood", path, &rc, err);
    if (cfg->model != LT_MODEL_VAE) cfg->likelihood = (lt_likelihood){0, 1.0f};
    else if (!rc && lt_likelihood_parse(lik, &cfg->likelihood, err))
        rc = lt_errf(err, LT_EFORMAT, "%s: bad likelihood '%s'", path, lik);
    if (!rc && opt < 0) rc = lt_errf(err, LT_EFORMAT, "%s: unknown optimizer in training state", path);
    if (!rc && strlen(spec) >= spec_size) rc = lt_errf(err, LT_EINVAL, "%s: spec too long", path);
    if (!rc) {
        cfg->optimizer = (lt_opt_kind)opt;
        memcpy(spec_buf, spec, strlen(spec) + 1);
        cfg->spec = spec_buf;
    }
    lt_st_free(&f);
    return rc;
}

/* Load model, optimizer and counters of the run in cfg->out_dir, refusing
 * settings that differ from the stored ones (they would change the run). */
static int load_state(const lt_train_config *cfg, lt_model **mp, lt_optim *o, run_state *rs, lt_err *err)
{
    lt_train_config st;
    char spec[8192], path[4096];
    int rc = lt_train_load_config(cfg->out_dir, &st, spec, sizeof spec, err);
    if (rc) return rc;
#define SAME(field, flag, fmt)                                                                          \
    if (st.field != cfg->field)                                                                         \
        return lt_errf(err, LT_EINVAL, "%s " fmt " differs from the run in %s (" fmt "); a resumed run " \
                       "keeps its settings", flag, cfg->field, cfg->out_dir, st.field);
    SAME(batch, "--batch", "%d")
    SAME(lr, "--lr", "%g")
    SAME(weight_decay, "--weight-decay", "%g")
    SAME(momentum, "--momentum", "%g")
    SAME(seed, "--seed", "%" PRIu64)
    SAME(val, "--val", "%d")
    SAME(limit, "--limit", "%d")
    SAME(dropout, "--dropout", "%g")
#undef SAME
    char a[64], b[64];
    lt_noise_format(&cfg->noise, a, sizeof a);
    lt_noise_format(&st.noise, b, sizeof b);
    if (strcmp(a, b))
        return lt_errf(err, LT_EINVAL, "--noise %s differs from the run in %s (%s); a resumed run keeps its settings", a,
                       cfg->out_dir, b);
    char la[64], lb[64];
    lt_likelihood want = cfg->likelihood;
    if (!want.bernoulli && want.c == 0.0f) want.c = 1.0f;
    lt_likelihood_format(&want, la, sizeof la);
    lt_likelihood_format(&st.likelihood, lb, sizeof lb);
    if (strcmp(la, lb) && strcmp(lb, "gaussian:1"))
        return lt_errf(err, LT_EINVAL, "--likelihood %s differs from the run in %s (%s); a resumed run keeps its settings",
                       la, cfg->out_dir, lb);
    if (st.optimizer != cfg->optimizer)
        return lt_errf(err, LT_EINVAL, "--optimizer %s differs from the run in %s (%s); a resumed run keeps its settings",
                       lt_opt_name(cfg->optimizer), cfg->out_dir, lt_opt_name(st.optimizer));
    path_in(path, sizeof path, cfg->out_dir, STATE_FILE, err);
    lt_st_file f;
    if ((rc = lt_st_read(path, &f, err))) return rc;
    const char *stored_subset = lt_st_meta(&f, "subset");
    subset_hash(cfg, a, sizeof a);
    if (strcmp(a, stored_subset ? stored_subset : "none")) {
        rc = lt_errf(err, LT_EINVAL, "the training/validation images (%s) differ from those of the run in %s (%s); "
                     "a resumed run keeps its settings", a, cfg->out_dir, stored_subset ? stored_subset : "none");
        lt_st_free(&f);
        return rc;
    }
    int c = 0, h = 0, w = 0;
    if (sscanf(get_meta(&f, "input", path, &rc, err), "%d,%d,%d", &c, &h, &w) != 3 && !rc)
        rc = lt_errf(err, LT_EFORMAT, "%s: bad input shape", path);
    rs->epoch = atoi(get_meta(&f, "epoch", path, &rc, err));
    rs->batch = atoi(get_meta(&f, "batch", path, &rc, err));
    rs->step = strtoll(get_meta(&f, "step", path, &rc, err), NULL, 10);
    rs->loss_sum = strtod(get_meta(&f, "loss_sum", path, &rc, err), NULL);
    rs->correct = strtoll(get_meta(&f, "correct", path, &rc, err), NULL, 10);
    int frozen = atoi(get_meta(&f, "frozen", path, &rc, err));
    const char *metrics = get_meta(&f, "metrics", path, &rc, err);
    if (!rc && !(rs->metrics = strdup(metrics))) rc = lt_errf(err, LT_ENOMEM, "out of memory");
    if (!rc) rc = lt_model_create(mp, st.spec, c, h, w, st.dropout, cfg->seed, err);
    if (!rc) rc = lt_model_set_noise(*mp, &st.noise, err);
    if (!rc && (*mp)->kind == LT_MODEL_VAE) rc = lt_model_set_likelihood(*mp, &st.likelihood, err);
    if (!rc && frozen) rc = lt_model_freeze(*mp, frozen, err);
    if (!rc) rc = lt_optim_init(o, st.optimizer, st.lr, st.weight_decay, st.momentum, (*mp)->n_params, err);
    const char *names[3] = {"params", "optim.slot0", "optim.slot1"};
    float *dst[3] = {rc ? NULL : (*mp)->params, o->slot[0], o->slot[1]};
    for (int i = 0; !rc && i < 1 + lt_optim_slots(o); i++) {
        const lt_st_tensor *t = lt_st_find(&f, names[i]);
        if (!t || t->dtype != LT_DT_F32 || t->nbytes != (*mp)->n_params * sizeof(float))
            rc = lt_errf(err, LT_EFORMAT, "%s: tensor '%s' is missing or does not have %zu floats", path, names[i],
                         (*mp)->n_params);
        else
            memcpy(dst[i], t->data, t->nbytes);
    }
    o->t = rs->step;
    lt_st_free(&f);
    return rc;
}

static int append_metrics(run_state *rs, lt_model_kind kind, int epoch, double train, double val, double secs,
                          double ips, double a, double b, lt_err *err)
{
    size_t old = rs->metrics ? strlen(rs->metrics) : 0;
    char row[512];
    int n = snprintf(row, sizeof row, "%s%d,%.8g,%.8g,%.3f,%.1f", old ? "" : metrics_header(kind), epoch, train, val,
                     secs, ips);
    if (kind != LT_MODEL_AE) n += snprintf(row + n, sizeof row - (size_t)n, ",%.8g,%.8g", a, b);
    n += snprintf(row + n, sizeof row - (size_t)n, "\n");
    char *nm = realloc(rs->metrics, old + (size_t)n + 1);
    if (!nm) return lt_errf(err, LT_ENOMEM, "out of memory");
    memcpy(nm + old, row, (size_t)n + 1);
    rs->metrics = nm;
    return 0;
}

/* Persist everything for the current position: state first (it alone is
 * enough to resume), then the exported model and metrics. */
static int checkpoint(const lt_train_config *cfg, const lt_model *m, const lt_optim *o, const run_state *rs,
                      lt_err *err)
{
    char path[4096];
    int rc = 0;
    /* Data-parallel processes hold the same model: process 0 alone writes it. */
    if (lt_dist_rank(cfg->dist) == 0) {
        rc = save_state(cfg, m, o, rs, err);
        if (!rc) rc = path_in(path, sizeof path, cfg->out_dir, "model.safetensors", err);
        if (!rc) rc = lt_model_save(m, path, err);
        if (!rc) rc = path_in(path, sizeof path, cfg->out_dir, "metrics.csv", err);
        if (!rc && rs->metrics) rc = lt_write_file_atomic(path, rs->metrics, strlen(rs->metrics), err);
    }
    return lt_dist_agree(cfg->dist, rc, err);
}

/* The optimizer's update of one block of parameters, for lt_net_loss. */
typedef struct step_update {
    const lt_optim *opt;
    float *params;
    const float *grad;
} step_update;

static void apply_update(void *ctx, size_t lo, size_t hi)
{
    const step_update *u = ctx;
    lt_optim_update(u->opt, u->params, u->grad, lo, hi);
}

/* A stop asked of any process stops them all at the same batch. */
static int stop_now(const lt_train_config *cfg) { return lt_dist_any(cfg->dist, cfg->stop && *cfg->stop); }

static int check_config(const lt_train_config *cfg, const lt_dataset *ds, lt_err *err)
{
    if (!cfg->out_dir || !*cfg->out_dir) return lt_errf(err, LT_EINVAL, "--out: an output directory is required");
    if (cfg->epochs <= 0) return lt_errf(err, LT_EINVAL, "--epochs must be positive, found %d", cfg->epochs);
    if (cfg->batch <= 0) return lt_errf(err, LT_EINVAL, "--batch must be positive, found %d", cfg->batch);
    if (cfg->val < 0 || cfg->val >= ds->n)
        return lt_errf(err, LT_EINVAL, "--val %d must leave training images (the training file has %d)", cfg->val, ds->n);
    if (cfg->limit < 0) return lt_errf(err, LT_EINVAL, "--limit must be >= 0, found %d", cfg->limit);
    if (!cfg->train_idx && cfg->val_idx) return lt_errf(err, LT_EINVAL, "val_idx needs train_idx");
    if (cfg->train_idx) {
        if (cfg->val || cfg->limit)
            return lt_errf(err, LT_EINVAL, "index subsets replace --val and --limit, which must be 0 (found %d and %d)",
                           cfg->val, cfg->limit);
        if (cfg->n_train <= 0 || cfg->n_val < 0 || (cfg->n_val > 0 && !cfg->val_idx))
            return lt_errf(err, LT_EINVAL, "index subsets: %d training and %d validation images", cfg->n_train, cfg->n_val);
        for (int l = 0; l < 2; l++) {
            const int *idx = l ? cfg->val_idx : cfg->train_idx;
            for (int i = 0, n = l ? cfg->n_val : cfg->n_train; i < n; i++)
                if (idx[i] < 0 || idx[i] >= ds->n)
                    return lt_errf(err, LT_EINVAL, "%s index %d is outside the training file of %d images",
                                   l ? "validation" : "training", idx[i], ds->n);
        }
    }
    return 0;
}

/* A new model as cfg says: its spec, or the default one of its kind. */
static int create_model(const lt_train_config *cfg, const lt_dataset *ds, lt_model **mp, lt_err *err)
{
    char spec[8192], base[4096];
    const char *sp = cfg->spec;
    int rc = 0;
    if (!sp && cfg->model == LT_MODEL_CLF) {
        /* The encoder of the autoencoder we start from, or of the default one. */
        lt_model *src = NULL;
        if (cfg->init && (rc = lt_model_load(&src, cfg->init, err))) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
            rc = lt_errf(err, rc, "--init: %s", msg);
        }
        else if (!cfg->init) rc = lt_default_spec(base, sizeof base, cfg->latent > 0 ? cfg->latent : 2);
        if (!rc) rc = lt_classifier_spec(spec, sizeof spec, src ? src->spec : base, ds->n_classes, err);
        if (!rc && src && src->kind == LT_MODEL_CLF)
            rc = lt_errf(err, LT_EINVAL, "--init %s: the checkpoint is a classifier; give an autoencoder to fine-tune", cfg->init);
        lt_model_free(src);
        sp = spec;
    } else if (!sp) {
        if (cfg->latent <= 0) rc = lt_errf(err, LT_EINVAL, "--latent must be positive, found %d", cfg->latent);
        else if (cfg->model == LT_MODEL_VAE) rc = lt_default_vae_spec(spec, sizeof spec, cfg->latent);
        else rc = lt_default_spec(spec, sizeof spec, cfg->latent);
        sp = spec;
    }
    if (rc) return rc;
    if ((rc = lt_model_create(mp, sp, ds->c, ds->h, ds->w, cfg->dropout, cfg->seed, err))) return rc;
    lt_model *m = *mp;
    if (m->kind != cfg->model)
        rc = lt_errf(err, LT_EINVAL, "the spec describes a%s but the run asks for a%s",
                     m->kind == LT_MODEL_CLF ? " classifier" : m->kind == LT_MODEL_VAE ? " variational autoencoder" : "n autoencoder",
                     cfg->model == LT_MODEL_CLF ? " classifier" : cfg->model == LT_MODEL_VAE ? " variational autoencoder" : "n autoencoder");
    if (!rc && m->kind == LT_MODEL_CLF && ds->n_classes > m->classes)
        rc = lt_errf(err, LT_EINVAL, "the data has labels up to %d but the classifier has %d outputs", ds->n_classes - 1, m->classes);
    if (!rc && m->kind != LT_MODEL_CLF && cfg->init)
        rc = lt_errf(err, LT_EINVAL, "--init: fine-tuning from a checkpoint is for classifiers (--model clf)");
    if (!rc && cfg->noise.kind != LT_NOISE_NONE && m->kind != LT_MODEL_AE)
        rc = lt_errf(err, LT_EINVAL, "--noise applies to a (denoising) autoencoder only");
    if (!rc) rc = lt_model_set_noise(m, &cfg->noise, err);
    if (!rc && m->kind == LT_MODEL_VAE) {
        lt_likelihood lik = cfg->likelihood;
        if (!lik.bernoulli && lik.c == 0.0f) lik.c = 1.0f;
        rc = lt_model_set_likelihood(m, &lik, err);
    }
    if (!rc && cfg->freeze && !cfg->init) rc = lt_errf(err, LT_EINVAL, "--freeze needs --init: there is nothing pretrained to freeze");
    if (!rc && cfg->init) {
        int copied = 0, last = -1;
        rc = lt_model_init_from_layers(m, cfg->init, &copied, &last, err);
        /* Freeze through the last layer that received pretrained weights. */
        if (!rc && cfg->freeze) rc = lt_model_freeze(m, last + 1, err);
    }
    if (rc) {
        lt_model_free(m);
        *mp = NULL;
    }
    return rc;
}

int lt_train(const lt_train_config *cfg, const lt_dataset *ds, lt_progress_fn progress, void *ctx,
             lt_train_result *result, lt_err *err)
{
    int rc = check_config(cfg, ds, err);
    if (rc) return rc;
    const int subset = cfg->train_idx != NULL;
    const int nval = subset ? cfg->n_val : cfg->val, pool = ds->n - cfg->val;
    const int ntrain = subset ? cfg->n_train : cfg->limit && cfg->limit < pool ? cfg->limit : pool;
    const int nbatches = (ntrain + cfg->batch - 1) / cfg->batch;
    char path[4096];
    struct stat sb;
    if ((rc = lt_mkdir_p(cfg->out_dir, err))) return rc;
    if ((rc = path_in(path, sizeof path, cfg->out_dir, STATE_FILE, err))) return rc;
    int have_state = stat(path, &sb) == 0;
    if (cfg->resume && !have_state)
        return lt_errf(err, LT_EINVAL, "--resume: %s holds no run to resume (no %s)", cfg->out_dir, STATE_FILE);
    if (!cfg->resume && have_state)
        return lt_errf(err, LT_EINVAL, "--out %s already holds a run: pass --resume to continue it, or choose another directory",
                       cfg->out_dir);
    /* Every process has looked before process 0 writes the first checkpoint. */
    if ((rc = lt_dist_barrier(cfg->dist, err))) return rc;

    lt_model *m = NULL;
    lt_optim opt = {0};
    run_state rs = {0};
    lt_workspace *ws = NULL;
    int *order = NULL;
    if (cfg->resume) {
        rc = load_state(cfg, &m, &opt, &rs, err);
        if (!rc && m->kind != cfg->model)
            rc = lt_errf(err, LT_EINVAL, "--model: the run in %s trains a %s model; a resumed run keeps its settings",
                         cfg->out_dir, lt_model_kind_name(m));
    } else {
        rc = create_model(cfg, ds, &m, err);
        if (!rc) rc = lt_optim_init(&opt, cfg->optimizer, cfg->lr, cfg->weight_decay, cfg->momentum, m->n_params, err);
    }
    if (!rc && (m->c != ds->c || m->h != ds->h || m->w != ds->w))
        rc = lt_errf(err, LT_EINVAL, "the data has %dx%dx%d images but the run in %s was trained on %dx%dx%d",
                     ds->c, ds->h, ds->w, cfg->out_dir, m->c, m->h, m->w);
    /* Frozen layers come first, so their parameters are a prefix of the block. */
    for (int i = 0; !rc && i < m->n_layers; i++)
        if (i >= m->first_trainable && m->layers[i].w_len) {
            opt.first = m->layers[i].w_off;
            break;
        }
    if (!rc && cfg->train_idx && m->kind != LT_MODEL_AE)
        rc = lt_errf(err, LT_ENOTSUP, "index subsets (cross-validation folds) are for autoencoders; this is a %s model",
                     lt_model_kind_name(m));
    if (!rc) rc = lt_workspace_create(&ws, m, cfg->batch, 1, err);
    if (!rc) lt_dist_attach(cfg->dist, ws);
    if (!rc) lt_model_lend_workspace(m, ws); /* the validation score runs in it */
    if (!rc && !(order = lt_malloc(sizeof(int) * (size_t)ntrain, err))) rc = LT_ENOMEM;

    const double t0 = now_seconds();
    const long total_batches = (long)(cfg->epochs - rs.epoch) * nbatches - rs.batch;
    long batches_run = 0;
    lt_train_result res = {0};
    for (int epoch = rs.epoch; !rc && epoch < cfg->epochs; epoch++) {
        /* The data order of an epoch depends only on the seed and the epoch. */
        for (int i = 0; i < ntrain; i++) order[i] = subset ? cfg->train_idx[i] : i;
        lt_rng r = lt_rng_for(cfg->seed, (uint64_t)epoch, 0x5EED, 0);
        lt_rng_shuffle(&r, order, (size_t)ntrain);
        const double e0 = now_seconds();
        int images = 0;
        for (int b = rs.batch; b < nbatches; b++) {
            int bn = ntrain - b * cfg->batch < cfg->batch ? ntrain - b * cfg->batch : cfg->batch;
            /* A denoising autoencoder sees a corrupted input and aims at the clean one;
             * the noise is keyed by epoch and position, so resume redraws it exactly. */
            lt_batch_defer(ws, ds, order + (size_t)b * cfg->batch, 0, cfg->seed, (uint64_t)epoch,
                           (uint64_t)b * cfg->batch);
            /* The update runs inside the step, block by block (lt_workspace.update);
             * with a loss that is not finite it does not run at all. */
            step_update upd = {&opt, m->params, ws->grad};
            lt_optim_begin(&opt);
            ws->update = apply_update, ws->update_ctx = &upd;
            lt_batch_loss bl = lt_net_loss(m, ws, bn, cfg->seed, (uint64_t)rs.step, 1, cfg->threads);
            ws->update = NULL, ws->update_ctx = NULL;
            double loss = bl.loss;
            rs.correct += bl.correct;
            if (!isfinite(loss)) {
                char kept[4200];
                if (epoch > 0) snprintf(kept, sizeof kept, "The last good checkpoint (after epoch %d) is kept in %s", epoch, cfg->out_dir);
                else snprintf(kept, sizeof kept, "No checkpoint was saved yet");
                rc = lt_errf(err, LT_ENAN, "training diverged at epoch %d, batch %d: the loss is %g. %s; try a smaller "
                             "learning rate (--lr %g)", epoch + 1, b + 1, loss, kept, cfg->lr / 10);
                break;
            }
            rs.step++;
            rs.batch = b + 1;
            rs.loss_sum += loss * bn;
            images += bn;
            batches_run++;
            double el = now_seconds() - e0, all = now_seconds() - t0;
            if (progress) {
                lt_progress p = {.epoch = epoch + 1, .epochs = cfg->epochs, .batch = b + 1, .batches = nbatches,
                                 .train_loss = rs.loss_sum / ((double)(b + 1 < nbatches ? (b + 1) * cfg->batch : ntrain)),
                                 .images_per_sec = images / (el > 0 ? el : 1e-9), .epoch_seconds = el,
                                 .eta_seconds = all / batches_run * (double)(total_batches - batches_run)};
                progress(ctx, &p);
            }
            if (stop_now(cfg) && b + 1 < nbatches) {
                rc = checkpoint(cfg, m, &opt, &rs, err);
                if (!rc) rc = lt_errf(err, LT_EINTR, "stopped at epoch %d, batch %d of %d; the run is saved in %s: "
                                      "continue it with --resume", epoch + 1, b + 1, nbatches, cfg->out_dir);
                break;
            }
        }
        if (rc) break;
        lt_eval_result ev = {NAN, NAN, NAN, NAN, NAN};
        /* A fold's validation images are a list: scored by reconstruction error (autoencoders only, checked above). */
        if (nval > 0 && subset) rc = lt_model_eval_mse_idx(m, ds, cfg->val_idx, nval, cfg->threads, &ev.loss, err);
        else if (nval > 0) rc = lt_model_eval(m, ds, pool, nval, cfg->threads, &ev, NULL, err);
        if (rc) break;
        if (subset) ev.mse = ev.loss;
        double val = ev.loss;
        double secs = now_seconds() - e0;
        res.train_loss = rs.loss_sum / ntrain;
        res.val_loss = val;
        res.val_accuracy = ev.accuracy, res.val_rec = ev.rec, res.val_kl = ev.kl;
        res.images_per_sec = images / (secs > 0 ? secs : 1e-9);
        double a = m->kind == LT_MODEL_CLF ? (double)rs.correct / ntrain : ev.rec;
        double b = m->kind == LT_MODEL_CLF ? ev.accuracy : ev.kl;
        if ((rc = append_metrics(&rs, m->kind, epoch + 1, res.train_loss, val, secs, res.images_per_sec, a, b, err))) break;
        rs.epoch = epoch + 1;
        rs.batch = 0;
        rs.loss_sum = 0.0;
        rs.correct = 0;
        if ((rc = checkpoint(cfg, m, &opt, &rs, err))) break;
        res.epochs_done = rs.epoch;
        if (progress) {
            double all = now_seconds() - t0;
            lt_progress p = {.epoch = epoch + 1, .epochs = cfg->epochs, .batch = nbatches, .batches = nbatches,
                             .train_loss = res.train_loss, .val_loss = val, .images_per_sec = res.images_per_sec,
                             .epoch_seconds = secs, .epoch_done = 1, .val_accuracy = ev.accuracy,
                             .val_rec = ev.rec, .val_kl = ev.kl,
                             .eta_seconds = batches_run ? all / batches_run * (double)(total_batches - batches_run) : 0};
            progress(ctx, &p);
        }
        if (stop_now(cfg) && epoch + 1 < cfg->epochs) {
            rc = lt_errf(err, LT_EINTR, "stopped after epoch %d; the run is saved in %s: continue it with --resume",
                         epoch + 1, cfg->out_dir);
            break;
        }
    }
    res.seconds = now_seconds() - t0;
    if (result) *result = res;
    free(order);
    free(rs.metrics);
    if (m) lt_model_lend_workspace(m, NULL);
    lt_workspace_free(ws);
    lt_optim_free(&opt);
    lt_model_free(m);
    return rc;
}
