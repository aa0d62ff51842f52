// Loading the container's device program (built by Runner's DeviceCgroup) and attaching it to a
// cgroup v2 directory. See CShimsDevices.h. The container's seccomp filter denies bpf(2), so the
// container cannot detach it.
#include "CShimsDevices.h"

#include <errno.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int img_device_program_attach(int cgroup_fd, const struct img_bpf_insn *instructions, size_t count) {
    if (count == 0 || count > BPF_MAXINSNS) { errno = EINVAL; return -1; }
    struct bpf_insn program[count];
    for (size_t i = 0; i < count; i++) {
        memset(&program[i], 0, sizeof program[i]);
        program[i].code = instructions[i].code;
        program[i].dst_reg = instructions[i].dst_reg & 0xF;
        program[i].src_reg = instructions[i].src_reg & 0xF;
        program[i].off = instructions[i].offset;
        program[i].imm = instructions[i].immediate;
    }
    union bpf_attr load;
    memset(&load, 0, sizeof load);
    load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    load.insns = (uint64_t)(uintptr_t)program;
    load.insn_cnt = (uint32_t)count;
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
