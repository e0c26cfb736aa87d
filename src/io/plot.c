/* io: plots (line charts, scatter maps, heatmaps, a map beside decoded digits)
 * drawn with cairo as PNG or SVG.
 *
 * Every figure is rendered in memory and then written with
 * lt_write_file_atomic, so a reader never sees half a picture. Text uses
 * cairo's toy font API (fontconfig's "DejaVu Sans"); cairo's SVG surface
 * turns glyphs into paths, so the title is also written as the SVG's
 * <title> element, where search tools, screen readers and tests find it.
 *
 * Non-finite values (and values <= 0 on a log axis) are skipped: a line
 * breaks at them, a scatter point or a band segment is left out, and a
 * heatmap cell is drawn grey with "n/a". They never move the axis ranges. */
#include <cairo-svg.h>
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"

#define FONT "DejaVu Sans"
/* PI is not ISO C. */
#define PI 3.14159265358979323846

/* ---- output: an in-memory canvas written atomically at the end ---- */

typedef struct membuf {
    unsigned char *p;
    size_t n, cap;
} membuf;

static cairo_status_t membuf_write(void *ctx, const unsigned char *data, unsigned int len)
{
    membuf *b = ctx;
    if (b->n + len > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->n + len) cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) return CAIRO_STATUS_WRITE_ERROR;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
    return CAIRO_STATUS_SUCCESS;
}

typedef enum { FMT_PNG, FMT_SVG } img_format;

typedef struct canvas {
    img_format fmt;
    cairo_surface_t *surface;
    cairo_t *cr;
    membuf out; /* the SVG surface streams into it, so a canvas never moves */
    double w, h;
} canvas;

static int format_of(const char *path, img_format *fmt, lt_err *err)
{
    if (!path || !*path) return lt_errf(err, LT_EINVAL, "plot: no output path");
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash)) {
        if (!strcasecmp(dot, ".png")) {
            *fmt = FMT_PNG;
            return 0;
        }
        if (!strcasecmp(dot, ".svg")) {
            *fmt = FMT_SVG;
            return 0;
        }
    }
    return lt_errf(err, LT_EINVAL, "%s: unknown image format '%s' (expected a name ending in .png or .svg)", path,
                   dot && (!slash || dot > slash) ? dot : "");
}

static int canvas_open(canvas *c, const char *path, int w, int h, lt_err *err)
{
    memset(c, 0, sizeof *c);
    int rc = format_of(path, &c->fmt, err);
    if (rc) return rc;
    c->w = w;
    c->h = h;
    if (c->fmt == FMT_PNG) c->surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    else c->surface = cairo_svg_surface_create_for_stream(membuf_write, &c->out, w, h);
    if (cairo_surface_status(c->surface) != CAIRO_STATUS_SUCCESS) {
        rc = lt_errf(err, LT_ENOMEM, "%s: cannot create a %dx%d drawing surface: %s", path, w, h,
                     cairo_status_to_string(cairo_surface_status(c->surface)));
        cairo_surface_destroy(c->surface);
        c->surface = NULL;
        return rc;
    }
    c->cr = cairo_create(c->surface);
    cairo_set_source_rgb(c->cr, 1, 1, 1);
    cairo_paint(c->cr);
    cairo_select_font_face(c->cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    return 0;
}

static void canvas_discard(canvas *c)
{
    if (c->cr) cairo_destroy(c->cr);
    if (c->surface) cairo_surface_destroy(c->surface);
    free(c->out.p);
    memset(c, 0, sizeof *c);
}

/* Append s to b with XML's five special characters escaped. */
static int membuf_put_xml(membuf *b, const char *s)
{
    for (; *s; s++) {
        const char *e = *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '&' ? "&amp;" : *s == '"' ? "&quot;" : NULL;
        cairo_status_t st = e ? membuf_write(b, (const unsigned char *)e, (unsigned)strlen(e))
                              : membuf_write(b, (const unsigned char *)s, 1);
        if (st != CAIRO_STATUS_SUCCESS) return -1;
    }
    return 0;
}

/* The first occurrence of s in the n bytes at p, or NULL (memmem is not POSIX). */
static const char *find_bytes(const char *p, size_t n, const char *s)
{
    size_t k = strlen(s);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(p + i, s, k)) return p + i;
    return NULL;
}

