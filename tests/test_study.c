/* latent study end to end on a tiny synthetic data set: every stage runs, the
 * report has a complete summary, a rerun skips finished stages, --force reruns
 * one, and the HTML page renders in headless Chromium with every image loaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "testutil.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

/* Three small stages that use each other's output (and, in base, its own), one that uses none, and
 * a summary that reads values from the first three. */
static const char *preset =
    "{\"title\": \"tiny study\", \"stages\": ["
    "{\"id\": \"base\", \"title\": \"Baseline\", \"text\": \"A small autoencoder.\", \"commands\": ["
    "  [\"train\", \"--out\", \"{stage}/run\", \"--epochs\", \"2\", \"--batch\", \"32\", \"--val\", \"40\", \"--json\"],"
    "  [\"eval\", \"{stage}/run/model.safetensors\", \"--json\"],"
    "  [\"reconstruct\", \"{stage}/run/model.safetensors\", \"--out\", \"{stage}/rec.png\", \"--count\", \"4\"],"
    "  [\"curves\", \"{stage}/run\", \"--out\", \"{stage}/loss.svg\"],"
    "  [\"reconstruct\", \"{stage}/run/model.safetensors\", \"--out\", \"{stage}/rec2.png\", \"--count\", \"{=base.0.epochs}\"]],"
    " \"figures\": [{\"file\": \"{stage}/rec.png\", \"caption\": \"reconstructions\"}, {\"file\": \"{stage}/loss.svg\"}]},"
    "{\"id\": \"clf\", \"title\": \"Classifier\", \"commands\": ["
    "  [\"train\", \"--model\", \"clf\", \"--init\", \"{out}/base/run/model.safetensors\", \"--out\", \"{stage}/run\","
    "   \"--epochs\", \"1\", \"--batch\", \"32\", \"--val\", \"40\", \"--json\"],"
    "  [\"eval\", \"{stage}/run/model.safetensors\", \"--json\", \"--confusion\", \"{stage}/cm.png\"]],"
    " \"figures\": [{\"file\": \"{stage}/cm.png\", \"caption\": \"confusion matrix\"}]},"
    "{\"id\": \"vae\", \"title\": \"VAE\", \"commands\": ["
    "  [\"train\", \"--model\", \"vae\", \"--latent\", \"{=base.0.epochs}\", \"--out\", \"{stage}/run\", \"--epochs\", \"1\", \"--batch\", \"32\","
    "   \"--val\", \"40\", \"--json\"],"
    "  [\"eval\", \"{stage}/run/model.safetensors\", \"--json\"],"
    "  [\"sample\", \"{stage}/run/model.safetensors\", \"--out\", \"{stage}/s.png\", \"--count\", \"9\","
    "   \"--score\", \"{out}/clf/run/model.safetensors\", \"--json\"]],"
    " \"figures\": [{\"file\": \"{stage}/s.png\"}]},"
    "{\"id\": \"pix\", \"title\": \"PCA of the pixels\", \"commands\": ["
    "  [\"embed\", \"-\", \"--input\", \"pixels\", \"--method\", \"pca\", \"--out\", \"{stage}/pca\", \"--json\"]]}],"
    "\"summary\": ["
    " {\"label\": \"ae train / val\", \"study\": \"0.0382 / 0.0381\", \"values\": [\"base.0.train_loss\", \"base.0.val_loss\"], \"format\": \"%.4f\"},"
    " {\"label\": \"clf accuracy\", \"study\": \"96.46%\", \"values\": [\"clf.1.test_accuracy\"], \"scale\": 100, \"suffix\": \"%\"},"
    " {\"label\": \"vae test\", \"values\": [\"vae.1.test_loss\", \"vae.2.confident\"]}]}";

