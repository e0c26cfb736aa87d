/* io: 8-bit grayscale PNG writing (atomic) and reading, through libpng.
 *
 * libpng reports errors by longjmp()ing out of whatever call failed. To keep
 * that contained, each setjmp() lives in a small function of its own whose
 * locals are all set before setjmp() and never changed after it; everything
 * that changes (the error text, the buffers being filled) lives in the caller,
 * reached through pointers, so nothing needs to survive a longjmp in a
 * register. libpng's default handlers print to stderr, and the library never
 * prints, so we install our own that keep the message instead. */
#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "io/png.h"

typedef struct png_ctx {
    char msg[200];   /* libpng's error message, if it raised one */
    uint8_t *pixels; /* lt_png_read_gray: the image being filled */
    png_bytep *rows; /* lt_png_read_gray: row pointers into pixels */
    int oom;         /* the error was running out of memory */
} png_ctx;

static void on_png_error(png_structp png, png_const_charp msg)
{
    png_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
    /* Warnings (an unknown chunk, a bad gamma value) don't stop us and we
     * have nowhere to print them. */
    (void)png;
    (void)msg;
}

int lt_png_write_gray(const char *path, const uint8_t *pixels, int width, int height, lt_err *err)
{
    if (!path || !pixels) return lt_errf(err, LT_EINVAL, "lt_png_write_gray: no path or no pixels");
    /* PNG_USER_WIDTH_MAX: larger images are legal PNG but libpng refuses them
     * by default, and nothing in latent comes near. */
    if (width <= 0 || height <= 0 || width > PNG_USER_WIDTH_MAX || height > PNG_USER_HEIGHT_MAX)
        return lt_errf(err, LT_EINVAL, "%s: bad PNG size %dx%d (each side must be 1 to %d)", path, width, height,
                       (int)PNG_USER_WIDTH_MAX);
    /* Encode in memory with libpng's simplified API (no longjmp to contain),
     * then hand the bytes to the one atomic writer every file of latent uses. */
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = (png_uint_32)width;
    image.height = (png_uint_32)height;
    image.format = PNG_FORMAT_GRAY;
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&image, NULL, &size, 0, pixels, 0, NULL))
        return lt_errf(err, LT_EIO, "%s: cannot encode PNG: %s", path, image.message);
    void *buf = lt_malloc(size, err);
    if (!buf) return LT_ENOMEM;
    int rc = 0;
    if (!png_image_write_to_memory(&image, buf, &size, 0, pixels, 0, NULL))
        rc = lt_errf(err, LT_EIO, "%s: cannot encode PNG: %s", path, image.message);
    if (!rc) rc = lt_write_file_atomic(path, buf, size, err);
    free(buf);
    return rc;
}

/* Returns 0, or an LT_E* code with ctx->msg set. On success ctx->pixels holds
 * the image; on failure the caller frees whatever ctx holds. */
static int decode(FILE *fp, png_ctx *ctx, int *width, int *height)
{
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, on_png_error, on_png_warning);
    if (!png) {
        snprintf(ctx->msg, sizeof ctx->msg, "out of memory");
        return LT_ENOMEM;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        snprintf(ctx->msg, sizeof ctx->msg, "out of memory");
        return LT_ENOMEM;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return ctx->oom ? LT_ENOMEM : LT_EFORMAT;
    }
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);
    if ((color & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
    if (color == PNG_COLOR_TYPE_PALETTE || (color & PNG_COLOR_MASK_COLOR))
        png_set_rgb_to_gray_fixed(png, PNG_ERROR_ACTION_NONE, -1, -1);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != 1 || png_get_bit_depth(png, info) != 8 || png_get_rowbytes(png, info) != w)
        png_error(png, "could not convert the image to 8-bit grayscale");
    /* libpng already limits each side to PNG_USER_*_MAX (1e6), so this fits. */
    size_t n = (size_t)w * (size_t)h;
    ctx->pixels = malloc(n);
    ctx->rows = malloc((size_t)h * sizeof *ctx->rows);
    if (!ctx->pixels || !ctx->rows) {
        ctx->oom = 1;
        png_error(png, "out of memory");
    }
    for (png_uint_32 y = 0; y < h; y++) ctx->rows[y] = ctx->pixels + (size_t)y * w;
    png_read_image(png, ctx->rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    *width = (int)w;
    *height = (int)h;
    return 0;
}

int lt_png_read_gray(const char *path, uint8_t **pixels, int *width, int *height, lt_err *err)
{
    if (!path || !pixels || !width || !height) return lt_errf(err, LT_EINVAL, "lt_png_read_gray: missing argument");
    *pixels = NULL;
    *width = *height = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return lt_errf(err, LT_EIO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char sig[8];
    size_t got = fread(sig, 1, sizeof sig, fp);
    if (got != sizeof sig || png_sig_cmp(sig, 0, sizeof sig) != 0) {
        int bad = ferror(fp);
        fclose(fp);
        if (bad) return lt_errf(err, LT_EIO, "%s: read error", path);
        return lt_errf(err, LT_EFORMAT, "%s: not a PNG file (bad signature)", path);
    }
    png_ctx ctx = {{0}, NULL, NULL, 0};
    int rc = decode(fp, &ctx, width, height);
    fclose(fp);
    free(ctx.rows);
    if (rc != 0) {
        free(ctx.pixels);
        *width = *height = 0;
        return lt_errf(err, rc, "%s: %s%s", path, rc == LT_ENOMEM ? "" : "bad PNG: ", ctx.msg);
    }
    *pixels = ctx.pixels;
    return 0;
}