/* Finish drawing and write the file; the canvas is released either way. */
static int canvas_close(canvas *c, const char *path, const char *title, lt_err *err)
{
    int rc = 0;
    cairo_status_t st = cairo_status(c->cr);
    if (st != CAIRO_STATUS_SUCCESS)
        rc = lt_errf(err, LT_EIO, "%s: drawing failed: %s", path, cairo_status_to_string(st));
    membuf file = {0};
    if (!rc && c->fmt == FMT_PNG) {
        cairo_surface_flush(c->surface);
        st = cairo_surface_write_to_png_stream(c->surface, membuf_write, &file);
        if (st != CAIRO_STATUS_SUCCESS)
            rc = lt_errf(err, LT_EIO, "%s: cannot encode PNG: %s", path, cairo_status_to_string(st));
    } else if (!rc) {
        cairo_destroy(c->cr);
        c->cr = NULL;
        cairo_surface_finish(c->surface);
        st = cairo_surface_status(c->surface);
        if (st != CAIRO_STATUS_SUCCESS)
            rc = lt_errf(err, LT_EIO, "%s: cannot encode SVG: %s", path, cairo_status_to_string(st));
        /* The title as text, right after the opening <svg ...> tag. */
        const char *svg = rc ? NULL : find_bytes((const char *)c->out.p, c->out.n, "<svg");
        const char *gt = svg ? memchr(svg, '>', c->out.n - (size_t)(svg - (const char *)c->out.p)) : NULL;
        if (!rc && !gt) rc = lt_errf(err, LT_EIO, "%s: cairo produced no <svg> element", path);
        if (!rc) {
            size_t head = (size_t)(gt + 1 - (const char *)c->out.p);
            if (membuf_write(&file, c->out.p, (unsigned)head) || membuf_write(&file, (const unsigned char *)"\n<title>", 8) ||
                membuf_put_xml(&file, title ? title : "") ||
                membuf_write(&file, (const unsigned char *)"</title>", 8) ||
                membuf_write(&file, c->out.p + head, (unsigned)(c->out.n - head)))
                rc = lt_errf(err, LT_ENOMEM, "%s: out of memory while encoding SVG", path);
        }
    }
    if (!rc) rc = lt_write_file_atomic(path, file.p, file.n, err);
    free(file.p);
    canvas_discard(c);
    return rc;
}

/* ---- text ---- */

/* Draw s with its anchor at (x, y): ax 0 left, 0.5 centre, 1 right; ay 0 top,
 * 0.5 middle, 1 bottom (of the font's ascent and descent, so labels of a row
 * line up whatever their letters). */
static void text_at(cairo_t *cr, double x, double y, const char *s, double ax, double ay)
{
    cairo_text_extents_t te;
    cairo_font_extents_t fe;
    cairo_text_extents(cr, s, &te);
    cairo_font_extents(cr, &fe);
    double bx = x - ax * te.x_advance;
    double by = y + fe.ascent - ay * (fe.ascent + fe.descent);
    cairo_move_to(cr, bx, by);
    cairo_show_text(cr, s);
}

static double text_width(cairo_t *cr, const char *s)
{
    cairo_text_extents_t te;
    cairo_text_extents(cr, s, &te);
    return te.x_advance;
}

