/* latent: command-line entry point. */
#define _GNU_SOURCE /* sched_setaffinity, cpu_set_t */
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static const char *usage =
    "latent " LATENT_VERSION " - unsupervised learning on MNIST-like images: autoencoders, VAEs,\n"
    "classifiers from their encoders, maps of their codes\n"
    "\n"
    "Usage: latent COMMAND [options]\n"
    "\n"
    "Commands:\n"
    "  study        the whole study in one command, with a report (latent study --help)\n"
    "  train        train a model: ae, dae, clf, cnn, vae (latent train --help)\n"
    "  eval         a checkpoint's scores on the test set\n"
    "  search       random search of hyperparameters with k-fold cross-validation\n"
    "  compare      optimizers side by side on the same folds and seeds\n"
    "  reconstruct  PNG grid of test digits above their reconstructions\n"
    "  sample       new digits from a VAE's prior, optionally scored by a classifier\n"
    "  curves       loss curves of training runs (PNG or SVG)\n"
    "  embed        PCA or t-SNE map of the codes (or pixels), with scores and plots\n"
    "  generate     digits decoded from points picked on a map\n"
    "  interpolate  digits decoded along the line between two test images' codes\n"
    "\n"
    "Data: MNIST from the cache (scripts/fetch-mnist puts it there), or --data DIR\n"
    "with IDX files (train-images-idx3-ubyte, ...; plain or .gz).\n"
    "\n"
    "Reproducibility: the same seed gives the same bits for any thread count and,\n"
    "on x86-64 CPUs with AVX2 (AVX-512 ones included), on any such machine: the\n"
    "matrix products use their AVX2 kernels everywhere. LATENT_KERNELS=native lets\n"
    "LIBXSMM and OpenBLAS pick kernels for this CPU instead (other bits on an\n"
    "AVX-512 CPU).\n";

static lt_dist *dist;

lt_dist *cli_dist(void) { return dist; }

/* With OMP_PROC_BIND set, libgomp binds this initial thread to the first
 * place before main runs, and execv keeps that one-place mask: the new
 * process would see a single CPU and put every thread on it (measured: two
 * threads ran at one thread's speed). Give it back the union of the places,
 * which libgomp computed from the mask the process started with. */
static void restore_affinity_for_exec(void)
{
    if (omp_get_proc_bind() == omp_proc_bind_false) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    const int places = omp_get_num_places();
    for (int p = 0; p < places; p++) {
        int n = omp_get_place_num_procs(p), ids[CPU_SETSIZE];
        if (n <= 0 || n > CPU_SETSIZE) continue;
        omp_get_place_proc_ids(p, ids);
        for (int i = 0; i < n; i++)
            if (ids[i] >= 0 && ids[i] < CPU_SETSIZE) CPU_SET(ids[i], &set);
    }
    if (CPU_COUNT(&set) > 0) sched_setaffinity(0, sizeof set, &set);
}

/* The environment this process should run with, set where the user did not
 * choose; returns 1 if anything was set (then we start again, as the
 * libraries read it when they load), -1 for a bad LATENT_KERNELS. */
static int set_environment(void)
{
    int set = 0;
    /* libgomp reads OMP_WAIT_POLICY when the program loads, before main. Idle
     * worker threads that spin steal the CPU from other jobs on a shared
     * machine (and from each other), so use a passive policy unless the user
     * chose one. OpenBLAS likewise starts its threads when it loads, and they
     * spin on sched_yield for its first 0.1 s (perf: a third of the CPU
     * samples of a one-epoch run went there); latent never gives them work
     * (each chunk's products run on its own thread), so ask for none. */
    if (!getenv("OMP_WAIT_POLICY")) setenv("OMP_WAIT_POLICY", "PASSIVE", 1), set = 1;
    if (!getenv("OPENBLAS_NUM_THREADS")) setenv("OPENBLAS_NUM_THREADS", "1", 1), set = 1;
    /* The library runs the layers' products in LIBXSMM's AVX2 kernels on any
     * CPU with AVX2 (lt_kernel_target): the same bits on AVX2 and AVX-512
     * machines. OpenBLAS, still used by the maps (PCA, k-NN), picks its
     * kernels for the CPU when it loads, so ask it for its AVX2 ones too
     * (Haswell), unless LATENT_KERNELS=native. */
    const char *k = getenv("LATENT_KERNELS");
    if (k && strcmp(k, "portable") && strcmp(k, "native")) return -1;
    if (lt_kernels_portable() && !getenv("OPENBLAS_CORETYPE"))
        setenv("OPENBLAS_CORETYPE", "Haswell", 1), set = 1;
    return set;
}

int main(int argc, char **argv)
{
    const int env = set_environment();
    if (env < 0) {
        fprintf(stderr, "latent: LATENT_KERNELS: expected portable or native, found '%s'\n", getenv("LATENT_KERNELS"));
        return EXIT_USAGE;
    }
    if (env > 0) {
        restore_affinity_for_exec();
        execv("/proc/self/exe", argv);
        /* If re-executing fails we simply carry on with the defaults. */
    }
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("latent %s\n", LATENT_VERSION);
        const char *o = getenv("OPENBLAS_CORETYPE");
        printf("kernels: %s for the layers, OpenBLAS %s (LATENT_KERNELS=%s)\n", lt_kernel_target(),
               o ? o : "for this CPU", getenv("LATENT_KERNELS") ? getenv("LATENT_KERNELS") : "portable");
        return 0;
    }
    const char *cmd = argv[1];
    int rc;
    /* Under mpirun, the commands that spread work over processes join the job. */
    if (!strcmp(cmd, "train") || !strcmp(cmd, "search") || !strcmp(cmd, "compare")) {
        lt_err err = {0};
        if (lt_dist_init(&dist, &argc, &argv, &err)) {
            fprintf(stderr, "latent %s: %s\n", cmd, err.msg);
            return 1;
        }
    }
    if (!strcmp(cmd, "train")) rc = cmd_train(argc - 1, argv + 1);
    else if (!strcmp(cmd, "search")) rc = cmd_search(argc - 1, argv + 1);
    else if (!strcmp(cmd, "compare")) rc = cmd_compare(argc - 1, argv + 1);
    else if (!strcmp(cmd, "eval")) rc = cmd_eval(argc - 1, argv + 1);
    else if (!strcmp(cmd, "reconstruct")) rc = cmd_reconstruct(argc - 1, argv + 1);
    else if (!strcmp(cmd, "sample")) rc = cmd_sample(argc - 1, argv + 1);
    else if (!strcmp(cmd, "curves")) rc = cmd_curves(argc - 1, argv + 1);
    else if (!strcmp(cmd, "study")) rc = cmd_study(argc - 1, argv + 1);
    else if (!strcmp(cmd, "embed")) rc = cmd_embed(argc - 1, argv + 1);
    else if (!strcmp(cmd, "generate")) rc = cmd_generate(argc - 1, argv + 1);
    else if (!strcmp(cmd, "interpolate")) rc = cmd_interpolate(argc - 1, argv + 1);
    else {
        fprintf(stderr, "latent: unknown command '%s' (see latent --help)\n", cmd);
        rc = EXIT_USAGE;
    }
    /* Stop OpenMP's worker threads before exit: LeakSanitizer's exit-time
     * check, which suspends every thread, has been seen to crash in its own
     * tracer while parked OpenMP workers were still alive. */
    omp_pause_resource_all(omp_pause_hard);
    lt_dist_finalize(dist);
    return rc;
}
