// The container child of `imagectl run`: namespaces, cgroups, the set-up plan (run by setup.c),
// the user-namespace hand-over, pivot_root, host name, console, limits, the payload. See
// CShimsContainer.h for why this is C made by clone().
//
// Rules inside the child (it is a copy of a multi-threaded process): only system calls and the
// small string helpers of child_steps.c; no malloc, no stdio, no locale.
#define _GNU_SOURCE
#include "CShimsContainer.h"
#include "child_steps.h"
#include "CShims.h"
#include "CShimsNotify.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void join_cgroups(const struct img_container_config *c) {
    for (const char *const *dir = c->cgroup_directories; dir && *dir; dir++) {
        char path[512] = "";
        img_append(path, sizeof path, *dir);
        if (img_append(path, sizeof path, "/cgroup.procs") < 0) { errno = ENAMETOOLONG; img_child_die("join cgroup", *dir); }
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0) img_child_die("open", path);
        if (write(fd, "0", 1) != 1) img_child_die("join cgroup", *dir);
        close(fd);
    }
    // With a user namespace the cgroup namespace is made later, owned by it (enter_user_namespace).
    if (!c->userns && unshare(CLONE_NEWCGROUP) < 0) img_child_die("unshare", "cgroup namespace");
}

static void enter_root(int rootfd) {
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then leaves
    // only the new root (pivot_root(2), NOTES).
    if (fchdir(rootfd) < 0) img_child_die("fchdir", "container root");
    if (syscall(SYS_pivot_root, ".", ".") < 0) img_child_die("pivot_root", NULL);
    if (umount2(".", MNT_DETACH) < 0) img_child_die("umount", "old root");
    if (chdir("/") < 0) img_child_die("chdir", "/");
    close(rootfd);
}

static void loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) img_child_die("socket", "loopback");
    struct ifreq request;
    memset(&request, 0, sizeof request);
    memcpy(request.ifr_name, "lo", 3);
    if (ioctl(s, SIOCGIFFLAGS, &request) < 0) img_child_die("SIOCGIFFLAGS", "lo");
    request.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &request) < 0) img_child_die("SIOCSIFFLAGS", "lo");
    close(s);
}

/// --rlimit=, --oom-score-adjust=, --cpu-affinity=, --personality=, set while still root (raising
/// a hard limit needs CAP_SYS_RESOURCE) and before the payload or the stub init forks.
static void apply_process_limits(const struct img_container_config *c) {
    for (size_t i = 0; i < c->resource_limit_count; i++) {
        struct rlimit limit = {(rlim_t)c->resource_limits[i].soft, (rlim_t)c->resource_limits[i].hard};
        if (syscall(SYS_prlimit64, 0, c->resource_limits[i].resource, &limit, NULL) < 0) img_child_die("setrlimit", NULL);
    }
    if (c->oom_score_adjust_set) {
        char value[24];
        img_format_int(value, c->oom_score_adjust);
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd < 0) img_child_die("open", "/proc/self/oom_score_adj");
        if (write(fd, value, strlen(value)) < 0) img_child_die("write", "/proc/self/oom_score_adj");
        close(fd);
    }
    if (c->cpu_mask_words && syscall(SYS_sched_setaffinity, 0, c->cpu_mask_words * sizeof(uint64_t), c->cpu_mask) < 0)
        img_child_die("sched_setaffinity", NULL);
    if (c->personality_set && syscall(SYS_personality, c->personality) < 0) img_child_die("personality", NULL);
}

/// Limits the effective, permitted and inheritable sets to `keep` (for the stub init, which never
/// execs and so would otherwise keep every capability).
static void limit_capabilities(uint64_t keep) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    data[0].effective = data[0].permitted = (uint32_t)keep;
    data[1].effective = data[1].permitted = (uint32_t)(keep >> 32);
    if (syscall(SYS_capset, &header, data) < 0) img_child_die("capset", NULL);
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