static void set_font(cairo_t *cr, double size, int bold)
{
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

/* The title, shrunk to fit the width when it is long (a method with all its parameters). */
static void draw_title(cairo_t *cr, double cx, double y, double maxw, const char *title)
{
    if (!title || !*title) return;
    double size = 16;
    set_font(cr, size, 1);
    double w = text_width(cr, title);
    if (w > maxw) set_font(cr, size = fmax(8, size * maxw / w), 1);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text_at(cr, cx, y, title, 0.5, 0);
}

/* ---- colours ---- */

/* matplotlib's tab10 then tab20's lighter half: distinct, colour-blind aware. */
static const double palette[20][3] = {
    {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
    {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812}, {0.682, 0.780, 0.910}, {1.000, 0.733, 0.471},
    {0.596, 0.875, 0.541}, {1.000, 0.596, 0.588}, {0.773, 0.690, 0.835}, {0.769, 0.612, 0.580},
    {0.969, 0.714, 0.824}, {0.780, 0.780, 0.780}, {0.859, 0.859, 0.553}, {0.620, 0.855, 0.898},
};

static void set_class_colour(cairo_t *cr, int k, double alpha)
{
    const double *c = palette[k % 20];
    cairo_set_source_rgba(cr, c[0], c[1], c[2], alpha);
}

/* viridis, sampled at 9 stops and interpolated linearly. */
static void viridis(double t, double rgb[3])
{
    static const double stops[9][3] = {
        {0.267, 0.005, 0.329}, {0.278, 0.175, 0.483}, {0.230, 0.322, 0.546}, {0.173, 0.449, 0.558}, {0.128, 0.567, 0.551},
        {0.153, 0.683, 0.503}, {0.369, 0.789, 0.383}, {0.678, 0.864, 0.190}, {0.993, 0.906, 0.144},
    };
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double s = t * 8;
    int i = (int)s;
    if (i >= 8) i = 7;
    double f = s - i;
    for (int k = 0; k < 3; k++) rgb[k] = stops[i][k] * (1 - f) + stops[i + 1][k] * f;
}

/* ---- axes ---- */

typedef struct axis {
    double lo, hi; /* in data units, or log10 of them for a log axis */
    int log;
} axis;

typedef struct frame {
    double x0, y0, x1, y1; /* the plot area on the canvas; y0 is the top */
    axis ax, ay;
} frame;

static int usable(double v, int log) { return isfinite(v) && (!log || v > 0); }

static double map_x(const frame *f, double v)
{
    if (f->ax.log) v = log10(v);
    return f->x0 + (v - f->ax.lo) / (f->ax.hi - f->ax.lo) * (f->x1 - f->x0);
}

static double map_y(const frame *f, double v)
{
    if (f->ay.log) v = log10(v);
    return f->y1 - (v - f->ay.lo) / (f->ay.hi - f->ay.lo) * (f->y1 - f->y0);
}

typedef struct range {
    double lo, hi;
    int any;
} range;

static void range_add(range *r, double v, int log)
{
    if (!usable(v, log)) return;
    if (log) v = log10(v);
    if (!r->any || v < r->lo) r->lo = v;
    if (!r->any || v > r->hi) r->hi = v;
    r->any = 1;
}

/* The axis for a data range: a little padding, and a sensible span when the
 * data are empty or constant. */
static axis axis_for(range r, int log, double pad)
{
    axis a = {0, 1, log};
    if (!r.any) return a;
    double span = r.hi - r.lo;
    if (span <= 0 || !isfinite(span)) span = r.lo != 0 && isfinite(r.lo) ? fabs(r.lo) * 0.2 : 1;
    if (!(span > 0) || !isfinite(span)) span = 1;
    a.lo = r.lo - span * pad;
    a.hi = r.hi + span * pad;
    if (r.hi - r.lo <= 0) {
        a.lo = r.lo - span / 2;
        a.hi = r.lo + span / 2;
    }
    return a;
}

static double nice_step(double span, int target)
{
    double raw = span / target, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * p;
}

/* Tick positions (in axis units, i.e. log10 for a log axis); returns the count. */
static int ticks(const axis *a, int target, double *out, int max)
{
    int n = 0;
    if (a->log && a->hi - a->lo >= 1.5) {
        /* Decades, every other one or rarer when there are many. */
        double step = ceil((a->hi - a->lo) / target);
        for (double e = ceil(a->lo / step) * step; e <= a->hi + 1e-9 && n < max; e += step) out[n++] = e;
        return n;
    }
    if (a->log) {
        /* Less than ~1.5 decades: 1, 2, 5 times powers of ten that fall
         * inside, or every multiple 1..9 when those are too few. */
        static const double m125[3] = {1, 2, 5}, m19[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
        for (int pass = 0; pass < 2 && n < 4; pass++) {
            const double *m = pass ? m19 : m125;
            int nm = pass ? 9 : 3;
            n = 0;
            for (double e = floor(a->lo); e <= a->hi && n < max; e++)
                for (int k = 0; k < nm && n < max; k++) {
                    double v = e + log10(m[k]);
                    if (v >= a->lo - 1e-9 && v <= a->hi + 1e-9) out[n++] = v;
                }
        }
        if (n >= 2) return n;
        n = 0; /* a narrow range: fall back to linear ticks in log units */
    }
    double step = nice_step(a->hi - a->lo, target);
    for (double v = ceil(a->lo / step - 1e-9) * step; v <= a->hi + step * 1e-9 && n < max; v += step)
        out[n++] = fabs(v) < step * 1e-9 ? 0 : v;
    return n;
}

static void tick_label(const axis *a, double v, char *buf, size_t size)
{
    if (a->log) {
        double x = pow(10, v);
        snprintf(buf, size, "%.3g", x);
    } else {
        snprintf(buf, size, "%.6g", v);
    }
}

/* Frame, grid, ticks, tick labels and axis labels. */
static void draw_axes(cairo_t *cr, const frame *f, const char *xlabel, const char *ylabel)
{
    double t[64];
    char lab[64];
    cairo_set_line_width(cr, 1);
    set_font(cr, 11, 0);
    int nx = ticks(&f->ax, 7, t, 64);
    for (int i = 0; i < nx; i++) {
        double px = f->x0 + (t[i] - f->ax.lo) / (f->ax.hi - f->ax.lo) * (f->x1 - f->x0);
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, px, f->y0);
        cairo_line_to(cr, px, f->y1);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, px, f->y1);
        cairo_line_to(cr, px, f->y1 + 5);
        cairo_stroke(cr);
        tick_label(&f->ax, t[i], lab, sizeof lab);
        text_at(cr, px, f->y1 + 7, lab, 0.5, 0);
    }
    int ny = ticks(&f->ay, 6, t, 64);
    double maxw = 0;
    for (int i = 0; i < ny; i++) {
        double py = f->y1 - (t[i] - f->ay.lo) / (f->ay.hi - f->ay.lo) * (f->y1 - f->y0);
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, f->x0, py);
        cairo_line_to(cr, f->x1, py);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_move_to(cr, f->x0 - 5, py);
        cairo_line_to(cr, f->x0, py);
        cairo_stroke(cr);
        tick_label(&f->ay, t[i], lab, sizeof lab);
        maxw = fmax(maxw, text_width(cr, lab));
        text_at(cr, f->x0 - 7, py, lab, 1, 0.5);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_rectangle(cr, f->x0, f->y0, f->x1 - f->x0, f->y1 - f->y0);
    cairo_stroke(cr);
    set_font(cr, 13, 0);
    if (xlabel && *xlabel) text_at(cr, (f->x0 + f->x1) / 2, f->y1 + 26, xlabel, 0.5, 0);
    if (ylabel && *ylabel) {
        cairo_save(cr);
        cairo_translate(cr, f->x0 - 12 - maxw, (f->y0 + f->y1) / 2);
        cairo_rotate(cr, -PI / 2);
        text_at(cr, 0, 0, ylabel, 0.5, 1);
        cairo_restore(cr);
    }
}

/* Only what lies in the plot area is drawn. */
static void clip_to(cairo_t *cr, const frame *f)
{
    cairo_rectangle(cr, f->x0, f->y0, f->x1 - f->x0, f->y1 - f->y0);
    cairo_clip(cr);
}

/* A legend in a box whose top-left corner is (x, y): a line or a dot and a label per entry. */
static void draw_legend(cairo_t *cr, double x, double y, const char *heading, const char *const *labels, int n,
                        int dots)
{
    if (n <= 0) return;
    set_font(cr, 12, 0);
    const double row = 18;
    double w = heading ? text_width(cr, heading) : 0;
    for (int i = 0; i < n; i++) w = fmax(w, 30 + text_width(cr, labels[i] ? labels[i] : ""));
    double h = row * (n + (heading ? 1 : 0)) + 8;
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_rectangle(cr, x, y, w + 16, h);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.7, 0.7, 0.7);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    double yy = y + 4;
    if (heading) {
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, x + 8, yy + row / 2, heading, 0, 0.5);
        yy += row;
    }
    for (int i = 0; i < n; i++, yy += row) {
        set_class_colour(cr, i, 1);
        if (dots) {
            cairo_new_path(cr);
            cairo_arc(cr, x + 18, yy + row / 2, 4.5, 0, 2 * PI);
            cairo_fill(cr);
        } else {
            cairo_set_line_width(cr, 2.5);
            cairo_move_to(cr, x + 8, yy + row / 2);
            cairo_line_to(cr, x + 30, yy + row / 2);
            cairo_stroke(cr);
        }
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, x + 38, yy + row / 2, labels[i] ? labels[i] : "", 0, 0.5);
    }
}

