/* Harness of a generated model: run_model IN.npy OUT.npy [--repeat N] [--per-layer]
 * [--landmarks PTS.npy [--roi x0,y0,x1,y1]].
 * A model with several inputs/outputs takes IN1.npy ... INn.npy OUT1.npy ... OUTm.npy.
 * --landmarks writes the post-processing's points [N, 2, P] (float32; a model compiled
 * with a post-processing, post.c), in image pixels through the ROI when --roi is given.
 *
 * Reads each input .npy (NCHW, C order) in the model input's dtype, or in float for a
 * quantised input, quantised by the input rule clip(floor(x/eps + 1/2), lo, hi); runs
 * the model; writes the output .npy. --repeat N prints `latency_ms_median <ms>` over N
 * runs; --per-layer prints `layer <i> <name> <op> <median_us>` per layer. */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eq_kernels.h"
#include "model.h"

static void fail(const char *what, const char *detail) {
    fprintf(stderr, "run_model: error: %s%s\n", what, detail ? detail : "");
    exit(1);
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static const char *descr_of(int dt) {
    switch (dt) {
    case EQ_U8: return "|u1";
    case EQ_S8: return "|i1";
    case EQ_U16: return "<u2";
    case EQ_S16: return "<i2";
    case EQ_U32: return "<u4";
    case EQ_S32: return "<i4";
    case EQ_S64: return "<i8";
    case EQ_F32: return "<f4";
    default: return "<f8";
    }
}

static int dtype_of(const char *d) {
    static const char *names[] = {"u1", "i1", "u2", "i2", "u4", "i4", "i8", "f4", "f8"};
    if (strlen(d) != 3 || (d[0] != '<' && d[0] != '|')) return -1;
    for (int i = 0; i < 9; i++)
        if (strcmp(d + 1, names[i]) == 0) return i;
    return -1;
}

/* Reads a C-order .npy; returns the data (malloc'ed), its dtype code and element count. */
static void *read_npy(const char *path, int *dt, long *shape, int *rank, size_t *numel) {
    FILE *f = fopen(path, "rb");
    if (!f) fail("cannot open input ", path);
    unsigned char pre[10];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) fail("not a .npy file: ", path);
    size_t hlen = pre[8] | (size_t)pre[9] << 8;
    if (pre[6] >= 2) {
        unsigned char more[2];
        if (fread(more, 1, 2, f) != 2) fail("truncated .npy header: ", path);
        hlen |= (size_t)more[0] << 16 | (size_t)more[1] << 24;
    }
    char *h = calloc(hlen + 1, 1);
    if (!h || fread(h, 1, hlen, f) != hlen) fail("truncated .npy header: ", path);
    char descr[16] = {0};
    const char *d = strstr(h, "'descr':");
    if (!d || sscanf(d, "'descr': '%15[^']'", descr) != 1) fail("no dtype in .npy header: ", path);
    *dt = dtype_of(descr);
    if (*dt < 0) fail("unsupported .npy dtype in ", path);
    if (strstr(h, "'fortran_order': True")) fail("Fortran-order .npy not supported: ", path);
    const char *s = strstr(h, "'shape': (");
    if (!s) fail("no shape in .npy header: ", path);
    s += 10;
    *rank = 0;
    *numel = 1;
    while (*s && *s != ')') {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s) break;
        shape[(*rank)++] = v;
        *numel *= (size_t)v;
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    free(h);
    const size_t bytes = *numel * eq_dtype_size(*dt);
    void *data = malloc(bytes ? bytes : 1);
    if (!data || fread(data, 1, bytes, f) != bytes) fail("truncated .npy data: ", path);
    fclose(f);
    return data;
}

static void write_npy(const char *path, const void *data, int dt, const long *shape, int rank,
                      size_t numel) {
    char h[256], dims[160] = "";
    for (int i = 0; i < rank; i++) {
        char one[24];
        snprintf(one, sizeof one, "%ld,%s", shape[i], rank > 1 && i < rank - 1 ? " " : "");
        strcat(dims, one);
    }
    if (rank > 1) dims[strlen(dims) - 1] = '\0'; /* numpy writes (1, 2) and (3,) */
    int n = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                     descr_of(dt), dims);
    int total = 10 + n + 1;
    int padn = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) fail("cannot write output ", path);
    const int hlen = n + padn + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 255),
                             (unsigned char)(hlen >> 8)};
    fwrite(pre, 1, 10, f);
    fwrite(h, 1, (size_t)n, f);
    for (int i = 0; i < padn; i++) fputc(' ', f);
    fputc('\n', f);
    if (fwrite(data, 1, numel * eq_dtype_size(dt), f) != numel * eq_dtype_size(dt))
        fail("cannot write output ", path);
    if (fclose(f) != 0) fail("cannot write output ", path);
}

/* round half up, exact: floor(v) + (v - floor(v) >= 1/2) */
static double round_half_up(double v) {
    const double f = floor(v);
    return f + (v - f >= 0.5 ? 1.0 : 0.0);
}

