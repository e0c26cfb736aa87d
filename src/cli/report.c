/* The study's report: results.json for programs, report.md for a terminal or
 * a code host, and report.html, one self-contained page (images embedded as
 * data URIs) that reads like the study: the summary beside the study's own
 * numbers, then each stage with its commands, figures and numbers. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/study.h"

/* A growing string; on allocation failure it stops growing and sb.oom is set. */
typedef struct sbuf {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->n;
        va_start(ap, fmt);
        int k = b->s ? vsnprintf(b->s + b->n, room, fmt, ap) : -1;
        va_end(ap);
        if (k >= 0 && (size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        size_t need = b->cap * 2 + (k > 0 ? (size_t)k : 0) + 4096;
        char *ns = realloc(b->s, need);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns, b->cap = need;
    }
}

static void sb_html(sbuf *b, const char *t)
{
    for (; t && *t; t++) {
        switch (*t) {
        case '<': sb_add(b, "&lt;"); break;
        case '>': sb_add(b, "&gt;"); break;
        case '&': sb_add(b, "&amp;"); break;
        case '"': sb_add(b, "&quot;"); break;
        default: sb_add(b, "%c", *t);
        }
    }
}

static void sb_base64(sbuf *b, const unsigned char *d, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[5] = {0};
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        q[0] = tbl[v >> 18 & 63], q[1] = tbl[v >> 12 & 63];
        q[2] = i + 1 < n ? tbl[v >> 6 & 63] : '=', q[3] = i + 2 < n ? tbl[v & 63] : '=';
        sb_add(b, "%s", q);
    }
}

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) free(buf), buf = NULL;
    fclose(f);
    if (buf) *n = (size_t)len;
    return buf;
}

/* "stage.i.key.sub": output i of a stage, then object keys (or array indices). */
json_t *study_lookup(json_t *records, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL, *tok = strtok_r(buf, ".", &save);
    json_t *rec = tok ? json_object_get(records, tok) : NULL;
    json_t *v = rec ? json_object_get(rec, "outputs") : NULL;
    while (v && (tok = strtok_r(NULL, ".", &save))) {
        char *end;
        long idx = strtol(tok, &end, 10);
        v = json_is_array(v) && !*end ? json_array_get(v, (size_t)idx) : json_object_get(v, tok);
    }
    return v;
}

/* One summary cell: its values, formatted and joined by " / "; "n/a" for
 * what a stage did not produce. */
static void summary_value(json_t *records, json_t *entry, char *out, size_t size)
{
    const char *fmt = json_string_value(json_object_get(entry, "format"));
    double scale = json_is_number(json_object_get(entry, "scale")) ? json_number_value(json_object_get(entry, "scale")) : 1.0;
    const char *suffix = json_string_value(json_object_get(entry, "suffix"));
    size_t i, used = 0;
    json_t *p;
    out[0] = 0;
    json_array_foreach(json_object_get(entry, "values"), i, p) {
        json_t *v = study_lookup(records, json_string_value(p));
        char one[64];
        if (json_is_number(v) && isfinite(json_number_value(v)))
            snprintf(one, sizeof one, fmt ? fmt : "%.4g", json_number_value(v) * scale);
        else if (json_is_string(v))
            snprintf(one, sizeof one, "%s", json_string_value(v));
        else
            snprintf(one, sizeof one, "n/a");
        used += (size_t)snprintf(out + used, size - used, "%s%s%s", i ? " / " : "", one, suffix && strcmp(one, "n/a") ? suffix : "");
        if (used >= size) break;
    }
}