static double legend_width(cairo_t *cr, const char *const *labels, int n)
{
    set_font(cr, 12, 0);
    double w = 0;
    for (int i = 0; i < n; i++) w = fmax(w, 30 + text_width(cr, labels[i] ? labels[i] : ""));
    return n > 0 ? w + 16 : 0;
}

/* ---- line charts ---- */

int lt_plot_lines(const char *path, const char *title, const char *xlabel, const char *ylabel,
                  const lt_series *series, int n_series, int log_y, lt_err *err)
{
    img_format fmt;
    int rc = format_of(path, &fmt, err);
    if (rc) return rc;
    if (n_series < 0 || (n_series > 0 && !series))
        return lt_errf(err, LT_EINVAL, "%s: bad series list (%d series)", path, n_series);
    range rx = {0}, ry = {0};
    for (int s = 0; s < n_series; s++) {
        const lt_series *S = &series[s];
        if (S->n < 0 || (S->n > 0 && (!S->x || !S->y)))
            return lt_errf(err, LT_EINVAL, "%s: series %d ('%s') has %d points but no x or y values", path, s,
                           S->label ? S->label : "", S->n);
        for (int i = 0; i < S->n; i++) {
            if (!usable(S->x[i], 0)) continue;
            int any = 0;
            if (usable(S->y[i], log_y)) range_add(&ry, S->y[i], log_y), any = 1;
            if (S->lo && S->hi && usable(S->lo[i], log_y) && usable(S->hi[i], log_y)) {
                range_add(&ry, S->lo[i], log_y);
                range_add(&ry, S->hi[i], log_y);
                any = 1;
            }
            if (any) range_add(&rx, S->x[i], 0);
        }
    }
    canvas c;
    if ((rc = canvas_open(&c, path, 900, 600, err))) return rc;
    cairo_t *cr = c.cr;
    const char **labels = calloc((size_t)n_series + 1, sizeof *labels);
    if (!labels) {
        canvas_discard(&c);
        return lt_errf(err, LT_ENOMEM, "%s: out of memory", path);
    }
    int n_labels = 0;
    for (int s = 0; s < n_series; s++) labels[s] = series[s].label, n_labels += series[s].label != NULL;
    double lw = n_labels ? legend_width(cr, labels, n_series) + 20 : 0;
    frame f = {80, 44, c.w - 24 - lw, c.h - 60, axis_for(rx, 0, 0.02), axis_for(ry, log_y, 0.05)};
    draw_title(cr, c.w / 2, 10, c.w - 20, title);
    draw_axes(cr, &f, xlabel, ylabel);
    cairo_save(cr);
    clip_to(cr, &f);
    for (int s = 0; s < n_series; s++) {
        const lt_series *S = &series[s];
        if (S->lo && S->hi) {
            /* The band: one polygon per run of points where the band is defined. */
            for (int i = 0; i < S->n;) {
                int ok = usable(S->x[i], 0) && usable(S->lo[i], log_y) && usable(S->hi[i], log_y);
                if (!ok) {
                    i++;
                    continue;
                }
                int j = i;
                while (j < S->n && usable(S->x[j], 0) && usable(S->lo[j], log_y) && usable(S->hi[j], log_y)) j++;
                cairo_new_path(cr);
                for (int k = i; k < j; k++) cairo_line_to(cr, map_x(&f, S->x[k]), map_y(&f, S->hi[k]));
                for (int k = j - 1; k >= i; k--) cairo_line_to(cr, map_x(&f, S->x[k]), map_y(&f, S->lo[k]));
                cairo_close_path(cr);
                set_class_colour(cr, s, 0.2);
                cairo_fill(cr);
                i = j;
            }
        }
        set_class_colour(cr, s, 1);
        cairo_set_line_width(cr, 2);
        cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
        int pen = 0, shown = 0;
        for (int i = 0; i < S->n; i++) {
            if (!usable(S->x[i], 0) || !usable(S->y[i], log_y)) {
                pen = 0;
                continue;
            }
            double px = map_x(&f, S->x[i]), py = map_y(&f, S->y[i]);
            if (pen) cairo_line_to(cr, px, py);
            else cairo_move_to(cr, px, py);
            pen = 1;
            shown++;
        }
        cairo_stroke(cr);
        /* Markers where points are few, so a single point or a short curve shows. */
        if (shown <= 60)
            for (int i = 0; i < S->n; i++)
                if (usable(S->x[i], 0) && usable(S->y[i], log_y)) {
                    cairo_new_path(cr);
                    cairo_arc(cr, map_x(&f, S->x[i]), map_y(&f, S->y[i]), 3, 0, 2 * PI);
                    cairo_fill(cr);
                }
    }
    cairo_restore(cr);
    if (n_labels) draw_legend(cr, f.x1 + 14, f.y0, NULL, labels, n_series, 0);
    free(labels);
    return canvas_close(&c, path, title, err);
}

