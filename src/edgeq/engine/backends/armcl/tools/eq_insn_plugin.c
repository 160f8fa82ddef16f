/* A qemu TCG plugin (qemu 7.2, plugin API version 1) that counts retired guest
 * instructions between two code addresses: every time execution reaches ``start`` the
 * count restarts, and reaching ``stop`` afterwards prints the instructions in between
 * (kept, and printed at exit as "insns N" lines on the qemu log: printing while the
 * guest runs crashed it under qemu 7.2). edgeq points ``start`` at eq_run_layer and ``stop`` at
 * clock_gettime, which the harness calls right after each layer in --per-layer mode:
 * one line per layer. Also prints "insns_total N" at exit.
 *
 * Debian's qemu-user 7.2 loads plugins (-plugin) but ships neither plugins nor the API
 * header, so the few declarations of the plugin ABI this file uses are written here. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
                                            qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_outs(const char *string);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t count;     /* instructions of every translation block entered */
static uint64_t mark;      /* count when ``start`` was last reached */
static int inside;         /* between start and stop */
static uint64_t start_pc, stop_pc;
#define MAX_SPANS 65536
static uint64_t spans[MAX_SPANS];
static size_t n_spans;

static void out(const char *key, uint64_t v) {
    char line[64];
    snprintf(line, sizeof line, "%s %" PRIu64 "\n", key, v);
    qemu_plugin_outs(line);
}

static void on_start(unsigned int vcpu, void *udata) {
    (void)vcpu;
    (void)udata;
    mark = count;
    inside = 1;
}

static void on_stop(unsigned int vcpu, void *udata) {
    (void)vcpu;
    (void)udata;
    if (inside && n_spans < MAX_SPANS) spans[n_spans++] = count - mark;
    inside = 0;
}

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    const size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &count, n);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        const uint64_t pc = qemu_plugin_insn_vaddr(insn);
        if (pc == start_pc)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_start, QEMU_PLUGIN_CB_NO_REGS, NULL);
        else if (pc == stop_pc)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_stop, QEMU_PLUGIN_CB_NO_REGS, NULL);
    }
}

static void on_exit_(qemu_plugin_id_t id, void *udata) {
    (void)id;
    (void)udata;
    for (size_t i = 0; i < n_spans; i++) out("insns", spans[i]);
    out("insns_total", count);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info,
                                                               int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "start=", 6) == 0) start_pc = strtoull(argv[i] + 6, NULL, 0);
        if (strncmp(argv[i], "stop=", 5) == 0) stop_pc = strtoull(argv[i] + 5, NULL, 0);
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, on_exit_, NULL);
    return 0;
}