static void cpu_name(char *buf, size_t size)
{
    snprintf(buf, size, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            snprintf(buf, size, "%s", strchr(line, ':') + 2);
            buf[strcspn(buf, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
}

static void fmt_seconds(char *buf, size_t n, double s)
{
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh %02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm %02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

/* A command as a shell line a user can paste. */
static void command_line(json_t *cmd, char *buf, size_t size)
{
    size_t i, used = (size_t)snprintf(buf, size, "latent");
    json_t *a;
    json_array_foreach(cmd, i, a) {
        const char *s = json_string_value(a);
        int quote = strpbrk(s, " ;,'\"$*?") != NULL;
        used += (size_t)snprintf(buf + used, size - used, quote ? " '%s'" : " %s", s);
        if (used >= size) break;
    }
}

/* Scalars of a command's JSON output as "key value" rows (short arrays joined). */
static void numbers_rows(sbuf *h, sbuf *m, json_t *o)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        char val[256] = "";
        if (json_is_integer(v)) snprintf(val, sizeof val, "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v)) snprintf(val, sizeof val, "%.6g", json_real_value(v));
        else if (json_is_string(v)) snprintf(val, sizeof val, "%s", json_string_value(v));
        else if (json_is_boolean(v)) snprintf(val, sizeof val, "%s", json_is_true(v) ? "true" : "false");
        else if (json_is_array(v) && json_array_size(v) <= 10) {
            size_t i, used = 0;
            json_t *e;
            json_array_foreach(v, i, e) {
                if (!json_is_number(e)) { used = 0; break; }
                used += (size_t)snprintf(val + used, sizeof val - used, "%s%.4g", i ? ", " : "", json_number_value(e));
            }
            if (!used) continue;
        } else continue;
        const char *key = !strcmp(k, "_seconds") ? "wall time (s)" : k;
        sb_add(h, "<tr><td>");
        sb_html(h, key);
        sb_add(h, "</td><td>");
        sb_html(h, val);
        sb_add(h, "</td></tr>\n");
        sb_add(m, "| %s | %s |\n", key, val);
    }
}

static const char *css =
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}"
    "h1{margin-bottom:0}.sub{color:#666;margin-top:.3em}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:.3em .7em;text-align:left}th{background:#f3f3f3}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}pre{background:#f6f6f6;padding:.7em;overflow-x:auto}"
    "figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top;max-width:100%}"
    "figure img{max-width:100%;border:1px solid #ddd}figcaption{color:#555;font-size:.9em;max-width:560px}"
    "section{border-top:2px solid #eee;margin-top:2em}";

/* Sets data-images="loaded/total" on <body> once the page has loaded, so a
 * headless browser can tell that every embedded figure decodes. */
static const char *check_js =
    "window.addEventListener('load',function(){var im=document.images,ok=0;"
    "for(var i=0;i<im.length;i++)if(im[i].complete&&im[i].naturalWidth>0)ok++;"
    "document.body.setAttribute('data-images',ok+'/'+im.length);});";

/* Did a command of the stage continue an earlier sitting's work? Then the
 * stage's recorded time is that of the last sitting only. */
static int was_resumed(json_t *rec)
{
    size_t i, j;
    json_t *cmd, *arg;
    json_array_foreach(json_object_get(rec, "commands"), i, cmd) json_array_foreach(cmd, j, arg) {
        const char *a = json_string_value(arg);
        if (a && !strcmp(a, "--resume")) return 1;
    }
    return 0;
}

int study_report(json_t *preset, json_t *records, const char *dir, const char *preset_name, double seconds)
{
    sbuf h = {0}, m = {0};
    char cpu[256], when[64], tbuf[64], total_s[64];
    cpu_name(cpu, sizeof cpu);
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    double total = 0.0;
    const char *id;
    json_t *rec;
    json_object_foreach(records, id, rec) total += json_number_value(json_object_get(rec, "seconds"));
    fmt_seconds(total_s, sizeof total_s, total);
    snprintf(tbuf, sizeof tbuf, "%s", total_s);
    const char *title = json_string_value(json_object_get(preset, "title"));
    if (!title) title = "latent: the study";

    sb_add(&h, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    sb_html(&h, title);
    sb_add(&h, "</title><style>%s</style><script>%s</script></head>\n<body>\n<h1>", css, check_js);
    sb_html(&h, title);
    sb_add(&h, "</h1>\n<p class=\"sub\">preset <b>");
    sb_html(&h, preset_name);
    sb_add(&h, "</b>, %s, %s, %ld cores, stages' wall time %s (this invocation %.0fs)</p>\n", when, cpu,
           sysconf(_SC_NPROCESSORS_ONLN), tbuf, seconds);
    sb_add(&m, "# %s\n\nPreset **%s**, %s, %s, stages' wall time %s.\n\n", title, preset_name, when, cpu, tbuf);
    const char *about = json_string_value(json_object_get(preset, "about"));
    if (about) {
        sb_add(&h, "<p>");
        sb_html(&h, about);
        sb_add(&h, "</p>\n");
        sb_add(&m, "%s\n\n", about);
    }

    /* The summary: the study's numbers beside ours. */
    sb_add(&h, "<h2>Summary</h2>\n<table id=\"summary\"><tr><th>result</th><th>the study</th><th>latent</th><th>stage</th></tr>\n");
    sb_add(&m, "## Summary\n\n| result | the study | latent | stage |\n|---|--:|--:|---|\n");
    json_t *results = json_object(), *summary = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(preset, "summary"), i, e) {
        char val[256];
        summary_value(records, e, val, sizeof val);
        const char *label = json_string_value(json_object_get(e, "label"));
        const char *study = json_string_value(json_object_get(e, "study"));
        const char *vpath = json_string_value(json_array_get(json_object_get(e, "values"), 0));
        char stage[64] = "";
        if (vpath) snprintf(stage, sizeof stage, "%.*s", (int)strcspn(vpath, "."), vpath);
        sb_add(&h, "<tr><td>");
        sb_html(&h, label);
        sb_add(&h, "</td><td class=\"num\">");
        sb_html(&h, study ? study : "-");
        sb_add(&h, "</td><td class=\"num\">");
        sb_html(&h, val);
        sb_add(&h, "</td><td><a href=\"#%s\">%s</a></td></tr>\n", stage, stage);
        sb_add(&m, "| %s | %s | %s | %s |\n", label ? label : "", study ? study : "-", val, stage);
        json_t *row = json_pack("{s:s?, s:s?, s:s}", "label", label, "study", study, "latent", val);
        json_t *vals = json_array();
        size_t j;
        json_t *pth;
        json_array_foreach(json_object_get(e, "values"), j, pth) {
            json_t *v = study_lookup(records, json_string_value(pth));
            json_array_append(vals, v ? v : json_null());
        }
        json_object_set_new(row, "values", vals);
        json_array_append_new(summary, row);
    }
    sb_add(&h, "</table>\n<h3>Wall time per stage</h3>\n<table id=\"timing\"><tr><th>stage</th><th>wall time</th></tr>\n");
    sb_add(&m, "\n### Wall time per stage\n\n| stage | wall time |\n|---|--:|\n");
    int any_resumed = 0;
    json_array_foreach(json_object_get(preset, "stages"), i, e) {
        id = json_string_value(json_object_get(e, "id"));
        rec = json_object_get(records, id);
        fmt_seconds(tbuf, sizeof tbuf, json_number_value(json_object_get(rec, "seconds")));
        if (was_resumed(rec)) {
            snprintf(tbuf + strlen(tbuf), sizeof tbuf - strlen(tbuf), " (resumed: the last sitting only)");
            any_resumed = 1;
        }
        sb_add(&h, "<tr><td><a href=\"#%s\">", id);
        sb_html(&h, json_string_value(json_object_get(e, "title")));
        sb_add(&h, "</a></td><td class=\"num\">%s</td></tr>\n", tbuf);
        sb_add(&m, "| %s | %s |\n", json_string_value(json_object_get(e, "title")), tbuf);
    }
    fmt_seconds(tbuf, sizeof tbuf, total);
    if (any_resumed) snprintf(tbuf + strlen(tbuf), sizeof tbuf - strlen(tbuf), " (with resumed stages' last sittings)");
    sb_add(&h, "<tr><th>all stages</th><th class=\"num\">%s</th></tr></table>\n", tbuf);
    sb_add(&m, "| **all stages** | **%s** |\n", tbuf);

    /* Each stage: what ran, what it drew, what it measured. */
    int missing = 0;
    json_array_foreach(json_object_get(preset, "stages"), i, e) {
        id = json_string_value(json_object_get(e, "id"));
        rec = json_object_get(records, id);
        const char *stitle = json_string_value(json_object_get(e, "title"));
        const char *text = json_string_value(json_object_get(e, "text"));
        fmt_seconds(tbuf, sizeof tbuf, json_number_value(json_object_get(rec, "seconds")));
        sb_add(&h, "<section id=\"%s\"><h2>", id);
        sb_html(&h, stitle);
        sb_add(&h, "</h2>\n");
        sb_add(&m, "\n## %s\n\n", stitle);
        if (text) {
            sb_add(&h, "<p>");
            sb_html(&h, text);
            sb_add(&h, "</p>\n");
            sb_add(&m, "%s\n\n", text);
        }
        sb_add(&h, "<p>Commands (wall time %s):</p><pre>", tbuf);
        sb_add(&m, "Commands (wall time %s):\n\n```\n", tbuf);
        size_t j;
        json_t *c;
        json_array_foreach(json_object_get(rec, "commands"), j, c) {
            char line[2048];
            command_line(c, line, sizeof line);
            sb_html(&h, line);
            sb_add(&h, "\n");
            sb_add(&m, "%s\n", line);
        }
        sb_add(&h, "</pre>\n");
        sb_add(&m, "```\n\n");
        json_t *f;
        json_array_foreach(json_object_get(e, "figures"), j, f) {
            const char *file = json_string_value(json_object_get(f, "file"));
            const char *cap = json_string_value(json_object_get(f, "caption"));
            if (!file) continue;
            /* Figures are named relative to the study folder. */
            char rel[1024], full[5200];
            snprintf(rel, sizeof rel, "%s", file);
            if (!strncmp(rel, "{stage}/", 8)) snprintf(rel, sizeof rel, "%s/%s", id, file + 8);
            else if (!strncmp(rel, "{out}/", 6)) snprintf(rel, sizeof rel, "%s", file + 6);
            snprintf(full, sizeof full, "%s/%s", dir, rel);
            size_t n = 0;
            char *img = read_all(full, &n);
            const char *ext = strrchr(rel, '.');
            int svg = ext && !strcmp(ext, ".svg");
            sb_add(&h, "<figure>");
            if (img) {
                sb_add(&h, "<img alt=\"%s\" src=\"data:image/%s;base64,", rel, svg ? "svg+xml" : "png");
                sb_base64(&h, (const unsigned char *)img, n);
                sb_add(&h, "\">");
            } else {
                missing++;
                sb_add(&h, "<p><b>missing figure %s</b></p>", rel);
            }
            free(img);
            if (cap) {
                sb_add(&h, "<figcaption>");
                sb_html(&h, cap);
                sb_add(&h, "</figcaption>");
            }
            sb_add(&h, "</figure>\n");
            sb_add(&m, "![%s](%s)\n\n", cap ? cap : rel, rel);
        }
        json_t *o;
        json_array_foreach(json_object_get(rec, "outputs"), j, o) {
            if (!json_is_object(o) || !json_object_size(o)) continue;
            char line[2048];
            command_line(json_array_get(json_object_get(rec, "commands"), j), line, sizeof line);
            sb_add(&h, "<table class=\"numbers\"><tr><th colspan=\"2\">");
            sb_html(&h, line);
            sb_add(&h, "</th></tr>\n");
            sb_add(&m, "`%s`\n\n| value | |\n|---|--:|\n", line);
            numbers_rows(&h, &m, o);
            sb_add(&h, "</table>\n");
            sb_add(&m, "\n");
        }
        sb_add(&h, "</section>\n");
        json_t *stage_out = json_pack("{s:O, s:O, s:O}", "seconds", json_object_get(rec, "seconds"), "commands",
                                      json_object_get(rec, "commands"), "outputs", json_object_get(rec, "outputs"));
        json_object_set_new(results, id, stage_out);
    }
    sb_add(&h, "</body></html>\n");

    json_t *all = json_pack("{s:s, s:s, s:s, s:f, s:o, s:o}", "preset", preset_name, "date", when, "cpu", cpu,
                            "seconds", total, "summary", summary, "stages", results);
    char *rj = json_dumps(all, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(all);
    int rc = 0;
    lt_err err = {0};
    char path[4200];
    if (h.oom || m.oom || !rj) {
        fprintf(stderr, "latent study: out of memory writing the report\n");
        rc = 1;
    }
    const char *names[3] = {"results.json", "report.md", "report.html"};
    const char *bodies[3] = {rj, m.s, h.s};
    size_t lens[3] = {rj ? strlen(rj) : 0, m.n, h.n};
    for (int k = 0; !rc && k < 3; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        if (lt_write_file_atomic(path, bodies[k], lens[k], &err)) {
            fprintf(stderr, "latent study: %s\n", err.msg);
            rc = 1;
        }
    }
    if (!rc) {
        fprintf(stderr, "latent study: wrote %s/report.html, report.md and results.json (stages' wall time %s)\n", dir,
                total_s);
        if (missing) fprintf(stderr, "latent study: warning: %d figure(s) missing from the report\n", missing);
    }
    free(rj);
    free(h.s);
    free(m.s);
    return rc;
}