/* ---- scatter maps ---- */

static int check_scatter(const char *path, const float *x, const float *y, const int *cls, int n, int n_classes,
                         const float *mark_x, const float *mark_y, int n_marks, lt_err *err)
{
    if (n < 0 || (n > 0 && (!x || !y)))
        return lt_errf(err, LT_EINVAL, "%s: bad scatter input (%d points, x or y missing)", path, n);
    if (n_marks < 0 || (n_marks > 0 && (!mark_x || !mark_y)))
        return lt_errf(err, LT_EINVAL, "%s: bad marked points (%d, x or y missing)", path, n_marks);
    if (cls) {
        if (n_classes < 1 || n_classes > 1000)
            return lt_errf(err, LT_EINVAL, "%s: number of classes %d outside 1..1000", path, n_classes);
        for (int i = 0; i < n; i++)
            if (cls[i] < 0 || cls[i] >= n_classes)
                return lt_errf(err, LT_EINVAL, "%s: class %d of point %d outside 0..%d", path, cls[i], i, n_classes - 1);
    }
    return 0;
}

/* The scatter of points (and numbered marks) inside the plot area f, whose axes
 * are already set. Points go in chunks in data order, one path per class in a
 * chunk: the SVG stays small (a path per class and chunk, not per point) while
 * no class is always drawn on top of the others. */
static void draw_points(cairo_t *cr, const frame *f, const float *x, const float *y, const int *cls, int n,
                        int n_classes, const float *mark_x, const float *mark_y, int n_marks)
{
    double r = n > 20000 ? 0.9 : n > 5000 ? 1.3 : n > 500 ? 2.0 : 3.0;
    double alpha = n > 20000 ? 0.55 : n > 5000 ? 0.7 : 0.85;
    int groups = cls ? n_classes : 1;
    int chunk = n / 16 > 2000 ? n / 16 : 2000;
    cairo_save(cr);
    clip_to(cr, f);
    for (int a = 0; a < n; a += chunk) {
        int b = a + chunk < n ? a + chunk : n;
        for (int g = 0; g < groups; g++) {
            int any = 0;
            for (int i = a; i < b; i++) {
                if ((cls && cls[i] != g) || !isfinite(x[i]) || !isfinite(y[i])) continue;
                double px = map_x(f, x[i]), py = map_y(f, y[i]);
                cairo_new_sub_path(cr);
                cairo_arc(cr, px, py, r, 0, 2 * PI);
                any = 1;
            }
            if (!any) continue;
            if (cls) set_class_colour(cr, g, alpha);
            else cairo_set_source_rgba(cr, 0.122, 0.467, 0.706, alpha);
            cairo_fill(cr);
        }
    }
    /* Marks: white discs with a black ring, numbered 1.. inside (or beside
     * them when there are many, with a smaller disc). */
    double mr = n_marks > 30 ? 4 : 9;
    set_font(cr, n_marks > 30 ? 9 : 10, 1);
    char num[16];
    for (int k = 0; k < n_marks; k++) {
        if (!isfinite(mark_x[k]) || !isfinite(mark_y[k])) continue;
        double px = map_x(f, mark_x[k]), py = map_y(f, mark_y[k]);
        cairo_new_path(cr); /* text leaves a current point that cairo_arc would join */
        cairo_arc(cr, px, py, mr, 0, 2 * PI);
        cairo_set_source_rgb(cr, 1, 1, 1);
        cairo_fill_preserve(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_set_line_width(cr, 1.5);
        cairo_stroke(cr);
        snprintf(num, sizeof num, "%d", k + 1);
        if (n_marks > 30) {
            /* A white halo around the number keeps it readable over dense dots. */
            cairo_font_extents_t fe;
            cairo_font_extents(cr, &fe);
            cairo_move_to(cr, px + mr + 1, py + (fe.ascent - fe.descent) / 2);
            cairo_text_path(cr, num);
            cairo_set_source_rgb(cr, 1, 1, 1);
            cairo_set_line_width(cr, 2.5);
            cairo_stroke_preserve(cr);
            cairo_set_source_rgb(cr, 0, 0, 0);
            cairo_fill(cr);
        } else {
            text_at(cr, px, py, num, 0.5, 0.5);
        }
    }
    cairo_restore(cr);
}

static void scatter_ranges(const float *x, const float *y, int n, const float *mark_x, const float *mark_y,
                           int n_marks, axis *ax, axis *ay)
{
    range rx = {0}, ry = {0};
    for (int i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i])) range_add(&rx, x[i], 0), range_add(&ry, y[i], 0);
    for (int k = 0; k < n_marks; k++)
        if (isfinite(mark_x[k]) && isfinite(mark_y[k])) range_add(&rx, mark_x[k], 0), range_add(&ry, mark_y[k], 0);
    *ax = axis_for(rx, 0, 0.04);
    *ay = axis_for(ry, 0, 0.04);
}