static void test_study(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), out[65536], path[4200];
    lt_dataset ds;
    tu_make_dataset(&ds, 200, 28, 28, 4);
    tu_write_idx_split(dir, "train", &ds);
    tu_write_idx_split(dir, "t10k", &ds);
    free(tu_write(dir, "tiny.json", preset, strlen(preset)));
    snprintf(path, sizeof path, "%s/tiny.json", dir);

    int rc = tu_sh(out, sizeof out, "%s study --preset %s --out %s/st --data %s --threads 2", LATENT_CLI, path, dir, dir);
    if (rc) fail_msg("study failed: %s", out);
    snprintf(path, sizeof path, "%s/st/report.md", dir);
    char *md = slurp(path);
    assert_non_null(md);
    /* The summary is complete: no stage left a value out. */
    if (strstr(md, "n/a")) fail_msg("report.md has an empty cell:\n%s", md);
    assert_non_null(strstr(md, "| clf accuracy | 96.46% |"));
    assert_non_null(strstr(md, "latent train --out"));
    assert_null(strstr(md, "resumed:")); /* nothing was resumed in one sitting */
    /* A command read a value its own stage's first command printed. */
    assert_non_null(strstr(md, "rec2.png --count 2"));
    free(md);
    snprintf(path, sizeof path, "%s/st/results.json", dir);
    char *rj = slurp(path);
    assert_non_null(rj);
    assert_non_null(strstr(rj, "\"test_accuracy\""));
    assert_non_null(strstr(rj, "\"confident\""));
    free(rj);

    /* Again: every stage is checked and skipped. */
    rc = tu_sh(out, sizeof out, "%s study --preset %s/tiny.json --out %s/st --data %s", LATENT_CLI, dir, dir, dir);
    if (rc) fail_msg("second run failed: %s", out);
    for (const char *p = out, *q; (q = strstr(p, "] done before")); p = q + 1) rc++;
    assert_int_equal(rc, 4);
    assert_null(strstr(out, "latent train --out"));
    /* A missing figure makes its stage run again (it is checked, not trusted). */
    snprintf(path, sizeof path, "%s/st/vae/s.png", dir);
    assert_int_equal(remove(path), 0);
    rc = tu_sh(out, sizeof out, "%s study --preset %s/tiny.json --out %s/st --data %s", LATENT_CLI, dir, dir, dir);
    if (rc) fail_msg("third run failed: %s", out);
    assert_non_null(strstr(out, "[vae] latent train"));
    assert_non_null(strstr(out, "--resume")); /* its training had finished: resumed, not redone */
    /* and the report says its time is that sitting's only */
    snprintf(path, sizeof path, "%s/st/report.md", dir);
    md = slurp(path);
    assert_non_null(md);
    assert_non_null(strstr(md, " (resumed: the last sitting only) |"));
    free(md);
    assert_null(strstr(out, "[base] latent"));
    /* --force reruns a stage from scratch, and the stages that use its output (vae scores
     * its samples with clf's model), not the others. */
    rc = tu_sh(out, sizeof out, "%s study --preset %s/tiny.json --out %s/st --data %s --force clf", LATENT_CLI, dir, dir, dir);
    if (rc) fail_msg("forced run failed: %s", out);
    assert_non_null(strstr(out, "[clf] latent train"));
    assert_null(strstr(out, "[base] latent train"));
    assert_non_null(strstr(out, "[vae] latent train"));
    const char *vae_line = strstr(out, "[vae] latent train"), *eol = strchr(vae_line, '\n');
    const char *res = strstr(vae_line, "--resume");
    assert_true(!res || (eol && res > eol)); /* from scratch: its old run was removed */
    assert_non_null(strstr(out, "[pix] done before"));
    assert_int_equal(tu_sh(out, sizeof out, "%s study --preset %s/tiny.json --out %s/st --force nope", LATENT_CLI, dir, dir), 2);
    assert_non_null(strstr(out, "nope"));
    assert_int_equal(tu_sh(out, sizeof out, "%s study --preset nothing-like-this --out %s/st", LATENT_CLI, dir), 2);
    /* The VAE's latent size came from the baseline's epoch count, through a reference. */
    snprintf(path, sizeof path, "%s/st/vae/stage.json", dir);
    char *sj = slurp(path);
    assert_non_null(sj);
    assert_non_null(strstr(sj, "\"--latent\",\n   \"2\""));
    free(sj);
    /* The baseline's definition changes (3 epochs): its folder is cleared and it
     * runs from scratch (resuming the 2-epoch run would be refused), and with
     * it the stages that use its output; pix is kept. */
    char *p3 = strdup(preset), *e2 = strstr(p3, "\"--epochs\", \"2\"");
    assert_non_null(e2);
    e2[strlen("\"--epochs\", \"")] = '3';
    free(tu_write(dir, "tiny3.json", p3, strlen(p3)));
    free(p3);
    rc = tu_sh(out, sizeof out, "%s study --preset %s/tiny3.json --out %s/st --data %s", LATENT_CLI, dir, dir, dir);
    if (rc) fail_msg("run with a changed definition failed: %s", out);
    assert_non_null(strstr(out, "[base] its definition in the preset changed"));
    const char *base_line = strstr(out, "[base] latent train"), *base_eol = base_line ? strchr(base_line, '\n') : NULL;
    assert_non_null(base_eol);
    const char *base_res = strstr(base_line, "--resume");
    assert_true(!base_res || base_res > base_eol);
    assert_non_null(strstr(out, "[clf] latent train"));
    assert_non_null(strstr(out, "[vae] latent train --model vae --latent 3"));
    assert_non_null(strstr(out, "[pix] done before"));

    /* The page in a real browser: every embedded image decodes, the summary is there. */
    rc = tu_sh(out, sizeof out,
            "timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --virtual-time-budget=10000 "
            "--dump-dom file://%s/st/report.html 2>/dev/null", dir);
    if (rc) fail_msg("chromium failed (%d): %.2000s", rc, out);
    char *b = strstr(out, "data-images=\"");
    if (!b) fail_msg("chromium's DOM has no data-images mark: %.2000s", out);
    int ok = -1, all = -2;
    assert_int_equal(sscanf(b, "data-images=\"%d/%d\"", &ok, &all), 2);
    assert_int_equal(ok, all);
    assert_int_equal(all, 4);
    assert_non_null(strstr(out, "id=\"summary\""));

    lt_dataset_free(&ds);
    tu_rmtree(dir);
    free(dir);
}

