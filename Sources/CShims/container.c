// The container child of `imagectl run`: namespaces, the root, API file systems, pivot_root,
// identity, capabilities, seccomp, exec. See CShimsContainer.h for why this is C made by clone().
//
// Rules inside the child (it is a copy of a multi-threaded process): only system calls and the
// small string helpers below; no malloc, no stdio, no locale. Every mount target inside the image
// is opened with openat2(RESOLVE_IN_ROOT) relative to the container root and the mount goes onto
// /proc/self/fd/N of that descriptor, so a symlink in the image (/proc -> /, a bind target
// pointing out) cannot move a mount onto the host (runc CVE-2019-16884, CVE-2021-30465).
#define _GNU_SOURCE
#include "CShimsContainer.h"
#include "child_steps.h"
#include "CShimsEnter.h"
#include "CShims.h"
#include "CShimsNotify.h"  // lifecycle: the notify socket

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>  // renameat only; no stdio streams in the child
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <grp.h>
#include <pthread.h>
#include <unistd.h>

#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

// ---------------------------------------------------------------------------------------------
// Small helpers that are safe after clone() in a multi-threaded parent.

/// Appends `s` to `buf` (capacity `cap`), keeping it NUL-terminated; returns 0 or -1 if cut.
static int append(char *buf, size_t cap, const char *s) {
    size_t n = strlen(buf);
    size_t m = strlen(s);
    if (n + m + 1 > cap) return -1;
    memcpy(buf + n, s, m + 1);
    return 0;
}

static void format_int(char *out, long value) {
    char tmp[24];
    int i = 0;
    int negative = value < 0;
    unsigned long v = negative ? (unsigned long)(-value) : (unsigned long)value;
    do { tmp[i++] = (char)('0' + v % 10); v /= 10; } while (v && i < 22);
    int j = 0;
    if (negative) out[j++] = '-';
    while (i) out[j++] = tmp[--i];
    out[j] = 0;
}

/// "/proc/self/fd/N": the path through which a mount lands exactly on the opened inode.
static void fd_path(char out[64], int fd) {
    char num[24];
    out[0] = 0;
    append(out, 64, "/proc/self/fd/");
    format_int(num, fd);
    append(out, 64, num);
}

static int error_pipe = -1;

/// Reports a failed step to the parent and ends the child.
static void die(const char *step, const char *detail) {
    struct img_container_error report;
    memset(&report, 0, sizeof report);
    report.error_number = errno;
    append(report.step, sizeof report.step, step);
    if (detail) {
        append(report.step, sizeof report.step, " ");
        append(report.step, sizeof report.step, detail);
    }
    if (error_pipe >= 0) {
        ssize_t ignored = write(error_pipe, &report, sizeof report);
        (void)ignored;
    }
    _exit(127);
}

static int openat2_in(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = flags | O_CLOEXEC;
    how.mode = mode;
    how.resolve = resolve;
    long r;
    do { r = syscall(SYS_openat2, dirfd, path, &how, sizeof how); } while (r < 0 && errno == EINTR);
    return (int)r;
}

/// Opens `path` (relative, no leading "/") as O_PATH inside the container root.
static int open_in_root(int rootfd, const char *path) {
    return openat2_in(rootfd, path, O_PATH, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
}

// --- targets through dangling symlinks (lifecycle) ---
/// Splits `path` (relative to the root) at its last "/" into `parent` (empty: the root itself)
/// and the returned last component; NULL (ENAMETOOLONG) when it does not fit.
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

/// `path` (relative to the root, in `buf` of 512 bytes) after its first `end` bytes, which name
/// a symlink in directory `parent` (relative path, "" for the root) whose target does not exist,
/// are replaced by what the link says: an absolute link continues from the root, a relative one
/// from `parent`; the rest of the path follows. Resolving the result beneath the root (".." stops
/// at the root, RESOLVE_IN_ROOT) is what nspawn's chase() does with a dangling target.
static int follow_dangling_link(char buf[512], size_t end, const char *parent, const char *link) {
    char out[512] = "";
    int fits = 1;
    if (link[0] != '/' && parent[0]) fits = append(out, sizeof out, parent) == 0 && append(out, sizeof out, "/") == 0;
    while (*link == '/') link++;
    fits = fits && append(out, sizeof out, link) == 0 && append(out, sizeof out, buf + end) == 0;
    if (!fits) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, out, strlen(out) + 1);
    return 0;
}

/// The link text of `name` in the directory `dirfd` (readlinkat(2)); -1 when it is no symlink.
static ssize_t read_link(int dirfd, const char *name, char link[512]) {
    ssize_t n = readlinkat(dirfd, name, link, 511);
    if (n <= 0) return -1;
    link[n] = 0;
    return n;
}

/// mkdir -p of `path` inside the root, each step resolved in the root; returns an O_PATH fd of
/// the directory. A component that is a dangling symlink is followed beneath the root (an
/// absolute or ".."-climbing link stays inside) and what it names is created, as nspawn does for
/// mount points.
static int make_directory_in_root(int rootfd, const char *path, mode_t mode) {
    char buf[512];
    char prefix[512];
    if (strlen(path) >= sizeof buf) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, path, strlen(path) + 1);
    int fd = -1;
    int links = 0;
restart:;
    size_t len = strlen(buf);
    for (size_t i = 0; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        if (i == 0) continue;
        memcpy(prefix, buf, i);
        prefix[i] = 0;
        if (fd >= 0) close(fd);
        fd = open_in_root(rootfd, prefix);
        if (fd >= 0) continue;
        if (errno != ENOENT) return -1;
        // Create the last component in its parent, which was itself resolved in the root.
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
// --- end targets through dangling symlinks (lifecycle) ---

/// mount(2) onto the inode behind `target_fd`; `fstype` NULL for binds/remounts.
static void mount_on(const char *source, int target_fd, const char *fstype, unsigned long flags,
                     const char *data, const char *what) {
    char target[64];
    fd_path(target, target_fd);
    if (mount(source, target, fstype, flags, data) < 0) die("mount", what);
}

/// Mounts a file system at `path` inside the root (directory created beneath the root).
static void mount_fs_in_root(int rootfd, const char *path, const char *fstype, unsigned long flags,
                             const char *data, mode_t mode) {
    int fd = make_directory_in_root(rootfd, path, mode);
    if (fd < 0) die("create mount point", path);
    mount_on(fstype, fd, fstype, flags, data, path);
    close(fd);
}

/// Remounts the bind mount at `path` in the root read-only with nosuid, nodev, noexec.
static void remount_read_only(int rootfd, const char *path, unsigned long extra) {
    int fd = open_in_root(rootfd, path);
    if (fd < 0) die("open for read-only remount", path);
    mount_on(NULL, fd, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | extra, NULL, path);
    close(fd);
}

// ---------------------------------------------------------------------------------------------
// The set-up steps, in the order the child runs them.

static void reset_signals(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        (void)sigaction(sig, &action, NULL);  // fails for the few glibc-internal signals; fine
    }
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
}

static void join_cgroups(const struct img_container_config *c) {
    for (const char *const *dir = c->cgroup_directories; dir && *dir; dir++) {
        char path[512] = "";
        append(path, sizeof path, *dir);
        if (append(path, sizeof path, "/cgroup.procs") < 0) { errno = ENAMETOOLONG; die("join cgroup", *dir); }
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0) die("open", path);
        if (write(fd, "0", 1) != 1) die("join cgroup", *dir);
        close(fd);
    }
    // With a user namespace the cgroup namespace is made later, owned by it (userns_set_up).
    if (!c->userns && unshare(CLONE_NEWCGROUP) < 0) die("unshare", "cgroup namespace");
}