/* The labels "0", "1", ... for a class legend (buf holds them; labels point into it). */
static void class_labels(int n_classes, char (*buf)[12], const char **labels)
{
    for (int k = 0; k < n_classes; k++) {
        snprintf(buf[k], 12, "%d", k);
        labels[k] = buf[k];
    }
}

#define MAX_LEGEND 40

/* Map panel: axes, points, marks and the class legend to the right of the
 * area (left, top, right, bottom). */
static void draw_panel(cairo_t *cr, double left, double top, double right, double bottom, const char *xlabel,
                       const char *ylabel, const float *x, const float *y, const int *cls, int n, int n_classes,
                       const float *mark_x, const float *mark_y, int n_marks, const char *const *names,
                       const char *heading)
{
    char buf[MAX_LEGEND][12];
    const char *labels[MAX_LEGEND];
    int nl = cls ? (n_classes < MAX_LEGEND ? n_classes : MAX_LEGEND) : 0;
    class_labels(nl, buf, labels);
    for (int k = 0; names && k < nl; k++)
        if (names[k]) labels[k] = names[k];
    double lw = nl ? fmax(legend_width(cr, labels, nl), 60) + 16 : 0;
    frame f = {left + 70, top, right - lw - 10, bottom - 50, {0, 1, 0}, {0, 1, 0}};
    scatter_ranges(x, y, n, mark_x, mark_y, n_marks, &f.ax, &f.ay);
    draw_axes(cr, &f, xlabel, ylabel);
    draw_points(cr, &f, x, y, cls, n, n_classes, mark_x, mark_y, n_marks);
    if (nl) draw_legend(cr, f.x1 + 12, f.y0, heading ? heading : "class", labels, nl, 1);
}

static void draw_map_panel(cairo_t *cr, double left, double top, double right, double bottom, const char *xlabel,
                           const char *ylabel, const float *x, const float *y, const int *cls, int n, int n_classes,
                           const float *mark_x, const float *mark_y, int n_marks)
{
    draw_panel(cr, left, top, right, bottom, xlabel, ylabel, x, y, cls, n, n_classes, mark_x, mark_y, n_marks, NULL, NULL);
}

int lt_plot_scatter_named(const char *path, const char *title, const char *xlabel, const char *ylabel, const float *x,
                          const float *y, const int *cls, int n, int n_classes, const char *const *names,
                          const char *heading, lt_err *err)
{
    img_format fmt;
    int rc = format_of(path, &fmt, err);
    if (!rc) rc = check_scatter(path, x, y, cls, n, n_classes, NULL, NULL, 0, err);
    if (rc) return rc;
    canvas c;
    if ((rc = canvas_open(&c, path, 900, 780, err))) return rc;
    draw_title(c.cr, c.w / 2, 10, c.w - 20, title);
    draw_panel(c.cr, 10, 44, c.w - 10, c.h - 10, xlabel, ylabel, x, y, cls, n, n_classes, NULL, NULL, 0, names, heading);
    return canvas_close(&c, path, title, err);
}

int lt_plot_scatter(const char *path, const char *title, const char *xlabel, const char *ylabel, const float *x,
                    const float *y, const int *cls, int n, int n_classes, const float *mark_x, const float *mark_y,
                    int n_marks, lt_err *err)
{
    img_format fmt;
    int rc = format_of(path, &fmt, err);
    if (!rc) rc = check_scatter(path, x, y, cls, n, n_classes, mark_x, mark_y, n_marks, err);
    if (rc) return rc;
    canvas c;
    if ((rc = canvas_open(&c, path, 900, 780, err))) return rc;
    draw_title(c.cr, c.w / 2, 10, c.w - 20, title);
    draw_map_panel(c.cr, 10, 44, c.w - 10, c.h - 10, xlabel, ylabel, x, y, cls, n, n_classes, mark_x, mark_y, n_marks);
    return canvas_close(&c, path, title, err);
}