/// --as-pid2: PID 1 stays as the stub init; returns in the payload, PID 2.
static void split_off_stub_init(const struct img_container_config *c) {
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    long pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) img_child_die("clone", "payload");
    if (pid > 0) {
        // The stub init keeps no capabilities and no way back to the host binary it runs:
        // non-dumpable since child_main began, and the kernel refuses writes to a running
        // executable (ETXTBSY).
        img_child_close_error_pipe();
        limit_capabilities(1ULL << CAP_KILL);  // to signal a payload of another uid
        (void)prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        if (img_child_install_seccomp(c->payload.seccomp_program, c->payload.seccomp_program_size) < 0) _exit(127);
        (void)syscall(SYS_close_range, 3U, ~0U, 0U);
        stub_init((pid_t)pid);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/// A pidfd of imagectl, open only while img_container_start clones (the child inherits it).
static int imagectl_pidfd = -1;

/// The container goes when imagectl goes, whatever kills it (kill -9 included): SIGKILL on the
/// parent's death; and if imagectl died before the prctl took effect (a race getppid() cannot
/// see: it is 0 in a new PID namespace), its pidfd already polls readable, so end now. The
/// container's mount namespace, and with it the last use of the image's loop devices, goes with
/// the container.
static void die_with_imagectl(void) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) img_child_die("PR_SET_PDEATHSIG", NULL);
    if (imagectl_pidfd >= 0) {
        struct pollfd p = {imagectl_pidfd, POLLIN, 0};
        if (poll(&p, 1, 0) > 0) _exit(127);
        close(imagectl_pidfd);
        imagectl_pidfd = -1;
    }
}

/// Waits for imagectl's one byte on `fd`: the host side is ready. (EOF instead: imagectl gave
/// up on the start; this copy holds the other end too, so EOF is not the signal.)
static void await_proceed(int fd) {
    if (fd < 0) return;
    char byte;
    ssize_t n;
    do { n = read(fd, &byte, 1); } while (n < 0 && errno == EINTR);
    if (n != 1) { errno = n < 0 ? errno : ECANCELED; img_child_die("wait for imagectl", NULL); }
    close(fd);
}

// --- user namespace (userns) ---------------------------------------------------------------------
// --private-users= (see Sources/Runner/UserNamespace.swift for the range and ownership decisions,
// Sources/Runner/SetupPlan.swift for which operation runs on which side).
//
// Design, as nspawn splits it between its outer and inner child:
//  * The Swift parent makes the user namespace first (img_userns_create: a helper cloned with
//    CLONE_NEWUSER that only waits, whose uid_map/gid_map "0 BASE SIZE" the parent writes as host
//    root, and whose /proc/PID/ns/user is kept open). The fd serves both the ID-mapped mounts
//    (MOUNT_ATTR_IDMAP needs a user namespace fd) and the child's setns().
//  * The container child is cloned with CLONE_NEWNS only, in the host user namespace, and runs
//    the plan's IMG_PHASE_CHILD operations: what needs host privileges (the root, /dev with
//    mknod'ed nodes, /sys of the host's network namespace, /run, /tmp, the --bind/--tmpfs/
//    --overlay mounts), everything it creates owned by BASE; and the limits.
//  * It then moves the root onto / of its mount namespace and chroots there (nspawn's
//    mount_move_root: the host's mounts stay beneath it, unreachable, so that the copy made for
//    the user namespace still holds a fully visible /proc and /sys, which the kernel requires
//    before PID 1 may mount its own, mount_too_revealing), joins the user namespace, becomes its
//    root (raw setresuid: glibc's setxid wrappers hang in a clone of a threaded process),
//    unshares new mount, PID, UTS, IPC, cgroup (and network) namespaces, which are therefore
//    owned by the user namespace, and clones the container's PID 1 with CLONE_PARENT, so that it
//    is imagectl's own child; the PID goes to imagectl over `userns_pid_pipe` and this
//    intermediate process exits.
//  * PID 1 runs the IMG_PHASE_PID1 operations (/proc of its PID namespace, /sys with a private
//    network, the cgroup file systems of its cgroup namespace, devpts, /dev/shm, /dev/mqueue, the
//    /etc files written as the container's root), then continues as without a user namespace.
//    The copied mounts are locked, so it cannot pivot_root: it stays chrooted.

