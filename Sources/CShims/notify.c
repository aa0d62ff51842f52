// sd_notify(3) datagrams for `imagectl run`: the container's notification socket and the
// sender towards imagectl's own service manager. See CShimsNotify.h.
//
// The sender is written by hand rather than taken from libsystemd (sd_notify): it is one
// socket + sendto of a datagram, and imagectl links no libsystemd (systemd is not even PID 1
// on the build machines); the protocol is documented in sd_notify(3).
#define _GNU_SOURCE
#include "CShimsNotify.h"
#include "socket_message.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int img_notify_socket(void) {
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/// Fills `address` for `path` ("/..." or "@..." for the abstract namespace); returns the
/// address length for bind/sendto, or 0 and sets errno.
static socklen_t fill_address(struct sockaddr_un *address, const char *path) {
    memset(address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n == 0 || (path[0] != '/' && path[0] != '@')) { errno = EAFNOSUPPORT; return 0; }
    if (n > sizeof address->sun_path - (path[0] == '/' ? 1 : 0)) { errno = ENAMETOOLONG; return 0; }
    memcpy(address->sun_path, path, n);
    if (path[0] == '@') {
        // Abstract: a leading NUL, and the length counts exactly the name's bytes.
        address->sun_path[0] = 0;
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

int img_notify_bind(int fd) {
    // Runs in the container child (after pivot_root, so every path is the container's own):
    // system calls only.
    if (mkdir("/run/host", 0755) < 0 && errno != EEXIST) return -1;
    struct sockaddr_un address;
    socklen_t length = fill_address(&address, IMG_NOTIFY_SOCKET_PATH);
    if (length == 0) return -1;
    (void)unlink(IMG_NOTIFY_SOCKET_PATH);
    return bind(fd, (const struct sockaddr *)&address, length);
}

ssize_t img_notify_receive(int fd, char *buffer, size_t capacity, pid_t *sender) {
    *sender = 0;
    if (capacity < 2) { errno = EINVAL; return -1; }
    struct iovec iov = {buffer, capacity - 1};
    union {
        char bytes[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 16)];
        struct cmsghdr align;
    } control;
    struct msghdr message;
    img_message_init(&message, &iov, control.bytes, sizeof control.bytes);
    ssize_t n;
    do { n = recvmsg(fd, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&message); h; h = CMSG_NXTHDR(&message, h)) {
        if (h->cmsg_level != SOL_SOCKET) continue;
        if (h->cmsg_type == SCM_CREDENTIALS && h->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
            struct ucred credentials;
            memcpy(&credentials, CMSG_DATA(h), sizeof credentials);
            *sender = credentials.pid;
        } else if (h->cmsg_type == SCM_RIGHTS) {
            // Descriptors (sd_notify's FDSTORE=1) are not kept: close them.
            size_t count = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; i++) {
                int passed;
                memcpy(&passed, CMSG_DATA(h) + i * sizeof(int), sizeof passed);
                close(passed);
            }
        }
    }
    if (message.msg_flags & MSG_TRUNC) { errno = EMSGSIZE; return -1; }
    buffer[n] = 0;
    return n;
}

int img_same_pid_namespace(pid_t pid, pid_t leader) {
    if (pid <= 0 || leader <= 0) return 0;
    char path[64];
    struct stat a, b;
    snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)pid);
    if (stat(path, &a) < 0) return 0;
    snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)leader);
    if (stat(path, &b) < 0) return 0;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int img_notify_send(const char *address_text, const char *message, size_t length) {
    struct sockaddr_un address;
    socklen_t address_length = fill_address(&address, address_text);
    if (address_length == 0) return -1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    ssize_t n;
    do {
        n = sendto(fd, message, length, MSG_NOSIGNAL, (const struct sockaddr *)&address, address_length);
    } while (n < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)length ? 0 : -1;
}