static void load_input(int k, const void *src, int src_dt, size_t numel) {
    void *dst = eq_input(k);
    const int in_dtype = eq_in_dtype[k];
    const int64_t lo = eq_in_lo[k], hi = eq_in_hi[k];
    const double eps = eq_in_eps[k];
    const int quantised = eq_in_quantised[k];
    const int src_float = src_dt == EQ_F32 || src_dt == EQ_F64;
    const int dst_float = in_dtype == EQ_F32 || in_dtype == EQ_F64;
    for (size_t i = 0; i < numel; i++) {
        if (dst_float) {
            eq_store_f(dst, in_dtype, i, eq_load_f(src, src_dt, i));
        } else if (src_float) {
            if (!quantised || !(eps > 0))
                fail("float input to an integer input without a known eps", NULL);
            double q = round_half_up(eq_load_f(src, src_dt, i) / eps);
            q = q < (double)lo ? (double)lo : q > (double)hi ? (double)hi : q;
            eq_store_i(dst, in_dtype, i, (int64_t)q);
        } else {
            const int64_t v = eq_load_i(src, src_dt, i);
            if (quantised && (v < lo || v > hi)) fail("input value outside the input range", NULL);
            eq_store_i(dst, in_dtype, i, v);
        }
    }
}

#define EQ_MAX_IO 64

int main(int argc, char **argv) {
    const char *paths[2 * EQ_MAX_IO];
    int n_paths = 0, repeat = 0, per_layer = 0;
    const char *points_path = NULL;
    double roi[4];
    int has_roi = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--landmarks") == 0 && i + 1 < argc) {
            points_path = argv[++i];
        } else if (strcmp(argv[i], "--roi") == 0 && i + 1 < argc) {
            if (sscanf(argv[++i], "%lf,%lf,%lf,%lf", &roi[0], &roi[1], &roi[2], &roi[3]) != 4)
                fail("--roi needs x0,y0,x1,y1", NULL);
            has_roi = 1;
        } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
            repeat = atoi(argv[++i]);
            if (repeat < 1) fail("--repeat needs a positive count", NULL);
        } else if (strcmp(argv[i], "--per-layer") == 0) {
            per_layer = 1;
        } else if (n_paths < 2 * EQ_MAX_IO) {
            paths[n_paths++] = argv[i];
        } else {
            fail("too many arguments", NULL);
        }
    }
    if (n_paths != eq_n_inputs + eq_n_outputs)
        fail("usage: run_model IN.npy OUT.npy [--repeat N] [--per-layer] "
             "[--landmarks PTS.npy [--roi x0,y0,x1,y1]] "
             "(one .npy per model input, then one per output)", NULL);
    if (points_path && eq_post_points == 0)
        fail("--landmarks: this model was compiled without a post-processing", NULL);
    if (has_roi && !points_path) fail("--roi needs --landmarks", NULL);
    void *xs[EQ_MAX_IO];
    int dts[EQ_MAX_IO];
    size_t numels[EQ_MAX_IO];
    for (int k = 0; k < eq_n_inputs; k++) {
        int rank;
        long shape[16];
        xs[k] = read_npy(paths[k], &dts[k], shape, &rank, &numels[k]);
        int same = rank == eq_in_rank[k];
        for (int i = 0; same && i < rank; i++) same = shape[i] == eq_in_shape[k][i];
        if (!same) fail("input shape does not match the model input: ", paths[k]);
        load_input(k, xs[k], dts[k], numels[k]);
    }
    eq_run();
    for (int k = 0; k < eq_n_outputs; k++)
        write_npy(paths[eq_n_inputs + k], eq_output(k), eq_out_dtype[k], eq_out_shape[k],
                  eq_out_rank[k], eq_out_numel[k]);
    if (points_path) {
        const long shape[3] = {eq_out_shape[0][0], 2, eq_post_points};
        const size_t n = (size_t)shape[0] * 2 * (size_t)eq_post_points;
        float *pts = malloc(sizeof(float) * n);
        if (!pts) fail("out of memory", NULL);
        eq_post_run(has_roi ? roi : NULL, pts);
        write_npy(points_path, pts, EQ_F32, shape, 3, n);
        free(pts);
    }
    if (repeat > 0 || per_layer) {
        const int n = repeat > 0 ? repeat : 10;
        double *total = malloc(sizeof(double) * (size_t)n);
        double *layer = calloc((size_t)n * (size_t)(eq_n_layers ? eq_n_layers : 1), sizeof(double));
        if (!total || !layer) fail("out of memory", NULL);
        for (int r = 0; r < n; r++) {
            /* in-place layers may have reused the input bytes: reload */
            for (int k = 0; k < eq_n_inputs; k++) load_input(k, xs[k], dts[k], numels[k]);
            const double t0 = now_us();
            if (per_layer) { /* a layer's time: the sum over the samples of a sample loop */
                for (int s = 0; s < eq_samples; s++) {
                    eq_sample_begin(s);
                    for (int l = 0; l < eq_n_layers; l++) {
                        const double a = now_us();
                        eq_run_layer(l);
                        layer[(size_t)l * n + r] += now_us() - a;
                    }
                    eq_sample_end(s);
                }
            } else {
                eq_run();
            }
            total[r] = now_us() - t0;
        }
        printf("latency_ms_median %.6f\n", median(total, n) / 1e3);
        if (per_layer)
            for (int l = 0; l < eq_n_layers; l++)
                printf("layer %d %s %s %.3f\n", l, eq_layer_names[l], eq_layer_ops[l],
                       median(layer + (size_t)l * n, n));
        free(total);
        free(layer);
    }
    for (int k = 0; k < eq_n_inputs; k++) free(xs[k]);
    return 0;
}