/// Leaves the host's user namespace as described above; returns in the container's PID 1 with an
/// O_PATH fd of its root. The intermediate process never returns.
static int enter_user_namespace(int rootfd, const struct img_container_config *c) {
    if (fchdir(rootfd) < 0) img_child_die("fchdir", "container root");
    if (mount(".", "/", NULL, MS_MOVE, NULL) < 0) img_child_die("mount", "move the root onto /");
    if (chroot(".") < 0) img_child_die("chroot", "container root");
    if (chdir("/") < 0) img_child_die("chdir", "/");
    close(rootfd);

    if (setns(c->userns_fd, CLONE_NEWUSER) < 0) img_child_die("setns", "user namespace");
    if (syscall(SYS_setgroups, 0, NULL) < 0) img_child_die("setgroups", "user namespace");
    if (syscall(SYS_setresgid, 0, 0, 0) < 0) img_child_die("setresgid", "user namespace root");
    if (syscall(SYS_setresuid, 0, 0, 0) < 0) img_child_die("setresuid", "user namespace root");
    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP;
    if (c->private_network) flags |= CLONE_NEWNET;
    if (unshare(flags) < 0) img_child_die("unshare", "namespaces of the user namespace");
    long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) img_child_die("clone", "container PID 1");
    if (pid > 0) {
        pid_t host_pid = (pid_t)pid;
        if (write(c->userns_pid_pipe, &host_pid, sizeof host_pid) != sizeof host_pid) {
            (void)kill(host_pid, SIGKILL);
            img_child_die("write", "PID of the container");
        }
        _exit(0);
    }
    // PID 1 of the new PID namespace, imagectl's child.
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    close(c->userns_pid_pipe);
    // The root (and cwd) moved into this mount namespace with the unshare.
    rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) img_child_die("open", "/ in the user namespace");
    return rootfd;
}
// --- end user namespace (userns) ---

static int child_main(void *arg) {
    const struct img_container_config *c = arg;
    // Non-dumpable before anything of the container can see this process (SECURITY 18, runc
    // CVE-2019-5736): until it execs the payload it runs imagectl's executable, and the -a stub
    // init never execs. /proc/N/exe, /proc/N/map_files and /proc/N/mem of a non-dumpable process
    // need CAP_SYS_PTRACE in the user namespace that owns its memory, the host's, which a
    // container with a user namespace never has. (Without one, the container's root has it: no
    // boundary, as the README says.) The payload's exec makes it dumpable again.
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) img_child_die("PR_SET_DUMPABLE", NULL);
    img_child_reset_signals();
    die_with_imagectl();
    // First, so that /sys (and with a user namespace its sysfs) is the joined namespace's.
    if (c->netns_fd > 2 && setns(c->netns_fd, CLONE_NEWNET) < 0) img_child_die("setns", "the --network-namespace-path= namespace");
    join_cgroups(c);
    // Mounts of the host propagate in, none out; the plan makes the container's root private, so
    // imagectl's later detach of an image's mounts (RootSession.containerStarted) stays outside.
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) img_child_die("mount", "make / a slave");
    int rootfd = -1;
    img_setup_run(c->ops, c->op_count, IMG_PHASE_CHILD, c->directory, c->userns ? c->userns_fd : -1, &rootfd);
    if (c->userns) {
        apply_process_limits(c);  // on the host side: raising a hard limit needs host capabilities
        rootfd = enter_user_namespace(rootfd, c);
        img_setup_run(c->ops, c->op_count, IMG_PHASE_PID1, c->directory, -1, &rootfd);
        close(c->userns_fd);
        close(rootfd);  // already the root, and its mounts cannot be pivoted
        if (chdir("/") < 0) img_child_die("chdir", "/");
    } else {
        enter_root(rootfd);
    }
    // Non-fatal: a read-only /run only costs the readiness.
    if (c->notify_socket > 2) (void)img_notify_bind(c->notify_socket);
    if (sethostname(c->hostname, strlen(c->hostname)) < 0) img_child_die("sethostname", c->hostname);
    if (c->private_network) loopback_up();
    await_proceed(c->proceed_fd);
    if (setsid() < 0) img_child_die("setsid", NULL);
    if (c->console) img_child_take_console(c->console_socket, "/dev/pts/ptmx", 1);
    if (!c->userns) apply_process_limits(c);
    if (c->as_pid2) split_off_stub_init(c);
    img_child_exec_payload(&c->payload);
}

pid_t img_container_start(const struct img_container_config *config, int *error_fd) {
    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
    if (config->private_network) flags |= CLONE_NEWNET;
    // userns: the other namespaces are made inside the user namespace (enter_user_namespace).
    if (config->userns) flags = CLONE_NEWNS | SIGCHLD;
    imagectl_pidfd = img_pidfd_open(getpid(), 0);  // see die_with_imagectl
    pid_t pid = img_child_clone(child_main, flags, (void *)config, error_fd);
    int saved = errno;
    if (imagectl_pidfd >= 0) close(imagectl_pidfd);
    imagectl_pidfd = -1;
    errno = saved;
    return pid;
}
