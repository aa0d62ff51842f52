// The container's device allow list as a BPF_PROG_TYPE_CGROUP_DEVICE program (cgroup v2, and the
// v2 tree of a hybrid host). See CShimsDevices.h.
//
// Hand-written instructions rather than libbpf: the program is a few dozen instructions of one
// fixed shape (the one systemd's bpf-devices.c and runc's devicefilter emit), and libbpf would
// need a compiled BPF object and a build-time clang for it. The container's seccomp filter denies
// bpf(2), so the container cannot detach it.
#include "CShimsDevices.h"

#include <errno.h>
#include <linux/bpf.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static struct bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
    struct bpf_insn i;
    memset(&i, 0, sizeof i);
    i.code = code;
    i.dst_reg = dst;
    i.src_reg = src;
    i.off = off;
    i.imm = imm;
    return i;
}

#define ALL_ACCESS (IMG_DEVICE_MKNOD | IMG_DEVICE_READ | IMG_DEVICE_WRITE)

/// The program, with registers as systemd names them: r2 the device type, r3 the requested
/// access, r4 major, r5 minor (read once from the context in r1), r1 scratch afterwards. Each rule
/// is a block that jumps to the next rule on the first mismatch and returns 1 (allow) at its end;
/// past the last rule the program returns 0 (deny).
static long build(const struct img_device_rule *rules, size_t count, struct bpf_insn *out, size_t capacity) {
    if (capacity < (size_t)IMG_DEVICE_PROGRAM_MAX(count)) { errno = ENOSPC; return -1; }
    long n = 0;
    out[n++] = insn(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_1, offsetof(struct bpf_cgroup_dev_ctx, access_type), 0);
    out[n++] = insn(BPF_ALU | BPF_AND | BPF_K, BPF_REG_2, 0, 0, 0xFFFF);
    out[n++] = insn(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_3, BPF_REG_1, offsetof(struct bpf_cgroup_dev_ctx, access_type), 0);
    out[n++] = insn(BPF_ALU | BPF_RSH | BPF_K, BPF_REG_3, 0, 0, 16);
    out[n++] = insn(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_4, BPF_REG_1, offsetof(struct bpf_cgroup_dev_ctx, major), 0);
    out[n++] = insn(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_5, BPF_REG_1, offsetof(struct bpf_cgroup_dev_ctx, minor), 0);
    for (size_t r = 0; r < count; r++) {
        const struct img_device_rule *rule = &rules[r];
        if ((rule->type != IMG_DEVICE_BLOCK && rule->type != IMG_DEVICE_CHAR) || (rule->access & ~ALL_ACCESS) ||
            rule->major < -1 || rule->major > INT32_MAX || rule->minor < -1 || rule->minor > INT32_MAX) {
            errno = EINVAL;
            return -1;
        }
        int checks_access = (rule->access & ALL_ACCESS) != ALL_ACCESS;
        // Jumps are relative to the next instruction; the block ends with "r0 = 1; exit".
        long end = n + 1 + (checks_access ? 3 : 0) + (rule->major >= 0) + (rule->minor >= 0) + 2;
        out[n] = insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_2, 0, 0, (int32_t)rule->type);
        out[n].off = (int16_t)(end - n - 1);
        n++;
        if (checks_access) {
            // Any requested bit outside the rule's access: not this rule.
            out[n++] = insn(BPF_ALU | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_3, 0, 0);
            out[n++] = insn(BPF_ALU | BPF_AND | BPF_K, BPF_REG_1, 0, 0, (int32_t)(~rule->access & ALL_ACCESS));
            out[n] = insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_1, 0, 0, 0);
            out[n].off = (int16_t)(end - n - 1);
            n++;
        }
        if (rule->major >= 0) {
            out[n] = insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_4, 0, 0, (int32_t)rule->major);
            out[n].off = (int16_t)(end - n - 1);
            n++;
        }
        if (rule->minor >= 0) {
            out[n] = insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_5, 0, 0, (int32_t)rule->minor);
            out[n].off = (int16_t)(end - n - 1);
            n++;
        }
        out[n++] = insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1);
        out[n++] = insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    }
    out[n++] = insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0);
    out[n++] = insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    return n;
}

long img_device_program(const struct img_device_rule *rules, size_t count, struct img_bpf_insn *out, size_t capacity) {
    if (count > 512) { errno = EINVAL; return -1; }  // bounds the stack array
    struct bpf_insn program[IMG_DEVICE_PROGRAM_MAX(count)];
    long n = build(rules, count, program, sizeof program / sizeof program[0]);
    if (n < 0) return -1;
    if ((size_t)n > capacity) { errno = ENOSPC; return -1; }
    for (long i = 0; i < n; i++) {
        out[i].code = program[i].code;
        out[i].dst_reg = program[i].dst_reg;
        out[i].src_reg = program[i].src_reg;
        out[i].offset = program[i].off;
        out[i].immediate = program[i].imm;
    }
    return n;
}

int img_device_program_attach(int cgroup_fd, const struct img_device_rule *rules, size_t count) {
    if (count > 512) { errno = EINVAL; return -1; }  // bounds the stack array
    struct bpf_insn program[IMG_DEVICE_PROGRAM_MAX(count)];
    long n = build(rules, count, program, sizeof program / sizeof program[0]);
    if (n < 0) return -1;

    union bpf_attr load;
    memset(&load, 0, sizeof load);
    load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    load.insns = (uint64_t)(uintptr_t)program;
    load.insn_cnt = (uint32_t)n;
    load.license = (uint64_t)(uintptr_t)"GPL";
    int prog = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load);
    if (prog < 0) return -1;

    union bpf_attr attach;
    memset(&attach, 0, sizeof attach);
    attach.target_fd = (uint32_t)cgroup_fd;
    attach.attach_bpf_fd = (uint32_t)prog;
    attach.attach_type = BPF_CGROUP_DEVICE;
    // ALLOW_MULTI: programs attached further down (by anyone) run in addition to this one and
    // cannot replace it; a device is allowed only if every program allows it.
    attach.attach_flags = BPF_F_ALLOW_MULTI;
    int result = (int)syscall(SYS_bpf, BPF_PROG_ATTACH, &attach, sizeof attach);
    int saved = errno;
    close(prog);
    errno = saved;
    return result < 0 ? -1 : 0;
}
