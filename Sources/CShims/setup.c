// The set-up interpreter: runs the operations of a container's set-up plan (CShimsSetup.h) in the
// container child, one loop, one error report naming the operation and its path.
//
// Rules inside the child (a copy of a multi-threaded process): only system calls and the small
// string helpers of child_steps.c; no malloc, no stdio. Every target inside the image is opened
// with openat2(RESOLVE_IN_ROOT) relative to the current root and the mount goes onto
// /proc/self/fd/N of that descriptor, so a symlink in the image (/proc -> /, a bind target
// pointing out) cannot move a mount onto the host (runc CVE-2019-16884, CVE-2021-30465).
#define _GNU_SOURCE
#include "child_steps.h"
#include "CShims.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>  // renameat only; no stdio streams in the child
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

static int openat2_in(int dirfd, const char *path, uint64_t flags, uint64_t resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = flags | O_CLOEXEC;
    how.resolve = resolve;
    long r;
    int tries = 0;  // EAGAIN: a ".." raced with a mount or rename somewhere; retry (openat2(2))
    do { r = syscall(SYS_openat2, dirfd, path, &how, sizeof how); } while (r < 0 && (errno == EINTR || (errno == EAGAIN && ++tries < 1000)));
    return (int)r;
}

/// `path` without its leading slashes: openat2 wants it relative to the root descriptor.
static const char *relative(const char *path) {
    while (*path == '/') path++;
    return *path ? path : ".";
}

/// Opens `path` (relative) as O_PATH beneath `rootfd`.
static int open_in_root(int rootfd, const char *path) {
    return openat2_in(rootfd, relative(path), O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
}

/// The interpreter's state: the current root and the image's tree, opened on first use.
struct setup_state {
    int root;
    const char *tree_path;
    int tree;
    int userns_fd;
};

/// The directory fd an img_path is resolved beneath (-1 for a host path).
static int base_of(struct setup_state *s, enum img_place place) {
    if (place == IMG_ON_HOST) return -1;
    if (place == IMG_IN_TREE) {
        if (s->tree < 0) s->tree = open(s->tree_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (s->tree < 0) img_child_die("open", s->tree_path);
        return s->tree;
    }
    if (s->root < 0) { errno = EBADF; img_child_die("no root for", "a set-up operation"); }
    return s->root;
}

static int open_path(struct setup_state *s, struct img_path p) {
    int base = base_of(s, p.place);
    if (base < 0) return openat2_in(AT_FDCWD, p.path, O_PATH, 0);
    return open_in_root(base, p.path);
}

// --- targets through dangling symlinks -----------------------------------------------------------

/// Splits `path` at its last "/" into `parent` (empty: the root itself) and the returned last
/// component; NULL (ENAMETOOLONG) when it does not fit.
static const char *split_last(const char *path, char parent[512]) {
    const char *slash = strrchr(path, '/');
    parent[0] = 0;
    if (!slash) return path;
    size_t n = (size_t)(slash - path);
    if (n >= 512) { errno = ENAMETOOLONG; return NULL; }
    memcpy(parent, path, n);
    parent[n] = 0;
    return slash + 1;
}

/// `path` (in `buf`) after its first `end` bytes, which name a symlink in directory `parent`
/// whose target does not exist, are replaced by what the link says: an absolute link continues
/// from the root, a relative one from `parent`; the rest of the path follows. Resolving the result
/// beneath the root (".." stops at the root) is what nspawn's chase() does with a dangling target.
static int follow_dangling_link(char buf[512], size_t end, const char *parent, const char *link) {
    char out[512] = "";
    int fits = 1;
    if (link[0] != '/' && parent[0]) fits = img_append(out, sizeof out, parent) == 0 && img_append(out, sizeof out, "/") == 0;
    while (*link == '/') link++;
    fits = fits && img_append(out, sizeof out, link) == 0 && img_append(out, sizeof out, buf + end) == 0;
    if (!fits) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, out, strlen(out) + 1);
    return 0;
}

static ssize_t read_link(int dirfd, const char *name, char link[512]) {
    ssize_t n = readlinkat(dirfd, name, link, 511);
    if (n <= 0) return -1;
    link[n] = 0;
    return n;
}

/// mkdir -p of `path` beneath `rootfd`, each step resolved beneath it; returns an O_PATH fd of the
/// directory. A component that is a dangling symlink is followed beneath the root and what it
/// names is created, as nspawn does for mount points.
static int make_directory(int rootfd, const char *path, mode_t mode) {
    char buf[512];
    char prefix[512];
    path = relative(path);
    if (strlen(path) >= sizeof buf) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, path, strlen(path) + 1);
    int fd = -1;
    int links = 0;
restart:;
    size_t len = strlen(buf);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        memcpy(prefix, buf, i);
        prefix[i] = 0;
        if (fd >= 0) close(fd);
        fd = open_in_root(rootfd, prefix);
        if (fd >= 0) continue;
        if (errno != ENOENT) return -1;
        char parent_path[512];
        const char *name = split_last(prefix, parent_path);
        if (!name) return -1;
        int parent = parent_path[0] ? open_in_root(rootfd, parent_path) : dup(rootfd);
        if (parent < 0) return -1;
        char link[512];
        if (read_link(parent, name, link) > 0) {
            close(parent);
            if (++links > 40) { errno = ELOOP; return -1; }
            if (follow_dangling_link(buf, i, parent_path, link) < 0) return -1;
            goto restart;
        }
        if (mkdirat(parent, name, mode) < 0 && errno != EEXIST) { close(parent); return -1; }
        close(parent);
        fd = open_in_root(rootfd, prefix);
        if (fd < 0) return -1;
    }
    return fd;
}

