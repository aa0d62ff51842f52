// CShimsDevices: the container's device policy as a cgroup v2 device BPF program.
//
// The rules come from Runner's DevicePolicy (an allow list; anything not on it is denied), and
// Runner's DeviceCgroup builds the program from them; only loading it needs C, for struct
// bpf_insn's register nibbles and the bpf(2) system call.
#pragma once

#include <stddef.h>
#include <stdint.h>

/// One BPF instruction as the kernel lays out struct bpf_insn, with the two register nibbles
/// kept apart (bit-field order is not something Swift can read).
struct img_bpf_insn {
    uint8_t code;
    uint8_t dst_reg;
    uint8_t src_reg;
    int16_t offset;
    int32_t immediate;
};

/// Loads the program `instructions` (BPF_PROG_TYPE_CGROUP_DEVICE) and attaches it
/// (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI) to the cgroup v2 directory `cgroup_fd`. 0, or -1 with
/// errno set. The attachment lives as long as the cgroup; the program's fd is closed before
/// returning.
int img_device_program_attach(int cgroup_fd, const struct img_bpf_insn *instructions, size_t count);
