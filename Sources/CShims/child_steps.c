// See child_steps.h.
#define _GNU_SOURCE
#include "child_steps.h"
#include "CShimsContainer.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <linux/seccomp.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int img_child_drop_bounding_set(uint64_t keep) {
    int last = img_cap_last_cap();
    for (int cap = 0; cap <= last; cap++) {
        if (cap < 64 && (keep & (1ULL << cap))) continue;
        // EINVAL: a capability this kernel does not know.
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) return -1;
    }
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    return 0;
}

int img_child_install_seccomp(const void *program, size_t size) {
    // Several programs in a row, each a 32-bit instruction count and its instructions: the
    // kernel runs every installed filter and takes the strictest answer, which lets a filter
    // with argument checks (ioctl requests) sit beside an allow list that admits ioctl as such.
    const unsigned char *next = program;
    while (size > 0) {
        uint32_t count;
        if (size < sizeof count) { errno = EINVAL; return -1; }
        memcpy(&count, next, sizeof count);
        next += sizeof count;
        size -= sizeof count;
        if (count == 0 || count > BPF_MAXINSNS || (size_t)count * sizeof(struct sock_filter) > size) {
            errno = EINVAL;
            return -1;
        }
        struct sock_fprog filter;
        filter.len = (unsigned short)count;
        filter.filter = (struct sock_filter *)(void *)next;
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter, 0, 0) < 0) return -1;
        next += (size_t)count * sizeof(struct sock_filter);
        size -= (size_t)count * sizeof(struct sock_filter);
    }
    return 0;
}

int img_child_chdir_beneath_root(const char *path) {
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) return -1;
    while (*path == '/') path++;
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    long fd;
    do { fd = syscall(SYS_openat2, root, *path ? path : ".", &how, sizeof how); } while (fd < 0 && errno == EINTR);
    int saved = errno;
    close(root);
    if (fd < 0) { errno = saved; return -1; }
    int r = fchdir((int)fd);
    saved = errno;
    close((int)fd);
    errno = saved;
    return r;
}

static const char *env_value(const char *const *envp, const char *name) {
    size_t n = strlen(name);
    for (; envp && *envp; envp++)
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=') return *envp + n + 1;
    return NULL;
}

void img_child_exec(const char *const *argv, const char *const *envp) {
    const char *file = argv[0];
    if (strchr(file, '/')) {
        execve(file, (char *const *)argv, (char *const *)envp);
        return;
    }
    const char *path = env_value(envp, "PATH");
    if (!path) path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    int saved = ENOENT;
    size_t file_length = strlen(file);
    for (const char *p = path;;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char candidate[512];
        if (n > 0 && n + file_length + 2 < sizeof candidate) {
            memcpy(candidate, p, n);
            candidate[n] = '/';
            memcpy(candidate + n + 1, file, file_length + 1);
            execve(candidate, (char *const *)argv, (char *const *)envp);
            // Keep the first error that says more than "not here" (EACCES, ENOEXEC ...).
            if (errno != ENOENT && errno != ENOTDIR && saved == ENOENT) saved = errno;
        }
        if (!end) break;
        p = end + 1;
    }
    errno = saved;
}

pid_t img_child_clone(int (*child)(void *), int flags, void *arg, int *error_pipe_slot, int *error_fd) {
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) < 0) return -1;
    size_t stack_size = 1 << 20;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        int saved = errno;
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        errno = saved;
        return -1;
    }
    // The child gets a copy of the address space, the slot included, before the parent resets it.
    *error_pipe_slot = pipe_fds[1];
    pid_t pid = clone(child, (char *)stack + stack_size, flags, arg);
    int saved = errno;
    *error_pipe_slot = -1;
    close(pipe_fds[1]);
    // Without CLONE_VM the child runs on its own copy of the stack.
    munmap(stack, stack_size);
    if (pid < 0) {
        close(pipe_fds[0]);
        errno = saved;
        return -1;
    }
    *error_fd = pipe_fds[0];
    return pid;
}