static int set_up_volatile_root(const struct img_container_config *c);
// --- user namespace (userns) ---
static int userns_idmapped_source(const struct img_container_config *c, int source);
static int userns_try_idmapped_attach(int source, int target);
static void userns_attach_tree(int tree, int staging);
static int userns_set_up(int rootfd, const struct img_container_config *c);
static int userns_bind_fd = -1;  // the namespace fd while the host side makes the extra mounts
static void userns_chown(int dirfd, const char *name, uid_t base);
static void userns_option(char *options, size_t cap, const char *name, uint32_t value);
static void userns_idmapped_bind(int source, int target, const struct img_container_mount *m);
static void userns_idmapped_usr(const struct img_container_config *c, int usr, int target);
// --- end user namespace (userns) ---

/// Mounts the container root on `staging` and returns an O_PATH fd of it.
static int set_up_root(const struct img_container_config *c) {
    if (c->volatile_root) return set_up_volatile_root(c);
    int staging = open(c->staging, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (staging < 0) die("open", c->staging);
    int source = open(c->directory, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (source < 0) die("open", c->directory);
    if (c->userns_idmap_root) source = userns_idmapped_source(c, source);  // userns
    char source_path[64];
    fd_path(source_path, source);
    int root;
    if (c->ephemeral) {
        // The throw-away layer is a tmpfs that exists only in this mount namespace: it goes away
        // with the namespace on every exit path, kill -9 of imagectl included.
        mount_on("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700", "ephemeral tmpfs");
        close(staging);
        staging = open(c->staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (staging < 0) die("open", c->staging);
        struct stat st;
        if (fstat(source, &st) < 0) die("stat", c->directory);
        if (mkdirat(staging, "upper", 0755) < 0 || mkdirat(staging, "work", 0700) < 0 ||
            mkdirat(staging, "root", 0755) < 0)
            die("mkdir", "ephemeral layer");
        // The merged root takes the upper directory's owner and mode: copy the source's.
        if (fchownat(staging, "upper", st.st_uid, st.st_gid, 0) < 0 ||
            fchmodat(staging, "upper", st.st_mode & 07777, 0) < 0)
            die("chown", "ephemeral upper layer");
        int upper = openat(staging, "upper", O_PATH | O_DIRECTORY | O_CLOEXEC);
        int work = openat(staging, "work", O_PATH | O_DIRECTORY | O_CLOEXEC);
        root = openat(staging, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (upper < 0 || work < 0 || root < 0) die("open", "ephemeral layer");
        // Paths through /proc/self/fd: the user's directory name never reaches the option
        // string, so a "," or ":" in it cannot inject overlay options.
        char options[256] = "lowerdir=";
        char p[64];
        append(options, sizeof options, source_path);
        append(options, sizeof options, ",upperdir=");
        fd_path(p, upper);
        append(options, sizeof options, p);
        append(options, sizeof options, ",workdir=");
        fd_path(p, work);
        append(options, sizeof options, p);
        mount_on("overlay", root, "overlay", 0, options, "ephemeral overlay");
        close(upper);
        close(work);
        close(root);
        root = openat(staging, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0) die("open", "ephemeral root");
        close(staging);
    } else if (c->userns_idmap_root) {
        userns_attach_tree(source, staging);  // userns: a detached mount is attached, not bound
        close(staging);
        root = open(c->staging, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (root < 0) die("open", c->staging);
    } else {
        mount_on(source_path, staging, NULL, MS_BIND | MS_REC, NULL, "bind root");
        close(staging);
        root = open(c->staging, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (root < 0) die("open", c->staging);
    }
    close(source);
    if (c->read_only) mount_on(NULL, root, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL, "read-only root");
    return root;
}

/// devpts (a new instance), /dev/shm and /dev/mqueue beneath the root's /dev. Without a user
/// namespace the container child mounts them with the rest of /dev; with one, PID 1 does, since
/// they must belong to its own namespaces. gid 5 is "tty" on Debian and in systemd's defaults (as
/// nspawn uses it); with a user namespace it is read there, i.e. the container's tty group.
static void mount_dev_filesystems(int rootfd) {
    int fd = open_in_root(rootfd, "dev/pts");
    if (fd < 0) die("open", "/dev/pts");
    mount_on("devpts", fd, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620,gid=5", "/dev/pts");
    close(fd);
    fd = open_in_root(rootfd, "dev/shm");
    if (fd < 0) die("open", "/dev/shm");
    mount_on("tmpfs", fd, "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME, "mode=01777", "/dev/shm");
    close(fd);
    fd = open_in_root(rootfd, "dev/mqueue");
    if (fd < 0) die("open", "/dev/mqueue");
    mount_on("mqueue", fd, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, "/dev/mqueue");
    close(fd);
}

/// A private /dev on tmpfs: fresh device nodes made with the host's numbers and modes (new inodes
/// in the tmpfs, so a chown or chmod inside never touches the host's nodes), the pts, shm and
/// mqueue directories and the usual links. With a user namespace (`owned`) the tmpfs and all in
/// it belong to the namespace's root, the base.
static void make_dev_tree(int rootfd, int owned, uid_t base) {
    char options[128] = "mode=0755,size=4m,nr_inodes=64k";
    if (owned) {
        userns_option(options, sizeof options, ",uid=", base);
        userns_option(options, sizeof options, ",gid=", base);
    }
    mount_fs_in_root(rootfd, "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, options, 0755);
    char p[64];
    int devpath = open_in_root(rootfd, "dev");
    if (devpath < 0) die("open", "/dev");
    fd_path(p, devpath);
    int dev = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(devpath);
    if (dev < 0) die("open", "/dev");
    static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
    mode_t old_umask = umask(0);
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        char host[32] = "/dev/";
        append(host, sizeof host, nodes[i]);
        struct stat st;
        if (stat(host, &st) < 0 || !S_ISCHR(st.st_mode)) die("stat host device", host);
        if (mknodat(dev, nodes[i], S_IFCHR | (st.st_mode & 0777), st.st_rdev) < 0) die("mknod", host);
        if (owned) userns_chown(dev, nodes[i], base);
    }
    static const char *const dirs[] = {"pts", "shm", "mqueue"};
    static const mode_t dir_modes[] = {0755, 01777, 0755};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (mkdirat(dev, dirs[i], dir_modes[i]) < 0) die("mkdir", dirs[i]);
        if (owned) userns_chown(dev, dirs[i], base);
    }
    umask(old_umask);
    static const char *const links[][2] = {{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
                                           {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        if (symlinkat(links[i][0], dev, links[i][1]) < 0) die("symlink", links[i][1]);
        if (owned) userns_chown(dev, links[i][1], base);
    }
    close(dev);
}

/// /dev without a user namespace: the tree, then devpts, shm and mqueue.
static void set_up_dev(int rootfd) {
    make_dev_tree(rootfd, 0, 0);
    mount_dev_filesystems(rootfd);
}

/// /proc of the new PID namespace, /proc/sys read-only, and kernel-internal files masked with the
/// container's own /dev/null on read-only binds. Each mask is checked after it was made (systemd
/// PR 40833 found masks that silently did not apply).
static int userns_proc_mounted = 0;  // userns: PID 1 mounted /proc by path already

static void set_up_proc(int rootfd) {
    if (!userns_proc_mounted) mount_fs_in_root(rootfd, "proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL, 0555);
    int fd = open_in_root(rootfd, "proc/sys");
    if (fd < 0) die("open", "/proc/sys");
    char p[64];
    fd_path(p, fd);
    mount_on(p, fd, NULL, MS_BIND | MS_REC, NULL, "/proc/sys");
    close(fd);
    remount_read_only(rootfd, "proc/sys", MS_NOSUID | MS_NODEV | MS_NOEXEC);

    int null_fd = open_in_root(rootfd, "dev/null");
    if (null_fd < 0) die("open", "/dev/null");
    struct stat null_st;
    if (fstat(null_fd, &null_st) < 0) die("stat", "/dev/null");
    char null_path[64];
    fd_path(null_path, null_fd);
    static const char *const masked[] = {"proc/kallsyms", "proc/kcore", "proc/keys", "proc/sysrq-trigger", "proc/timer_list"};
    for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++) {
        int target = open_in_root(rootfd, masked[i]);
        if (target < 0) {
            if (errno == ENOENT) continue;  // e.g. /proc/keys without CONFIG_KEYS
            die("open", masked[i]);
        }
        mount_on(null_path, target, NULL, MS_BIND, NULL, masked[i]);
        close(target);
        remount_read_only(rootfd, masked[i], MS_NOSUID | MS_NODEV | MS_NOEXEC);
        int check = open_in_root(rootfd, masked[i]);
        struct stat st;
        if (check < 0 || fstat(check, &st) < 0) die("check mask of", masked[i]);
        close(check);
        if (!S_ISCHR(st.st_mode) || st.st_rdev != null_st.st_rdev || st.st_ino != null_st.st_ino) {
            errno = EPERM;
            die("mask did not apply to", masked[i]);
        }
    }
    close(null_fd);
}

/// cgroup file systems as nspawn mounts them for a container with a cgroup namespace: on a legacy
/// or hybrid host a read-only tmpfs at /sys/fs/cgroup holding each v1 controller hierarchy
/// read-only, the named "systemd" hierarchy writable and (hybrid) the v2 tree at "unified"
/// writable; on a unified host cgroup2 at /sys/fs/cgroup. The cgroup namespace makes the
/// container's own cgroup the root of each.
static void set_up_cgroups(int rootfd, const struct img_container_config *c) {
    if (c->cgroup_layout == IMG_CGROUP_UNIFIED) {
        mount_fs_in_root(rootfd, "sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0755);
        return;
    }
    mount_fs_in_root(rootfd, "sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755", 0755);
    for (const char *const *ctl = c->cgroup_controllers; ctl && *ctl; ctl++) {
        char path[256] = "sys/fs/cgroup/";
        if (append(path, sizeof path, *ctl) < 0) { errno = ENAMETOOLONG; die("cgroup", *ctl); }
        mount_fs_in_root(rootfd, path, "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, *ctl, 0755);
        // A joined hierarchy ("cpu,cpuacct") also gets one symlink per controller.
        if (strchr(*ctl, ',')) {
            int dir = open_in_root(rootfd, "sys/fs/cgroup");
            char dp[64];
            fd_path(dp, dir);
            int d = open(dp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            close(dir);
            if (d < 0) die("open", "/sys/fs/cgroup");
            char name[128];
            size_t k = 0;
            for (const char *s = *ctl;; s++) {
                if (*s == ',' || *s == 0) {
                    name[k] = 0;
                    if (k && symlinkat(*ctl, d, name) < 0 && errno != EEXIST) die("symlink", name);
                    k = 0;
                    if (!*s) break;
                } else if (k + 1 < sizeof name) {
                    name[k++] = *s;
                }
            }
            close(d);
        }
    }
    if (c->cgroup_hybrid)
        mount_fs_in_root(rootfd, "sys/fs/cgroup/unified", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0755);
    mount_fs_in_root(rootfd, "sys/fs/cgroup/systemd", "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC, "none,name=systemd", 0755);
    int fd = open_in_root(rootfd, "sys/fs/cgroup");
    if (fd < 0) die("open", "/sys/fs/cgroup");
    mount_on(NULL, fd, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755", "/sys/fs/cgroup read-only");
    close(fd);
}

static void set_up_api_filesystems(int rootfd, const struct img_container_config *c) {
    set_up_dev(rootfd);
    set_up_proc(rootfd);
    mount_fs_in_root(rootfd, "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL, 0555);
    set_up_cgroups(rootfd, c);
    mount_fs_in_root(rootfd, "run", "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME, "mode=0755,size=20%,nr_inodes=800k", 0755);
    mount_fs_in_root(rootfd, "tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME, "mode=01777", 01777);
}

// ---------------------------------------------------------------------------------------------
// Extra mounts (--bind, --bind-ro, --tmpfs, --overlay, --overlay-ro): after the API file systems,
// as nspawn makes its custom mounts, so a --tmpfs=/run replaces the default one.

/// `path` without its leading slashes: openat2 wants it relative to the root descriptor.
static const char *relative(const char *path) {
    while (*path == '/') path++;
    return path;
}

/// Opens a mount source as O_PATH: a host path, or a path resolved beneath the container root.
static int open_source(int rootfd, const char *path, int in_root) {
    if (in_root) return open_in_root(rootfd, relative(path));
    return openat2_in(AT_FDCWD, path, O_PATH, 0, 0);
}

/// The target of a non-directory bind: an existing inode (resolved in the root), else an empty
/// file created in its parent directory, which is itself made beneath the root. A dangling
/// symlink at the name is followed beneath the root (lifecycle), never out of it.
static int make_file_in_root(int rootfd, const char *path) {
    char buf[512];
    if (strlen(path) >= sizeof buf) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, path, strlen(path) + 1);
    for (int links = 0;; links++) {
        int fd = open_in_root(rootfd, buf);
        if (fd >= 0 || errno != ENOENT) return fd;
        char parent_path[512];
        const char *name = split_last(buf, parent_path);
        if (!name) return -1;
        int parent = parent_path[0] ? make_directory_in_root(rootfd, parent_path, 0755) : dup(rootfd);
        if (parent < 0) return -1;
        char p[64];
        fd_path(p, parent);
        int dir = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        close(parent);
        if (dir < 0) return -1;
        char link[512];
        if (read_link(dir, name, link) > 0) {
            close(dir);
            if (links >= 40) { errno = ELOOP; return -1; }
            if (follow_dangling_link(buf, strlen(buf), parent_path, link) < 0) return -1;
            continue;
        }
        // O_NOFOLLOW|O_CREAT: a symlink planted at the name since is refused, not followed.
        int file = openat(dir, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
        close(dir);
        if (file < 0) return -1;
        close(file);
        return open_in_root(rootfd, buf);
    }
}

/// Makes the mount now on top of `path` (inside the root) read-only; with `recursive` also every
/// mount below it (mount_setattr AT_RECURSIVE, so an rbind's submounts are covered too).
static void make_read_only(int rootfd, const char *path, int recursive) {
    int fd = open_in_root(rootfd, path);
    if (fd < 0) die("open for read-only", path);
    if (img_mount_setattr(fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), MOUNT_ATTR_RDONLY, 0, 0, 0) < 0)
        die("make read-only", path);
    close(fd);
}

static void bind_mount(int rootfd, const struct img_container_mount *m) {
    const char *target = relative(m->target);
    int source = open_source(rootfd, m->source, m->source_in_root);
    if (source < 0) die("open bind source", m->source);
    struct stat st;
    if (fstat(source, &st) < 0) die("stat", m->source);
    int fd = S_ISDIR(st.st_mode) ? make_directory_in_root(rootfd, target, 0755) : make_file_in_root(rootfd, target);
    if (fd < 0) die("create bind target", m->target);
    char source_path[64];
    fd_path(source_path, source);
    if (m->idmap && userns_bind_fd >= 0) userns_idmapped_bind(source, fd, m);  // userns
    else mount_on(source_path, fd, NULL, MS_BIND | (m->recursive ? MS_REC : 0), NULL, m->target);
    close(fd);
    close(source);
    if (m->read_only) make_read_only(rootfd, target, m->recursive);
}

static void tmpfs_mount(int rootfd, const struct img_container_mount *m) {
    int fd = make_directory_in_root(rootfd, relative(m->target), 0755);
    if (fd < 0) die("create mount point", m->target);
    mount_on("tmpfs", fd, "tmpfs", m->flags, m->data, m->target);
    close(fd);
}

/// Appends ",key=" or ":" and the /proc/self/fd path of `fd` to the overlay option string.
static void append_layer(char *options, size_t cap, const char *separator, int fd) {
    char p[64];
    fd_path(p, fd);
    if (append(options, cap, separator) < 0 || append(options, cap, p) < 0) {
        errno = E2BIG;
        die("overlay options", "too many layers");
    }
}

/// Layers go into the option string as /proc/self/fd/N paths: a ":" or "," in a user's path
/// never reaches the option parser, and "+" layers are the inodes found beneath the root.
static void overlay_mount(int rootfd, const struct img_container_mount *m) {
    char options[2048] = "";
    int fds[130];
    size_t count = 0;
    for (size_t i = 0; m->lower && m->lower[i]; i++) {
        if (count >= 128) { errno = E2BIG; die("overlay", "too many layers"); }
        int fd = open_source(rootfd, m->lower[i], m->lower_in_root[i]);
        if (fd < 0) die("open overlay layer", m->lower[i]);
        fds[count++] = fd;
        append_layer(options, sizeof options, i == 0 ? "lowerdir=" : ":", fd);
    }
    if (m->upper) {
        int upper = open_source(rootfd, m->upper, m->upper_in_root);
        if (upper < 0) die("open overlay upper layer", m->upper);
        int work = open_source(rootfd, m->work, m->work_in_root);
        if (work < 0) die("open overlay work directory", m->work);
        fds[count++] = upper;
        fds[count++] = work;
        append_layer(options, sizeof options, ",upperdir=", upper);
        append_layer(options, sizeof options, ",workdir=", work);
    }
    int fd = make_directory_in_root(rootfd, relative(m->target), 0755);
    if (fd < 0) die("create mount point", m->target);
    mount_on("overlay", fd, "overlay", m->read_only ? MS_RDONLY : 0, options, m->target);
    close(fd);
    for (size_t i = 0; i < count; i++) close(fds[i]);
}

/// --volatile=yes as nspawn does it: a tmpfs root (gone with the mount namespace) holding only
/// the tree's /usr, bound read-only; the OS populates /etc and /var itself.
static int set_up_volatile_root(const struct img_container_config *c) {
    int staging = open(c->staging, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (staging < 0) die("open", c->staging);
    mount_on("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME, "mode=0755", "volatile root");
    close(staging);
    int root = open(c->staging, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (root < 0) die("open", c->staging);
    int source = open(c->directory, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (source < 0) die("open", c->directory);
    int usr = open_in_root(source, "usr");
    if (usr < 0) die("open /usr of", c->directory);
    close(source);
    int target = make_directory_in_root(root, "usr", 0755);
    if (target < 0) die("create mount point", "/usr");
    char p[64];
    fd_path(p, usr);
    if (c->userns_idmap_root) userns_idmapped_usr(c, usr, target);  // userns: /usr ID-mapped
    else mount_on(p, target, NULL, MS_BIND | MS_REC, NULL, "/usr");
    close(target);
    close(usr);
    make_read_only(root, "usr", 1);
    // The merged-/usr links systemd's base-filesystem.c makes (ld.so is found through /lib64),
    // each only when the tree's /usr has the directory.
    char rp[64];
    fd_path(rp, root);
    int dir = open(rp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) die("open", "volatile root");
    static const char *const links[][2] = {{"bin", "usr/bin"}, {"sbin", "usr/sbin"}, {"lib", "usr/lib"}, {"lib64", "usr/lib64"}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        int probe = open_in_root(root, links[i][1]);
        if (probe < 0) continue;
        close(probe);
        if (symlinkat(links[i][1], dir, links[i][0]) < 0) die("symlink", links[i][0]);
    }
    close(dir);
    return root;
}

// ---------------------------------------------------------------------------------------------
// /etc/resolv.conf and /etc/localtime (--resolv-conf=, --timezone=), as nspawn's
// setup_resolv_conf() and setup_timezone(): every step that cannot be done is skipped (nspawn
// logs and ignores), except a bind that was made and then cannot be made read-only.

/// The container's /etc as a directory fd, resolved beneath the root; -1 when there is none.
static int open_etc(int rootfd) {
    int path_fd = open_in_root(rootfd, "etc");
    if (path_fd < 0) return -1;
    char p[64];
    fd_path(p, path_fd);
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
    append(temporary, sizeof temporary, name);
    append(temporary, sizeof temporary, ".imagectl");
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

/// Bind-mounts the host file over `path` (relative to the root; a symlink there is followed
/// beneath the root, as nspawn's chase() does), created empty when missing, then read-only.
static int bind_etc_file(int rootfd, const char *path, const struct img_etc_file *f) {
    int source = open(f->host_path, O_PATH | O_CLOEXEC);
    if (source < 0) return -1;
    int target = make_file_in_root(rootfd, path);
    if (target < 0) { close(source); return -1; }
    struct stat st;
    char source_path[64], target_path[64];
    fd_path(source_path, source);
    fd_path(target_path, target);
    int r = -1;
    if (fstat(target, &st) == 0 && !S_ISDIR(st.st_mode)) {
        // userns: ID-mapped where the host file's file system allows it, so the container sees
        // the host's root as its own owner of the file (and a write fails as read-only, not as
        // permission denied); else a plain bind (the file shows as nobody's).
        if (userns_bind_fd < 0 || (r = userns_try_idmapped_attach(source, target)) < 0)
            r = mount(source_path, target_path, NULL, MS_BIND, NULL);
    }
    close(target);
    close(source);
    if (r < 0) return -1;
    int top = open_in_root(rootfd, path);
    if (top < 0) die("open for read-only", path);
    if (img_mount_setattr(top, "", AT_EMPTY_PATH, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, 0) < 0)
        die("make read-only", path);
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

// userns: set when the host side bound the file already (userns_bind_etc_file); PID 1 then
// leaves it alone. Indexed like the two files: 0 resolv.conf, 1 localtime.
static int etc_file_bound[2];

static void set_up_etc_file(int rootfd, const char *name, const struct img_etc_file *f) {
    if (!f->steps) return;
    if (etc_file_bound[strcmp(name, "resolv.conf") == 0 ? 0 : 1]) return;
    int etc = open_etc(rootfd);
    if (etc < 0) return;  // no /etc in the tree (e.g. --volatile=yes): nspawn ignores it as well
    char path[64] = "etc/";
    append(path, sizeof path, name);
    if (f->steps & IMG_ETC_DELETE) {
        (void)unlinkat(etc, name, 0);
        close(etc);
        return;
    }
    int done = 0;
    if (f->steps & IMG_ETC_SYMLINK) done = symlink_etc_file(rootfd, etc, name, f) == 0;
    if (!done && (f->steps & IMG_ETC_BIND)) done = bind_etc_file(rootfd, path, f) == 0;
    if (!done && (f->steps & IMG_ETC_COPY)) (void)copy_etc_file(etc, name, f);
    close(etc);
}

static void set_up_extra_mounts(int rootfd, const struct img_container_config *c) {
    for (size_t i = 0; i < c->mount_count; i++) {
        const struct img_container_mount *m = &c->mounts[i];
        switch (m->kind) {
        case IMG_MOUNT_BIND: bind_mount(rootfd, m); break;
        case IMG_MOUNT_TMPFS: tmpfs_mount(rootfd, m); break;
        case IMG_MOUNT_OVERLAY: overlay_mount(rootfd, m); break;
        }
    }
}

static void enter_root(int rootfd) {
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then leaves
    // only the new root (pivot_root(2), NOTES).
    if (fchdir(rootfd) < 0) die("fchdir", "container root");
    if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root", NULL);
    if (umount2(".", MNT_DETACH) < 0) die("umount", "old root");
    if (chdir("/") < 0) die("chdir", "/");
    close(rootfd);
}

static void loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) die("socket", "loopback");
    struct ifreq request;
    memset(&request, 0, sizeof request);
    memcpy(request.ifr_name, "lo", 3);
    if (ioctl(s, SIOCGIFFLAGS, &request) < 0) die("SIOCGIFFLAGS", "lo");
    request.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &request) < 0) die("SIOCSIFFLAGS", "lo");
    close(s);
}

/// The payload's console (runner-proc): a pty from the container's own devpts (mounted, with
/// ptmx, by set_up_dev), bound onto /dev/console and made the controlling terminal and standard
/// streams; the master goes to imagectl, which relays it (ConsoleRelay.swift). Runs after
/// pivot_root and setsid().
static void set_up_console(int socket) {
    int master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) die("open", "/dev/pts/ptmx");
    int unlock = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0) die("unlockpt", NULL);
    int peer = ioctl(master, _IO('T', 0x41) /* TIOCGPTPEER */, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (peer < 0) die("open", "pty peer");
    int console = open("/dev/console", O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (console < 0) die("create", "/dev/console");
    close(console);
    char p[64];
    fd_path(p, peer);
    if (mount(p, "/dev/console", NULL, MS_BIND, NULL) < 0) die("mount", "/dev/console");
    if (ioctl(peer, TIOCSCTTY, 0) < 0) die("TIOCSCTTY", NULL);
    if (dup2(peer, 0) < 0 || dup2(peer, 1) < 0 || dup2(peer, 2) < 0) die("dup2", "console");
    if (peer > 2) close(peer);
    if (img_send_fd(socket, master) < 0) die("send", "console pty");
    close(master);
    close(socket);
}

/// --rlimit=, --oom-score-adjust=, --cpu-affinity= (runner-proc), set while still root (raising
/// a hard limit needs CAP_SYS_RESOURCE) and before the payload or the stub init forks.
static void apply_process_limits(const struct img_container_config *c) {
    for (size_t i = 0; i < c->resource_limit_count; i++) {
        struct rlimit limit = {(rlim_t)c->resource_limits[i].soft, (rlim_t)c->resource_limits[i].hard};
        if (syscall(SYS_prlimit64, 0, c->resource_limits[i].resource, &limit, NULL) < 0) die("setrlimit", NULL);
    }
    if (c->oom_score_adjust_set) {
        char value[24];
        format_int(value, c->oom_score_adjust);
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd < 0) die("open", "/proc/self/oom_score_adj");
        if (write(fd, value, strlen(value)) < 0) die("write", "/proc/self/oom_score_adj");
        close(fd);
    }
    if (c->cpu_mask_words) {
        if (syscall(SYS_sched_setaffinity, 0, c->cpu_mask_words * sizeof(uint64_t), c->cpu_mask) < 0)
            die("sched_setaffinity", NULL);
    }
    if (c->personality_set && syscall(SYS_personality, c->personality) < 0) die("personality", NULL);
}

static void drop_bounding_set(uint64_t keep) {
    if (img_child_drop_bounding_set(keep) < 0) die("PR_CAPBSET_DROP", NULL);
}

/// Limits the effective, permitted and inheritable sets to `keep` (for the stub init, which never
/// execs and so would otherwise keep every capability).
static void limit_capabilities(uint64_t keep) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    data[0].effective = data[0].permitted = (uint32_t)keep;
    data[1].effective = data[1].permitted = (uint32_t)(keep >> 32);
    if (syscall(SYS_capset, &header, data) < 0) die("capset", NULL);
}

static void install_seccomp(const struct img_container_config *c) {
    if (img_child_install_seccomp(c->seccomp_program, c->seccomp_program_size) < 0) die("seccomp", NULL);
}

static void exec_payload(const struct img_container_config *c) {
    img_child_exec(c->argv, c->envp);
    die("execute", c->argv[0]);
}

/// PID 1 for --as-pid2: forwards every signal it can catch to the payload, reaps every child,
/// and exits with the payload's status (128+N when a signal ended it).
static void stub_init(pid_t payload) {
    sigset_t all;
    sigfillset(&all);
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&all, &info);
        if (sig < 0) continue;
        if (sig != SIGCHLD) {
            (void)kill(payload, sig);
            continue;
        }
        for (;;) {
            int status;
            pid_t pid = waitpid(-1, &status, WNOHANG);
            if (pid <= 0) break;
            if (pid == payload) {
                if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
                _exit(128 + WTERMSIG(status));
            }
        }
    }
}

// --- dying with imagectl (lifecycle) ---
/// A pidfd of imagectl, open only while img_container_start clones (the child inherits it).
static int imagectl_pidfd = -1;

/// The container goes when imagectl goes, whatever kills it (kill -9 included): SIGKILL on the
/// parent's death; and if imagectl died before the prctl took effect (a race getppid() cannot
/// see: it is 0 in a new PID namespace), its pidfd already polls readable, so end now. The
/// container's mount namespace, and with it the last use of the image's loop devices, goes with
/// the container.
static void die_with_imagectl(void) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die("PR_SET_PDEATHSIG", NULL);
    if (imagectl_pidfd >= 0) {
        struct pollfd p = {imagectl_pidfd, POLLIN, 0};
        if (poll(&p, 1, 0) > 0) _exit(127);
        close(imagectl_pidfd);
        imagectl_pidfd = -1;
    }
}

/// The root and everything below it private in this mount namespace: imagectl detaches its own
/// copy of an image's mounts once the container runs (RootSession.containerStarted), and that
/// unmount must not propagate into the container (which it would from a shared host mount, whose
/// copies here are slaves).
static void make_root_private(int rootfd) {
    mount_on(NULL, rootfd, NULL, MS_REC | MS_PRIVATE, NULL, "make the root private");
}
// --- end dying with imagectl (lifecycle) ---

static int child_main(void *arg) {
    const struct img_container_config *c = arg;
    // Non-dumpable before anything of the container can see this process (SECURITY 18, runc
    // CVE-2019-5736): until it execs the payload it runs imagectl's executable, and the -a stub
    // init never execs. /proc/N/exe, /proc/N/map_files and /proc/N/mem of a non-dumpable process
    // need CAP_SYS_PTRACE in the user namespace that owns its memory, the host's, which a
    // container with a user namespace never has. (Without one, the container's root has it: no
    // boundary, as the README says.) The payload's exec makes it dumpable again.
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) die("PR_SET_DUMPABLE", NULL);
    reset_signals();
    die_with_imagectl();  // lifecycle
    join_cgroups(c);
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) die("mount", "make / a slave");
    int rootfd = set_up_root(c);
    make_root_private(rootfd);  // lifecycle
    if (c->userns) {
        // Returns in the container's PID 1, inside the user namespace (see "user namespace").
        rootfd = userns_set_up(rootfd, c);
    } else {
        set_up_api_filesystems(rootfd, c);
        // Before the extra mounts, so a --bind= of the user's onto either file stays on top.
        set_up_etc_file(rootfd, "resolv.conf", &c->resolv_conf);
        set_up_etc_file(rootfd, "localtime", &c->localtime);
        set_up_extra_mounts(rootfd, c);
    }
    if (c->userns) {
        close(rootfd);  // already the root (userns_set_up), and its mounts cannot be pivoted
        if (chdir("/") < 0) die("chdir", "/");
    } else {
        enter_root(rootfd);
    }
    // --- notify socket (lifecycle) --- (non-fatal: a read-only /run only costs the readiness)
    if (c->notify_socket > 2) (void)img_notify_bind(c->notify_socket);
    if (sethostname(c->hostname, strlen(c->hostname)) < 0) die("sethostname", c->hostname);
    if (c->private_network) loopback_up();
    if (setsid() < 0) die("setsid", NULL);
    if (c->console) set_up_console(c->console_socket);
    if (!c->userns) apply_process_limits(c);  // userns: done on the host side (host capabilities)
    drop_bounding_set(c->capabilities);

    if (c->as_pid2) {
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, NULL);
        long pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
        if (pid < 0) die("clone", "payload");
        if (pid > 0) {
            // The stub init keeps no capabilities and no way back to the host binary it runs:
            // non-dumpable since child_main began, and the kernel refuses writes to a running
            // executable (ETXTBSY).
            close(error_pipe);
            error_pipe = -1;
            limit_capabilities(1ULL << CAP_KILL);  // to signal a payload of another uid
            (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            install_seccomp(c);
            (void)syscall(SYS_close_range, 3U, ~0U, 0U);
            stub_init((pid_t)pid);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
    }

    if (img_child_chdir_beneath_root(c->working_directory) < 0) die("chdir", c->working_directory);
    // Raw system calls, not glibc's wrappers: those broadcast the change to every thread in
    // glibc's thread list (__nptl_setxid), which this clone() child copied from the
    // multi-threaded parent, and wait forever for a thread that was being created at clone time.
    if (syscall(SYS_setgroups, c->group_count, c->groups) < 0) die("setgroups", NULL);
    if (c->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("PR_SET_NO_NEW_PRIVS", NULL);
    // seccomp while still root (CAP_SYS_ADMIN allows it without no_new_privs).
    install_seccomp(c);
    if (syscall(SYS_setresgid, c->gid, c->gid, c->gid) < 0) die("setresgid", NULL);
    if (syscall(SYS_setresuid, c->uid, c->uid, c->uid) < 0) die("setresuid", NULL);
    // Everything from 3 up closes at exec (runc CVE-2024-21626); the error pipe is close-on-exec
    // already and stays usable until then.
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) die("close_range", NULL);
    exec_payload(c);
    return 127;
}

pid_t img_container_start(const struct img_container_config *config, int *error_fd) {
    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
    if (config->private_network) flags |= CLONE_NEWNET;
    // userns: the other namespaces are made inside the user namespace (userns_set_up).
    if (config->userns) flags = CLONE_NEWNS | SIGCHLD;
    imagectl_pidfd = img_pidfd_open(getpid(), 0);  // lifecycle: see die_with_imagectl
    pid_t pid = img_child_clone(child_main, flags, (void *)config, &error_pipe, error_fd);
    int saved = errno;
    if (imagectl_pidfd >= 0) close(imagectl_pidfd);
    imagectl_pidfd = -1;
    errno = saved;
    return pid;
}

static volatile sig_atomic_t forward_pidfd = -1;
static volatile sig_atomic_t forward_signal = SIGKILL;
static volatile sig_atomic_t forwarded = 0;

/// Runs on whichever thread the kernel picks; only async-signal-safe calls.
static void forward_handler(int sig) {
    (void)sig;
    if (forwarded || forward_pidfd < 0) return;
    forwarded = 1;
    int saved = errno;
    (void)syscall(SYS_pidfd_send_signal, (int)forward_pidfd, (int)forward_signal, NULL, 0);
    errno = saved;
}

int img_container_forward_signals(int pidfd, int kill_signal) {
    forward_pidfd = pidfd;
    forward_signal = kill_signal;
    forwarded = 0;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = forward_handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGTERM, &action, NULL) < 0 || sigaction(SIGINT, &action, NULL) < 0) return -1;
    // A caller may start imagectl with these signals blocked (the mask is inherited over exec):
    // unblock them in this thread, which then waits for the container and takes them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    return pthread_sigmask(SIG_UNBLOCK, &set, NULL) == 0 ? 0 : -1;
}

int img_container_signal_forwarded(void) { return forwarded; }

int img_pidfd_send_signal(int pidfd, int signal) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, signal, NULL, 0);
}

int img_sigrtmin(void) { return SIGRTMIN; }

int img_cap_last_cap(void) {
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[16];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            int value = 0;
            for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) value = value * 10 + (buf[i] - '0');
            if (value > 0 && value < 64) return value;
        }
    }
    return CAP_LAST_CAP;
}

// --- user namespace (userns) ---------------------------------------------------------------------
// --private-users= (see Sources/Runner/UserNamespace.swift for the range and ownership decisions).
//
// Design, as nspawn splits it between its outer and inner child:
//  * The Swift parent makes the user namespace first (img_userns_create: a helper cloned with
//    CLONE_NEWUSER that only waits, whose uid_map/gid_map "0 BASE SIZE" the parent writes as host
//    root, and whose /proc/PID/ns/user is kept open). The fd serves both the ID-mapped mount of the
//    root (MOUNT_ATTR_IDMAP needs a user namespace fd) and the child's setns().
//  * The container child is cloned with CLONE_NEWNS only, in the host user namespace, and does
//    what needs host privileges: joins the cgroups (chowned to BASE for delegation), mounts the
//    root (ID-mapped when asked: open_tree clone + mount_setattr + move_mount), /dev on a tmpfs
//    with mknod'ed nodes (mknod is never allowed in a user namespace), /sys (sysfs of the host's
//    network namespace can only be mounted from the namespace that owns it), /run, /tmp, the
//    --bind/--tmpfs/--overlay mounts (host paths, overlay's trusted.* xattrs), and the limits
//    (raising a hard rlimit or lowering oom_score_adj needs host capabilities). Everything it
//    creates is owned by BASE.
//  * It then joins the user namespace, becomes its root (raw setresuid: glibc's setxid wrappers
//    hang in a clone of a threaded process), unshares new mount, PID, UTS, IPC, cgroup (and
//    network) namespaces, which are therefore owned by the user namespace, and clones the
//    container's PID 1 with CLONE_PARENT, so that it is imagectl's own child (imagectl waits for
//    it, signals it through its pidfd and registers it as the leader); the PID goes to imagectl
//    over `userns_pid_pipe` and this intermediate process exits.
//  * PID 1 makes the root a mount of its own (an rbind: the copied mounts are locked, and
//    pivot_root refuses a locked new root), mounts /proc of its PID namespace (only possible from
//    inside: CAP_SYS_ADMIN over the PID namespace, and while the host's /proc is still visible in
//    the mount namespace, the kernel's mount_too_revealing rule), /sys with a private network, the
//    cgroup file systems of its cgroup namespace, devpts, /dev/shm, /dev/mqueue, the /etc files
//    (written as the container's root, so an ID-mapped root stores them as 0 on disk), then
//    continues as without a user namespace: pivot_root, host name, console, capabilities,
//    seccomp, identity, exec.

static void userns_chown(int dirfd, const char *name, uid_t base) {
    // Missing entries are fine (a cgroup v1 hierarchy has no cgroup.threads & co).
    if (fchownat(dirfd, name, base, base, AT_SYMLINK_NOFOLLOW | (name[0] ? 0 : AT_EMPTY_PATH)) < 0 && errno != ENOENT)
        die("chown", name[0] ? name : "mount root");
}

/// chown of the mount (or inode) at `path` inside the root to the base.
static void userns_chown_in_root(int rootfd, const char *path, uid_t base) {
    int fd = open_in_root(rootfd, path);
    if (fd < 0) die("open", path);
    userns_chown(fd, "", base);
    close(fd);
}

/// The container's cgroups belong to its root, as nspawn delegates them: the directory and the
/// files a delegated subtree needs to be writable (cgroup v2's delegation set, v1's tasks).
static void userns_chown_cgroups(const struct img_container_config *c) {
    static const char *const files[] = {"", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "tasks"};
    for (const char *const *dir = c->cgroup_directories; dir && *dir; dir++) {
        int fd = open(*dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) die("open", *dir);
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) userns_chown(fd, files[i], c->userns_base);
        close(fd);
    }
}

/// "NAME=N" appended to mount options.
static void userns_option(char *options, size_t cap, const char *name, uint32_t value) {
    char number[24];
    format_int(number, (long)value);
    append(options, cap, name);
    append(options, cap, number);
}

/// The host side of /dev under a user namespace: the tree owned by the base; devpts, shm and
/// mqueue are mounted by PID 1 in its namespaces.
static void userns_set_up_dev(int rootfd, uid_t base) {
    make_dev_tree(rootfd, 1, base);
}

/// A tmpfs at `path` owned by the base (options are read in the host's user namespace here).
static void userns_tmpfs(int rootfd, const char *path, const char *options, uid_t base, mode_t mode) {
    char data[160] = "";
    append(data, sizeof data, options);
    userns_option(data, sizeof data, ",uid=", base);
    userns_option(data, sizeof data, ",gid=", base);
    mount_fs_in_root(rootfd, path, "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME, data, mode);
}

/// set_up_root's ID-mapped source: a detached clone of the tree mapped with the user namespace.
/// Replaces (and closes) `source`.
/// Mount points the host side will need, made on the unmapped tree before it is ID-mapped: through
/// the ID-mapped mount host root (not in its map) may not create anything (EOVERFLOW). Made as
/// the tree's root, as nspawn makes missing mount points.
static void userns_make_mount_points(const struct img_container_config *c, int source) {
    if (c->read_only || c->ephemeral) return;
    static const char *const api[] = {"dev", "proc", "sys", "run", "tmp"};
    for (size_t i = 0; i < sizeof api / sizeof api[0]; i++) {
        int fd = make_directory_in_root(source, api[i], i == 1 || i == 2 ? 0555 : 0755);
        if (fd < 0) die("create mount point", api[i]);
        close(fd);
    }
    for (size_t i = 0; i < c->mount_count; i++) {
        const struct img_container_mount *m = &c->mounts[i];
        // Below /dev, /run, /tmp & co the target is made later on those fresh file systems.
        int below_api = 0;
        for (size_t k = 0; k < sizeof api / sizeof api[0]; k++) {
            size_t n = strlen(api[k]);
            if (strncmp(relative(m->target), api[k], n) == 0 && relative(m->target)[n] == '/') below_api = 1;
        }
        if (below_api) continue;
        int is_dir = 1;
        if (m->kind == IMG_MOUNT_BIND) {
            int from = m->source_in_root ? open_in_root(source, relative(m->source)) : openat2_in(AT_FDCWD, m->source, O_PATH, 0, 0);
            struct stat st;
            if (from < 0 || fstat(from, &st) < 0) die("open bind source", m->source);
            close(from);
            is_dir = S_ISDIR(st.st_mode);
        }
        int fd = is_dir ? make_directory_in_root(source, relative(m->target), 0755) : make_file_in_root(source, relative(m->target));
        if (fd < 0) die("create mount point", m->target);
        close(fd);
    }
}

static int userns_idmapped_source(const struct img_container_config *c, int source) {
    userns_make_mount_points(c, source);
    close(source);
    int tree = img_idmapped_tree(c->directory, c->userns_fd, 1);
    if (tree < 0) die("ID-mapped mount of", c->directory);
    return tree;
}

/// Attaches the detached tree `tree` onto the staging directory.
static void userns_attach_tree(int tree, int staging) {
    if (syscall(SYS_move_mount, tree, "", staging, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        die("move_mount", "ID-mapped root");
}

/// --bind=SRC:DST:idmap: a detached clone of the source (recursive for rbind), ID-mapped with the
/// container's user namespace, attached onto the target.
static void userns_idmapped_bind(int source, int target, const struct img_container_mount *m) {
    int tree = (int)syscall(SYS_open_tree, source, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | (m->recursive ? AT_RECURSIVE : 0));
    if (tree < 0) die("open_tree", m->source);
    if (img_mount_setattr(tree, "", AT_EMPTY_PATH | (m->recursive ? AT_RECURSIVE : 0), MOUNT_ATTR_IDMAP, 0, 0, (uint64_t)userns_bind_fd) < 0)
        die("ID-mapped mount of", m->source);
    if (syscall(SYS_move_mount, tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        die("move_mount", m->target);
    close(tree);
}

/// A detached clone of `source` ID-mapped with the container's user namespace and attached onto
/// `target`; -1 (nothing changed) when the file system refuses ID-mapped mounts.
static int userns_try_idmapped_attach(int source, int target) {
    int tree = (int)syscall(SYS_open_tree, source, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
    if (tree < 0) return -1;
    int r = img_mount_setattr(tree, "", AT_EMPTY_PATH, MOUNT_ATTR_IDMAP, 0, 0, (uint64_t)userns_bind_fd);
    if (r == 0) r = (int)syscall(SYS_move_mount, tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    close(tree);
    return r;
}

/// --volatile=yes with map: the tree's /usr bound onto the tmpfs root as an ID-mapped mount.
static void userns_idmapped_usr(const struct img_container_config *c, int usr, int target) {
    int tree = (int)syscall(SYS_open_tree, usr, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
    if (tree < 0) die("open_tree", "/usr");
    if (img_mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, MOUNT_ATTR_IDMAP, 0, 0, (uint64_t)c->userns_fd) < 0)
        die("ID-mapped mount of", "/usr");
    if (syscall(SYS_move_mount, tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        die("move_mount", "/usr");
    close(tree);
}

/// The bind step of an /etc file under a user namespace, done on the host side: PID 1 is
/// chrooted into the container and can neither reach the host file nor bind a mount of the
/// host's mount namespace. Only where the bind is the step to take: the symlink step comes first
/// when the image has the zone file (PID 1 makes the link), and a copy is PID 1's (it writes as
/// the container's root). Before the extra mounts, so a --bind= onto the file stays on top.
static void userns_bind_etc_file(int rootfd, const char *name, const struct img_etc_file *f, int *bound) {
    if (!(f->steps & IMG_ETC_BIND) || (f->steps & IMG_ETC_DELETE)) return;
    if (f->steps & IMG_ETC_SYMLINK) {
        int check = open_in_root(rootfd, f->link_check);
        if (check >= 0) { close(check); return; }
    }
    int etc = open_etc(rootfd);
    if (etc < 0) return;
    close(etc);
    char path[64] = "etc/";
    append(path, sizeof path, name);
    // A missing target cannot be made through an ID-mapped root by the host's root (EOVERFLOW):
    // bind_etc_file fails and PID 1 copies instead.
    if (bind_etc_file(rootfd, path, f) == 0) *bound = 1;
}

/// Runs the host side, then the user-namespace side up to (not including) pivot_root; returns
/// in the container's PID 1 with a root fd usable there. The intermediate process never returns.
static int userns_set_up(int rootfd, const struct img_container_config *c) {
    uid_t base = c->userns_base;
    userns_chown_cgroups(c);
    if (c->ephemeral || c->volatile_root) userns_chown_in_root(rootfd, ".", base);
    userns_set_up_dev(rootfd, base);
    if (!c->private_network)
        mount_fs_in_root(rootfd, "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL, 0555);
    userns_tmpfs(rootfd, "run", "mode=0755,size=20%,nr_inodes=800k", base, 0755);
    userns_tmpfs(rootfd, "tmp", "mode=01777", base, 01777);
    userns_bind_fd = c->userns_fd;
    userns_bind_etc_file(rootfd, "resolv.conf", &c->resolv_conf, &etc_file_bound[0]);
    userns_bind_etc_file(rootfd, "localtime", &c->localtime, &etc_file_bound[1]);
    set_up_extra_mounts(rootfd, c);
    userns_bind_fd = -1;
    for (size_t i = 0; i < c->mount_count; i++)
        if (c->mounts[i].kind == IMG_MOUNT_TMPFS) userns_chown_in_root(rootfd, relative(c->mounts[i].target), base);
    apply_process_limits(c);
    // nspawn's mount_move_root: the root mount moves onto / and becomes this process's root. The
    // host's mounts stay beneath it in the namespace (unreachable by any path), so that the copy
    // made for the user namespace still holds a fully visible /proc and /sys, which the kernel
    // requires before it lets PID 1 mount its own (mount_too_revealing); and no path lookup of
    // the 0700 staging directory is needed from inside the user namespace, whose root may not
    // search it. The copied mounts are locked there, so PID 1 cannot pivot_root: it stays chrooted.
    if (fchdir(rootfd) < 0) die("fchdir", "container root");
    if (mount(".", "/", NULL, MS_MOVE, NULL) < 0) die("mount", "move the root onto /");
    if (chroot(".") < 0) die("chroot", "container root");
    if (chdir("/") < 0) die("chdir", "/");
    close(rootfd);

    if (setns(c->userns_fd, CLONE_NEWUSER) < 0) die("setns", "user namespace");
    if (syscall(SYS_setgroups, 0, NULL) < 0) die("setgroups", "user namespace");
    if (syscall(SYS_setresgid, 0, 0, 0) < 0) die("setresgid", "user namespace root");
    if (syscall(SYS_setresuid, 0, 0, 0) < 0) die("setresuid", "user namespace root");
    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP;
    if (c->private_network) flags |= CLONE_NEWNET;
    if (unshare(flags) < 0) die("unshare", "namespaces of the user namespace");
    long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) die("clone", "container PID 1");
    if (pid > 0) {
        pid_t host_pid = (pid_t)pid;
        if (write(c->userns_pid_pipe, &host_pid, sizeof host_pid) != sizeof host_pid) {
            (void)kill(host_pid, SIGKILL);
            die("write", "PID of the container");
        }
        _exit(0);
    }
    // PID 1 of the new PID namespace, imagectl's child.
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    close(c->userns_pid_pipe);
    close(c->userns_fd);

    // The root (and cwd) moved into this mount namespace with the unshare.
    rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) die("open", "/ in the user namespace");
    // Mounts onto /proc/self/fd/N need a /proc: this first one goes by path. The process is
    // chrooted into the container, so even a symlinked /proc of the image resolves inside it.
    if (mkdir("/proc", 0555) < 0 && errno != EEXIST) die("mkdir", "/proc");
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL) < 0) die("mount", "/proc");
    userns_proc_mounted = 1;
    set_up_proc(rootfd);
    if (c->private_network)
        mount_fs_in_root(rootfd, "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL, 0555);
    set_up_cgroups(rootfd, c);
    mount_dev_filesystems(rootfd);  // PID 1's part of /dev: file systems of its own namespaces
    set_up_etc_file(rootfd, "resolv.conf", &c->resolv_conf);
    set_up_etc_file(rootfd, "localtime", &c->localtime);
    return rootfd;
}

/// Body of the helper that holds the new user namespace until its maps are written and its
/// namespace file is open: waits for EOF on the pipe.
int img_userns_create(uint32_t base, uint32_t size) {
    int sync[2];
    if (pipe2(sync, O_CLOEXEC) < 0) return -1;
    // A raw clone (fork-like, no new stack): the child only reads and exits.
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) {
        char byte;
        close(sync[1]);
        while (read(sync[0], &byte, 1) < 0 && errno == EINTR) {}
        _exit(0);
    }
    int saved = errno;
    close(sync[0]);
    if (pid < 0) { close(sync[1]); errno = saved; return -1; }
    int result = -1;
    char path[64], map[64];
    snprintf(map, sizeof map, "0 %u %u\n", base, size);
    static const char *const files[] = {"uid_map", "gid_map"};
    int ok = 1;
    for (int i = 0; i < 2 && ok; i++) {
        snprintf(path, sizeof path, "/proc/%ld/%s", pid, files[i]);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        ok = fd >= 0 && write(fd, map, strlen(map)) == (ssize_t)strlen(map);
        if (!ok) saved = errno;
        if (fd >= 0) close(fd);
    }
    if (ok) {
        snprintf(path, sizeof path, "/proc/%ld/ns/user", pid);
        result = open(path, O_RDONLY | O_CLOEXEC);
        if (result < 0) saved = errno;
    }
    close(sync[1]);
    int status;
    while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR) {}
    errno = saved;
    return result;
}

int img_idmapped_tree(const char *path, int userns_fd, int recursive) {
    int tree = (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
    if (tree < 0) return -1;
    if (img_mount_setattr(tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), MOUNT_ATTR_IDMAP, 0, 0, (uint64_t)userns_fd) < 0) {
        int saved = errno;
        close(tree);
        errno = saved;
        return -1;
    }
    return tree;
}

int img_idmap_probe(const char *path, int userns_fd) {
    int tree = img_idmapped_tree(path, userns_fd, 1);
    if (tree < 0) return -1;
    close(tree);
    return 0;
}
// --- end user namespace (userns) ---