/* One grey-level image (floats in [0,1], h x w) drawn scaled into a box at (x, y). */
static int draw_digit(cairo_t *cr, const float *img, int h, int w, double x, double y, double scale)
{
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(s);
        return -1;
    }
    cairo_surface_flush(s);
    unsigned char *data = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    for (int r = 0; r < h; r++)
        for (int q = 0; q < w; q++) {
            float v = img[(size_t)r * w + q];
            v = isfinite(v) ? (v < 0 ? 0 : v > 1 ? 1 : v) : 0;
            uint32_t g = (uint32_t)(v * 255.0f + 0.5f);
            uint32_t px = 0xFF000000u | g << 16 | g << 8 | g;
            memcpy(data + (size_t)r * stride + 4 * (size_t)q, &px, 4);
        }
    cairo_surface_mark_dirty(s);
    cairo_save(cr);
    cairo_translate(cr, x, y);
    cairo_scale(cr, scale, scale);
    cairo_set_source_surface(cr, s, 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr), scale == floor(scale) ? CAIRO_FILTER_NEAREST : CAIRO_FILTER_GOOD);
    cairo_rectangle(cr, 0, 0, w, h);
    cairo_fill(cr);
    cairo_restore(cr);
    cairo_surface_destroy(s);
    return 0;
}

int lt_plot_map_digits(const char *path, const char *title, const char *xlabel, const char *ylabel, const float *x,
                       const float *y, const int *cls, int n, int n_classes, const float *mark_x, const float *mark_y,
                       int n_marks, const float *images, int h, int w, const char *note, lt_err *err)
{
    img_format fmt;
    int rc = format_of(path, &fmt, err);
    if (!rc) rc = check_scatter(path, x, y, cls, n, n_classes, mark_x, mark_y, n_marks, err);
    if (rc) return rc;
    if (n_marks < 1 || n_marks > 10000 || !images || h < 1 || w < 1 || h > 256 || w > 256)
        return lt_errf(err, LT_EINVAL, "%s: bad digit panel (%d images of %dx%d)", path, n_marks, h, w);
    /* The digits in a near-square grid, numbered like the marks on the map. */
    int cols = (int)ceil(sqrt((double)n_marks)), rows = (n_marks + cols - 1) / cols;
    double panel = 720, cell = floor(panel / (cols > rows ? cols : rows));
    /* Whole-pixel scales keep the digits crisp; below 3x a fractional one
     * (smoothed) uses the room a large grid leaves. */
    double scale = floor((cell - 16) / (h > w ? h : w));
    if (scale < 3) scale = (cell - 16) / (h > w ? h : w);
    if (scale > 4) scale = 4;
    cell = (h > w ? h : w) * scale + 16;
    double map_w = 860, W = map_w + cols * cell + 30, H = fmax(780, rows * cell + 110);
    canvas c;
    if ((rc = canvas_open(&c, path, (int)W, (int)H, err))) return rc;
    cairo_t *cr = c.cr;
    draw_title(cr, W / 2, 10, W - 20, title);
    draw_map_panel(cr, 10, 44, map_w, 780 - 30, xlabel, ylabel, x, y, cls, n, n_classes, mark_x, mark_y, n_marks);
    double gx = map_w + 20, gy = 50;
    set_font(cr, cell < 40 ? 8 : 10, 0);
    char num[16];
    for (int k = 0; k < n_marks && !rc; k++) {
        double ox = gx + (k % cols) * cell, oy = gy + (k / cols) * cell;
        snprintf(num, sizeof num, "%d", k + 1);
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, ox + 1, oy, num, 0, 0);
        if (draw_digit(cr, images + (size_t)k * h * w, h, w, ox, oy + 13, scale))
            rc = lt_errf(err, LT_ENOMEM, "%s: out of memory drawing digit %d", path, k + 1);
    }
    if (note && *note) {
        set_font(cr, 11, 0);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        text_at(cr, 20, H - 8, note, 0, 1);
    }
    if (rc) {
        canvas_discard(&c);
        return rc;
    }
    return canvas_close(&c, path, title, err);
}

/* ---- heatmaps ---- */

