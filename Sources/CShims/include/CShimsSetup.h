// CShimsSetup: the container's set-up plan as the C child reads it.
//
// Which file systems to mount where, with which options, which device nodes and links to make,
// what to mask and who owns it all is decided in Swift (Sources/Runner/SetupPlan.swift) and handed
// to the child as an ordered list of operations with every argument resolved. The child runs the
// list in one loop (setup.c), as bubblewrap runs its SetupOp list: it only knows how to do each
// kind of operation safely (every path inside the container resolved beneath its root), not
// which ones a container needs.
#pragma once

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

/// Where a path is looked up.
enum img_place {
    /// Beneath the current root of the plan (IMG_OP_ROOT), with openat2(RESOLVE_IN_ROOT |
    /// RESOLVE_NO_MAGICLINKS): a symlink in the image cannot lead out of it.
    IMG_IN_ROOT = 0,
    /// An absolute path of the host (given by imagectl, not by the image).
    IMG_ON_HOST = 1,
    /// Beneath the image's tree (the config's `directory`), resolved like IMG_IN_ROOT.
    IMG_IN_TREE = 2,
};

struct img_path {
    const char *path;
    enum img_place place;
};

enum img_setup_op_kind {
    /// The root that later IMG_IN_ROOT paths resolve beneath becomes `target` (re-opened, so a
    /// mount just made on it is what counts).
    IMG_OP_ROOT = 0,
    /// mkdir -p of `target` (`mode`), owned by `owner` when it is not -1.
    IMG_OP_MKDIR,
    /// mount(2) of `source.path` (a name, not opened) with `fstype`, `flags` and `data` onto
    /// `target`; with a non-zero `mode` the target directory is made first. A NULL fstype with
    /// MS_REMOUNT or a propagation flag changes the mount that is there.
    IMG_OP_MOUNT,
    /// Bind mount of `source` onto `target`, which is made like the source (a directory or an
    /// empty file) when missing. Options: RECURSIVE, IDMAP, READ_ONLY.
    IMG_OP_BIND,
    /// Only makes `target` like `source` (mount points on a tree before it is ID-mapped).
    IMG_OP_MAKE_TARGET,
    /// mknod of a character device `target` with `mode` and `device`, owned by `owner`.
    IMG_OP_MKNOD,
    /// symlink `target` -> `source.path`, owned by `owner`. OPTIONAL: an existing name is fine.
    IMG_OP_SYMLINK,
    /// The container's /dev/null bound read-only over `target`, and checked to be on top
    /// afterwards (systemd PR 40833 found masks that silently did not apply). OPTIONAL: a missing
    /// target is skipped.
    IMG_OP_MASK,
    /// overlayfs on `target` (made when missing) of `layers`: `layer_count` - 2 lower layers,
    /// topmost first, then the upper and the work directory (both with a NULL path: read-only);
    /// `flags` for the mount. IDMAP: the lower layers are ID-mapped clones.
    IMG_OP_OVERLAY,
    /// chown of `target` to `owner`:`group` (and chmod to `mode` when non-zero), not following a symlink.
    /// OPTIONAL: a missing target is fine.
    IMG_OP_CHOWN,
    /// /etc/resolv.conf or /etc/localtime (`etc_name`) by the steps of `etc_file` (see
    /// img_etc_file). BIND_ONLY: only the bind step (the host side under a user namespace); the
    /// same file's later operation then leaves a made bind alone.
    IMG_OP_ETC_FILE,
};

enum img_setup_op_option {
    IMG_OPT_RECURSIVE = 1,
    /// ID-mapped with the container's user namespace (MOUNT_ATTR_IDMAP).
    IMG_OPT_IDMAP = 2,
    /// Made read-only (recursively with RECURSIVE) after the bind.
    IMG_OPT_READ_ONLY = 4,
    IMG_OPT_OPTIONAL = 8,
    /// `target` is used as a plain path relative to the working directory (PID 1 inside a user
    /// namespace, chrooted already, mounting /proc before /proc/self/fd exists).
    IMG_OPT_BY_PATH = 16,
    IMG_OPT_BIND_ONLY = 32,
};

/// Which process runs an operation.
enum img_setup_phase {
    /// The container child, in the host's user namespace (every operation without a user namespace).
    IMG_PHASE_CHILD = 0,
    /// The container's PID 1 inside its user namespace, chrooted into the root, before the payload.
    IMG_PHASE_PID1 = 1,
};

/// Steps for one file in the container's /etc (--resolv-conf=, --timezone=), tried in this order
/// until one works, as nspawn falls through symlink -> bind -> copy. 0: leave the file alone.
enum img_etc_step {
    IMG_ETC_SYMLINK = 1,
    IMG_ETC_BIND = 2,
    IMG_ETC_COPY = 4,
    /// Unlink the file (alone, no other step).
    IMG_ETC_DELETE = 8,
};

/// /etc/resolv.conf or /etc/localtime of the container. All paths inside the container are
/// resolved beneath its root; nothing is written through a symlink of the image.
struct img_etc_file {
    /// Bitwise enum img_etc_step; 0: off.
    int steps;
    /// COPY: replace whatever inode is there (a symlink too); otherwise only a missing file or a
    /// regular file is replaced and a symlink is left alone (nspawn's copy-* vs replace-*).
    int replace;
    /// BIND: host file bind-mounted read-only (nosuid, nodev) over the container's file.
    const char *host_path;
    /// COPY: the file's bytes, read by the parent from the host file.
    const void *contents;
    size_t size;
    /// SYMLINK: the link text (e.g. "../usr/share/zoneinfo/Etc/UTC") and the file, relative to the
    /// root, that must exist in the container for the link to be made.
    const char *link_target;
    const char *link_check;
};

struct img_setup_op {
    enum img_setup_op_kind kind;
    enum img_setup_phase phase;
    /// Bitwise enum img_setup_op_option.
    int options;
    struct img_path target;
    struct img_path source;
    const char *fstype;
    const char *data;
    unsigned long flags;
    uint32_t mode;
    uint64_t device;
    /// UID and GID to give what the operation makes; -1: leave it to the creating process.
    int64_t owner;
    int64_t group;
    const struct img_path *layers;
    size_t layer_count;
    const char *etc_name;
    const struct img_etc_file *etc_file;
};