/// The target of a non-directory bind: an existing inode, else an empty file created in its
/// parent directory, which is itself made beneath the root. A dangling symlink at the name is
/// followed beneath the root, never out of it.
static int make_file(int rootfd, const char *path) {
    char buf[512];
    path = relative(path);
    if (strlen(path) >= sizeof buf) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, path, strlen(path) + 1);
    for (int links = 0;; links++) {
        int fd = open_in_root(rootfd, buf);
        if (fd >= 0 || errno != ENOENT) return fd;
        char parent_path[512];
        const char *name = split_last(buf, parent_path);
        if (!name) return -1;
        int parent = parent_path[0] ? make_directory(rootfd, parent_path, 0755) : dup(rootfd);
        if (parent < 0) return -1;
        char link[512];
        if (read_link(parent, name, link) > 0) {
            close(parent);
            if (links >= 40) { errno = ELOOP; return -1; }
            if (follow_dangling_link(buf, strlen(buf), parent_path, link) < 0) return -1;
            continue;
        }
        // O_NOFOLLOW|O_CREAT: a symlink planted at the name since is refused, not followed.
        int file = openat(parent, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
        close(parent);
        if (file < 0) return -1;
        close(file);
        return open_in_root(rootfd, buf);
    }
}

/// The target made like the opened source: a directory for a directory, else an empty file.
static int make_target_like(struct setup_state *s, const struct img_setup_op *op, int source) {
    struct stat st;
    if (fstat(source, &st) < 0) img_child_die("stat", op->source.path);
    int base = base_of(s, op->target.place);
    int fd = S_ISDIR(st.st_mode) ? make_directory(base, op->target.path, 0755) : make_file(base, op->target.path);
    if (fd < 0) img_child_die("create mount point", op->target.path);
    return fd;
}

// --- the operations ------------------------------------------------------------------------------

static void mount_on(const char *source, int target_fd, const char *fstype, unsigned long flags,
                     const char *data, const char *what) {
    char target[64];
    img_fd_path(target, target_fd);
    if (mount(source, target, fstype, flags, data) < 0) img_child_die("mount", what);
}

