// CShimsDevices: the container's device policy as a cgroup v2 device BPF program.
//
// The rules come from Runner's DevicePolicy (an allow list; anything not on it is denied). The
// same list is written to a cgroup v1 devices controller by Swift (plain file writes); only the
// BPF program needs C, for struct bpf_insn and the bpf(2) system call.
#pragma once

#include <stddef.h>
#include <stdint.h>

/// Device types and access bits, with the kernel's values (DEVCG_DEV_*, DEVCG_ACC_*), which are
/// also what a BPF_PROG_TYPE_CGROUP_DEVICE program sees in bpf_cgroup_dev_ctx.access_type.
enum img_device_type {
    IMG_DEVICE_BLOCK = 1,
    IMG_DEVICE_CHAR = 2,
};
enum img_device_access {
    IMG_DEVICE_MKNOD = 1,
    IMG_DEVICE_READ = 2,
    IMG_DEVICE_WRITE = 4,
};

/// One allow rule. major/minor -1: any.
struct img_device_rule {
    uint32_t type;
    int64_t major;
    int64_t minor;
    /// Bitwise enum img_device_access.
    uint32_t access;
};

/// One BPF instruction as the kernel lays out struct bpf_insn, with the two register nibbles
/// kept apart (bit-field order is not something Swift can read).
struct img_bpf_insn {
    uint8_t code;
    uint8_t dst_reg;
    uint8_t src_reg;
    int16_t offset;
    int32_t immediate;
};

/// Longest program img_device_program makes: 6 prologue + 7 per rule + 2 epilogue instructions.
#define IMG_DEVICE_PROGRAM_MAX(rules) (8 + 7 * (rules))

/// Fills `out` (room for `capacity` instructions) with the program for `rules` and returns its
/// length, or -1 with errno EINVAL/ENOSPC. For tests; img_device_program_attach builds the same.
long img_device_program(const struct img_device_rule *rules, size_t count, struct img_bpf_insn *out, size_t capacity);

/// Loads the program for `rules` and attaches it (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI) to the
/// cgroup v2 directory `cgroup_fd`. 0, or -1 with errno set. The attachment lives as long as the
/// cgroup; the program's fd is closed before returning.
int img_device_program_attach(int cgroup_fd, const struct img_device_rule *rules, size_t count);