/* Ctrl-C (SIGINT to the study) stops the running training, which saves; the
 * study exits 130, and running it again continues that training. */
static void test_interrupt(void **state)
{
    (void)state;
    char *dir = tu_mkdtemp(), out[65536], path[4200];
    lt_dataset ds;
    tu_make_dataset(&ds, 200, 28, 28, 4);
    tu_write_idx_split(dir, "train", &ds);
    tu_write_idx_split(dir, "t10k", &ds);
    const char *p = "{\"stages\": [{\"id\": \"long\", \"title\": \"Long\", \"commands\": ["
                    "[\"train\", \"--out\", \"{stage}/run\", \"--epochs\", \"300\", \"--batch\", \"100\", \"--val\", \"0\", \"--json\"]]}]}";
    free(tu_write(dir, "long.json", p, strlen(p)));
    /* The signal goes once the training has saved its first epoch, not after
     * a fixed sleep: the 300 epochs of these 200 images once took less than
     * the 2 s this test slept, and the study had finished before the signal
     * (exit 0). */
    int rc = tu_sh(out, sizeof out,
                "{ %s study --preset %s/long.json --out %s/st --data %s --threads 1 & pid=$!; "
                "for i in $(seq 600); do [ -f %s/st/long/run/train_state.safetensors ] && break; sleep 0.05; done; "
                "kill -INT $pid; wait $pid; }",
                LATENT_CLI, dir, dir, dir, dir);
    if (rc != 130) fail_msg("expected exit 130 after SIGINT, got %d: %s", rc, out);
    assert_non_null(strstr(out, "run the same command again"));
    snprintf(path, sizeof path, "%s/st/long/run/train_state.safetensors", dir);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    snprintf(path, sizeof path, "%s/st/long/stage.json", dir);
    assert_int_not_equal(stat(path, &sb), 0);
    rc = tu_sh(out, sizeof out, "%s study --preset %s/long.json --out %s/st --data %s --threads 1", LATENT_CLI, dir, dir, dir);
    if (rc) fail_msg("resumed study failed: %s", out);
    assert_non_null(strstr(out, "--resume"));
    assert_null(strstr(out, "epoch 1/300"));
    assert_int_equal(stat(path, &sb), 0);
    lt_dataset_free(&ds);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_study), cmocka_unit_test(test_interrupt)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