int lt_plot_heatmap(const char *path, const char *title, const char *xlabel, const char *ylabel,
                    const char *const *row_labels, const char *const *col_labels, const double *values, int rows,
                    int cols, int annotate, lt_err *err)
{
    img_format fmt;
    int rc = format_of(path, &fmt, err);
    if (rc) return rc;
    if (rows < 1 || cols < 1 || rows > 1000 || cols > 1000 || !values)
        return lt_errf(err, LT_EINVAL, "%s: bad heatmap (%d x %d, values %s)", path, rows, cols, values ? "given" : "missing");
    range r = {0};
    int all_int = 1;
    for (size_t i = 0; i < (size_t)rows * cols; i++) {
        range_add(&r, values[i], 0);
        if (isfinite(values[i]) && (values[i] != floor(values[i]) || fabs(values[i]) >= 1e7)) all_int = 0;
    }
    double vlo = r.any ? r.lo : 0, vhi = r.any ? r.hi : 1;
    if (vhi <= vlo) vhi = vlo + 1;
    int big = rows > cols ? rows : cols;
    double cell = floor(620.0 / big);
    if (cell > 60) cell = 60;
    if (cell < 2) cell = 2;
    canvas probe;
    /* Room for the row labels: measured with the same font on a scratch canvas. */
    if ((rc = canvas_open(&probe, path, 10, 10, err))) return rc;
    set_font(probe.cr, 11, 0);
    double rlw = 0;
    char lab[32];
    for (int i = 0; i < rows; i++) {
        if (row_labels && row_labels[i]) rlw = fmax(rlw, text_width(probe.cr, row_labels[i]));
        else snprintf(lab, sizeof lab, "%d", i), rlw = fmax(rlw, text_width(probe.cr, lab));
    }
    canvas_discard(&probe);
    double left = 40 + rlw + 10, top = 50;
    double W = left + cols * cell + 110, H = top + rows * cell + 70;
    if (W < 420) W = 420;
    canvas c;
    if ((rc = canvas_open(&c, path, (int)W, (int)H, err))) return rc;
    cairo_t *cr = c.cr;
    draw_title(cr, W / 2, 10, W - 20, title);
    set_font(cr, cell >= 40 ? 12 : cell >= 24 ? 9 : 7, 0);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            double v = values[(size_t)i * cols + j], rgb[3] = {0.85, 0.85, 0.85};
            if (isfinite(v)) viridis((v - vlo) / (vhi - vlo), rgb);
            cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
            cairo_rectangle(cr, left + j * cell, top + i * cell, cell, cell);
            cairo_fill(cr);
            if (!annotate || cell < 14) continue;
            if (!isfinite(v)) snprintf(lab, sizeof lab, "n/a");
            else if (all_int) snprintf(lab, sizeof lab, "%.0f", v);
            else snprintf(lab, sizeof lab, "%.3g", v);
            double lum = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
            if (lum < 0.5) cairo_set_source_rgb(cr, 1, 1, 1);
            else cairo_set_source_rgb(cr, 0, 0, 0);
            text_at(cr, left + (j + 0.5) * cell, top + (i + 0.5) * cell, lab, 0.5, 0.5);
        }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, left, top, cols * cell, rows * cell);
    cairo_stroke(cr);
    /* Row and column labels, thinned out when cells are too small for every one. */
    set_font(cr, 11, 0);
    int every = cell >= 14 ? 1 : (int)ceil(14 / cell);
    for (int i = 0; i < rows; i += every) {
        if (row_labels && row_labels[i]) text_at(cr, left - 6, top + (i + 0.5) * cell, row_labels[i], 1, 0.5);
        else snprintf(lab, sizeof lab, "%d", i), text_at(cr, left - 6, top + (i + 0.5) * cell, lab, 1, 0.5);
    }
    for (int j = 0; j < cols; j += every) {
        const char *s = col_labels && col_labels[j] ? col_labels[j] : (snprintf(lab, sizeof lab, "%d", j), lab);
        text_at(cr, left + (j + 0.5) * cell, top + rows * cell + 5, s, 0.5, 0);
    }
    set_font(cr, 13, 0);
    if (xlabel && *xlabel) text_at(cr, left + cols * cell / 2, top + rows * cell + 26, xlabel, 0.5, 0);
    if (ylabel && *ylabel) {
        cairo_save(cr);
        cairo_translate(cr, left - rlw - 16, top + rows * cell / 2);
        cairo_rotate(cr, -PI / 2);
        text_at(cr, 0, 0, ylabel, 0.5, 1);
        cairo_restore(cr);
    }
    /* Colour bar with the value scale. */
    double bx = left + cols * cell + 20, bh = rows * cell;
    for (int k = 0; k < 100; k++) {
        double rgb[3];
        viridis((k + 0.5) / 100, rgb);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_rectangle(cr, bx, top + bh * (1 - (k + 1) / 100.0), 16, bh / 100 + 0.5);
        cairo_fill(cr);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_rectangle(cr, bx, top, 16, bh);
    cairo_stroke(cr);
    axis a = {vlo, vhi, 0};
    double t[64];
    int nt = ticks(&a, 5, t, 64);
    set_font(cr, 10, 0);
    for (int k = 0; k < nt; k++) {
        double py = top + bh * (1 - (t[k] - vlo) / (vhi - vlo));
        cairo_move_to(cr, bx + 16, py);
        cairo_line_to(cr, bx + 20, py);
        cairo_stroke(cr);
        tick_label(&a, t[k], lab, sizeof lab);
        text_at(cr, bx + 22, py, lab, 0, 0.5);
    }
    return canvas_close(&c, path, title, err);
}