/// The target of an operation: made as a directory with `mode` when non-zero, else opened.
static int target_of(struct setup_state *s, const struct img_setup_op *op, mode_t mode) {
    int base = base_of(s, op->target.place);
    int fd;
    if (base < 0) fd = openat2_in(AT_FDCWD, op->target.path, O_PATH, 0);
    else fd = mode ? make_directory(base, op->target.path, mode) : open_in_root(base, op->target.path);
    if (fd < 0) img_child_die(mode ? "create mount point" : "open", op->target.path);
    return fd;
}

static void chown_fd(int fd, const struct img_setup_op *op) {
    if (op->owner >= 0 && fchownat(fd, "", (uid_t)op->owner, (gid_t)op->group, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
        img_child_die("chown", op->target.path);
}

/// An ID-mapped clone of `source` attached onto `target` (open_tree + mount_setattr + move_mount).
static int attach_idmapped(int source, int target, int recursive, int userns_fd) {
    int flags = AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0);
    int tree = (int)syscall(SYS_open_tree, source, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | flags);
    if (tree < 0) return -1;
    int r = img_mount_setattr(tree, "", flags, MOUNT_ATTR_IDMAP, 0, 0, (uint64_t)userns_fd);
    if (r == 0) r = (int)syscall(SYS_move_mount, tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    int saved = errno;
    close(tree);
    errno = saved;
    return r;
}

/// A detached ID-mapped clone (recursive) of the tree at `source`, which it replaces and closes.
static int idmapped_clone(int source, int userns_fd, const char *what) {
    int tree = (int)syscall(SYS_open_tree, source, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
    if (tree < 0 || img_mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, MOUNT_ATTR_IDMAP, 0, 0, (uint64_t)userns_fd) < 0)
        img_child_die("ID-mapped mount of", what);
    close(source);
    return tree;
}

static void set_attributes(int fd, uint64_t attributes, int recursive, const char *what) {
    if (img_mount_setattr(fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), attributes, 0, 0, 0) < 0)
        img_child_die("mount_setattr", what);
}

static void bind(struct setup_state *s, const struct img_setup_op *op) {
    int source = open_path(s, op->source);
    if (source < 0) img_child_die("open bind source", op->source.path);
    int target = make_target_like(s, op, source);
    int recursive = op->options & IMG_OPT_RECURSIVE;
    if (op->options & IMG_OPT_IDMAP) {
        if (attach_idmapped(source, target, recursive, s->userns_fd) < 0) img_child_die("ID-mapped mount of", op->source.path);
    } else {
        char source_path[64];
        img_fd_path(source_path, source);
        mount_on(source_path, target, NULL, MS_BIND | (recursive ? MS_REC : 0), NULL, op->target.path);
    }
    close(target);
    close(source);
    if (op->options & IMG_OPT_READ_ONLY) {
        // Re-opened: the descriptor made before the bind names the covered inode.
        int top = target_of(s, op, 0);
        set_attributes(top, MOUNT_ATTR_RDONLY, recursive, op->target.path);
        close(top);
    }
}

static void mask(struct setup_state *s, const struct img_setup_op *op) {
    int target = target_of(s, op, 0);  // dies on a missing target unless OPTIONAL (checked by the caller)
    int null_fd = open_in_root(s->root, "dev/null");
    struct stat null_st, st;
    if (null_fd < 0 || fstat(null_fd, &null_st) < 0) img_child_die("open", "/dev/null");
    char null_path[64];
    img_fd_path(null_path, null_fd);
    mount_on(null_path, target, NULL, MS_BIND, NULL, op->target.path);
    close(target);
    target = target_of(s, op, 0);
    set_attributes(target, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, 0, op->target.path);
    if (fstat(target, &st) < 0) img_child_die("check mask of", op->target.path);
    if (!S_ISCHR(st.st_mode) || st.st_rdev != null_st.st_rdev || st.st_ino != null_st.st_ino) {
        errno = EPERM;
        img_child_die("mask did not apply to", op->target.path);
    }
    close(target);
    close(null_fd);
}

/// Layers go into the option string as /proc/self/fd/N paths: a ":" or "," in a user's path never
/// reaches the option parser, and in-root layers are the inodes found beneath the root.
static void overlay(struct setup_state *s, const struct img_setup_op *op) {
    char options[2048] = "";
    int fds[130];
    size_t lower = op->layer_count - 2;
    if (op->layer_count < 3 || op->layer_count > 130) { errno = E2BIG; img_child_die("overlay layers of", op->target.path); }
    size_t opened = 0;
    for (size_t i = 0; i < op->layer_count; i++) {
        if (!op->layers[i].path) continue;
        int fd = open_path(s, op->layers[i]);
        if (fd < 0) img_child_die("open overlay layer", op->layers[i].path);
        if ((op->options & IMG_OPT_IDMAP) && i < lower) fd = idmapped_clone(fd, s->userns_fd, op->layers[i].path);
        fds[opened++] = fd;
        const char *separator = i == 0 ? "lowerdir=" : i < lower ? ":" : i == lower ? ",upperdir=" : ",workdir=";
        char p[64];
        img_fd_path(p, fd);
        if (img_append(options, sizeof options, separator) < 0 || img_append(options, sizeof options, p) < 0) {
            errno = E2BIG;
            img_child_die("overlay options of", op->target.path);
        }
    }
    int target = target_of(s, op, 0755);
    mount_on("overlay", target, "overlay", op->flags, options, op->target.path);
    close(target);
    for (size_t i = 0; i < opened; i++) close(fds[i]);
}

// --- /etc/resolv.conf and /etc/localtime (--resolv-conf=, --timezone=), as nspawn's
// setup_resolv_conf() and setup_timezone(): every step that cannot be done is skipped (nspawn
// logs and ignores), except a bind that was made and then cannot be made read-only.

/// Set when the host side bound the file (IMG_OPT_BIND_ONLY): PID 1 then leaves it alone.
/// Indexed 0 resolv.conf, 1 localtime.
static int etc_file_bound[2];

static int open_etc(int rootfd) {
    int path_fd = open_in_root(rootfd, "etc");
    if (path_fd < 0) return -1;
    char p[64];
    img_fd_path(p, path_fd);
    int dir = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(path_fd);
    return dir;
}

/// Writes the parent's copy of the host file as `name` in `etc`: into a new temporary file that
/// is renamed over the name, so an existing inode (a hard link to anything, a symlink out of the
/// image) is never written through. Without `replace` a symlink or other non-regular file at the
/// name is left alone (nspawn's copy-* opens with O_NOFOLLOW and gives up on ELOOP).
static int copy_etc_file(int etc, const char *name, const struct img_etc_file *f) {
    struct stat st;
    if (!f->replace && fstatat(etc, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode)) return -1;
    char temporary[64] = ".#";
    img_append(temporary, sizeof temporary, name);
    img_append(temporary, sizeof temporary, ".imagectl");
    (void)unlinkat(etc, temporary, 0);
    int fd = openat(etc, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    const char *bytes = f->contents;
    size_t done = 0;
    while (done < f->size) {
        ssize_t n = write(fd, bytes + done, f->size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += (size_t)n;
    }
    int ok = done == f->size && fchmod(fd, 0644) == 0 && fchown(fd, 0, 0) == 0;
    close(fd);
    if (!ok || renameat(etc, temporary, etc, name) < 0) {
        (void)unlinkat(etc, temporary, 0);
        return -1;
    }
    return 0;
}

/// Bind-mounts the host file over `path` (a symlink there is followed beneath the root, as
/// nspawn's chase() does), created empty when missing, then read-only. Under a user namespace
/// ID-mapped where the host file's file system allows it, so the container sees its own root as
/// the owner (and a write fails as read-only, not as permission denied).
static int bind_etc_file(struct setup_state *s, const char *path, const struct img_etc_file *f) {
    int source = open(f->host_path, O_PATH | O_CLOEXEC);
    if (source < 0) return -1;
    int target = make_file(s->root, path);
    if (target < 0) { close(source); return -1; }
    struct stat st;
    int r = -1;
    if (fstat(target, &st) == 0 && !S_ISDIR(st.st_mode)) {
        if (s->userns_fd < 0 || (r = attach_idmapped(source, target, 0, s->userns_fd)) < 0) {
            char source_path[64], target_path[64];
            img_fd_path(source_path, source);
            img_fd_path(target_path, target);
            r = mount(source_path, target_path, NULL, MS_BIND, NULL);
        }
    }
    close(target);
    close(source);
    if (r < 0) return -1;
    int top = open_in_root(s->root, path);
    if (top < 0) img_child_die("open for read-only", path);
    set_attributes(top, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, path);
    close(top);
    return 0;
}

/// Points `name` at the container's own zone file. Returns -1 (try the next step) only when that
/// zone file is missing in the image; a link that cannot be replaced (read-only tree) is given up.
static int symlink_etc_file(int rootfd, int etc, const char *name, const struct img_etc_file *f) {
    char current[256];
    ssize_t n = readlinkat(etc, name, current, sizeof current - 1);
    if (n >= 0) {
        current[n] = 0;
        if (strcmp(current, f->link_target) == 0) return 0;
    }
    int check = open_in_root(rootfd, f->link_check);
    if (check < 0) return -1;
    close(check);
    if (unlinkat(etc, name, 0) < 0 && errno != ENOENT) return 0;
    (void)symlinkat(f->link_target, etc, name);
    return 0;
}

static void etc_file(struct setup_state *s, const struct img_setup_op *op) {
    const struct img_etc_file *f = op->etc_file;
    int *bound = &etc_file_bound[strcmp(op->etc_name, "resolv.conf") == 0 ? 0 : 1];
    if (!f->steps || *bound) return;
    int etc = open_etc(s->root);
    if (etc < 0) return;  // no /etc in the tree (e.g. --volatile=yes): nspawn ignores it as well
    char path[64] = "etc/";
    img_append(path, sizeof path, op->etc_name);
    if (op->options & IMG_OPT_BIND_ONLY) {
        // Only where the bind is the step to take: the symlink comes first when the image has the
        // zone file (PID 1 makes it). A missing target cannot be made through an ID-mapped root
        // by the host's root (EOVERFLOW): the bind fails and PID 1 copies instead.
        int linkable = 0;
        if (f->steps & IMG_ETC_SYMLINK) {
            int check = open_in_root(s->root, f->link_check);
            linkable = check >= 0;
            if (check >= 0) close(check);
        }
        if ((f->steps & IMG_ETC_BIND) && !(f->steps & IMG_ETC_DELETE) && !linkable && bind_etc_file(s, path, f) == 0) *bound = 1;
        close(etc);
        return;
    }
    if (f->steps & IMG_ETC_DELETE) {
        (void)unlinkat(etc, op->etc_name, 0);
        close(etc);
        return;
    }
    int done = 0;
    if (f->steps & IMG_ETC_SYMLINK) done = symlink_etc_file(s->root, etc, op->etc_name, f) == 0;
    if (!done && (f->steps & IMG_ETC_BIND)) done = bind_etc_file(s, path, f) == 0;
    if (!done && (f->steps & IMG_ETC_COPY)) (void)copy_etc_file(etc, op->etc_name, f);
    close(etc);
}

/// The directory an entry is made in, as a real directory fd, and the entry's name.
static int parent_directory(struct setup_state *s, const struct img_setup_op *op, const char **name) {
    char parent_path[512];
    *name = split_last(relative(op->target.path), parent_path);
    if (!*name) img_child_die("path too long", op->target.path);
    int base = base_of(s, op->target.place);
    int parent = parent_path[0] ? make_directory(base, parent_path, 0755) : dup(base);
    if (parent < 0) img_child_die("create directory for", op->target.path);
    char p[64];
    img_fd_path(p, parent);
    int dir = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(parent);
    if (dir < 0) img_child_die("open directory for", op->target.path);
    return dir;
}

static void run_op(struct setup_state *s, const struct img_setup_op *op) {
    const char *what = op->target.path;
    const char *name;
    int fd, dir;
    switch (op->kind) {
    case IMG_OP_ROOT:
        fd = target_of(s, op, 0);
        if (s->root >= 0) close(s->root);
        s->root = fd;
        break;
    case IMG_OP_MKDIR:
        fd = target_of(s, op, op->mode);
        chown_fd(fd, op);
        close(fd);
        break;
    case IMG_OP_MOUNT:
        if (op->options & IMG_OPT_BY_PATH) {
            if (mkdir(what, op->mode) < 0 && errno != EEXIST) img_child_die("mkdir", what);
            if (mount(op->source.path, what, op->fstype, op->flags, op->data) < 0) img_child_die("mount", what);
            break;
        }
        fd = target_of(s, op, op->mode);
        mount_on(op->source.path, fd, op->fstype, op->flags, op->data, what);
        close(fd);
        break;
    case IMG_OP_BIND:
        bind(s, op);
        break;
    case IMG_OP_MAKE_TARGET:
        fd = open_path(s, op->source);
        if (fd < 0) img_child_die("open bind source", op->source.path);
        close(make_target_like(s, op, fd));
        close(fd);
        break;
    case IMG_OP_MKNOD:
    case IMG_OP_SYMLINK:
        dir = parent_directory(s, op, &name);
        if (op->kind == IMG_OP_MKNOD) {
            if (mknodat(dir, name, S_IFCHR | (op->mode & 07777), (dev_t)op->device) < 0) img_child_die("mknod", what);
        } else if (symlinkat(op->source.path, dir, name) < 0 && !(errno == EEXIST && (op->options & IMG_OPT_OPTIONAL))) {
            img_child_die("symlink", what);
        }
        if (op->owner >= 0 && fchownat(dir, name, (uid_t)op->owner, (gid_t)op->group, AT_SYMLINK_NOFOLLOW) < 0)
            img_child_die("chown", what);
        close(dir);
        break;
    case IMG_OP_MASK:
        mask(s, op);
        break;
    case IMG_OP_OVERLAY:
        overlay(s, op);
        break;
    case IMG_OP_CHOWN:
        fd = target_of(s, op, 0);
        chown_fd(fd, op);
        if (op->mode) {
            char p[64];
            img_fd_path(p, fd);
            if (chmod(p, op->mode & 07777) < 0) img_child_die("chmod", what);
        }
        close(fd);
        break;
    case IMG_OP_ETC_FILE:
        etc_file(s, op);
        break;
    }
}

/// Whether an OPTIONAL operation's target is missing (then it is skipped).
static int optional_target_missing(struct setup_state *s, const struct img_setup_op *op) {
    if (!(op->options & IMG_OPT_OPTIONAL) || op->kind == IMG_OP_SYMLINK) return 0;
    int fd = open_path(s, op->target);
    if (fd >= 0) { close(fd); return 0; }
    return errno == ENOENT;
}

void img_setup_run(const struct img_setup_op *ops, size_t count, enum img_setup_phase phase,
                   const char *tree, int userns_fd, int *rootfd) {
    struct setup_state s = {*rootfd, tree, -1, userns_fd};
    // Modes are the plan's, exactly: device nodes and directories such as /tmp are made 0666 or
    // 01777 whatever imagectl's umask; the payload gets the umask back.
    mode_t saved_umask = umask(0);
    for (size_t i = 0; i < count; i++) {
        if (ops[i].phase != phase || optional_target_missing(&s, &ops[i])) continue;
        run_op(&s, &ops[i]);
    }
    umask(saved_umask);
    if (s.tree >= 0) close(s.tree);
    *rootfd = s.root;
}
