// CShimsNotify: the sd_notify(3) datagrams of `imagectl run`.
//
// Two directions, as systemd-nspawn has them:
//  - the container's notification socket: an AF_UNIX datagram socket made by imagectl before the
//    clone, bound by the container child at /run/host/notify inside the container (its mount
//    namespace, after pivot_root), read by imagectl with SO_PASSCRED so every message carries the
//    sender's PID;
//  - imagectl's own service manager: a datagram to $NOTIFY_SOCKET of imagectl's environment.
#pragma once

#include <stddef.h>
#include <sys/types.h>

/// Where the payload finds the socket (nspawn's path), also its $NOTIFY_SOCKET.
#define IMG_NOTIFY_SOCKET_PATH "/run/host/notify"

/// Largest message read; a longer one is dropped (systemd's limit for notifications is 4 KiB).
#define IMG_NOTIFY_MESSAGE_MAX 4096

/// socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK) with SO_PASSCRED set (the sender's
/// credentials are attached to every message from then on). Returns the descriptor, or -1 and
/// sets errno.
int img_notify_socket(void);

/// In the container child after pivot_root: mkdir /run/host (0755) and bind `fd` to
/// IMG_NOTIFY_SOCKET_PATH (a stale file there is removed first). Only system calls. Returns 0, or
/// -1 and sets errno.
int img_notify_bind(int fd);

/// recvmsg(2) of one message into `buffer` (capacity `capacity`, NUL-terminated on success).
/// `*sender` gets the sender's PID from SCM_CREDENTIALS (in imagectl's PID namespace), 0 when the
/// message carried none. Descriptors sent along (SCM_RIGHTS) are closed. Returns the length;
/// -1 with errno EAGAIN when nothing is queued, EMSGSIZE when the message was longer than
/// `capacity - 1` (it is dropped), or another errno.
ssize_t img_notify_receive(int fd, char *buffer, size_t capacity, pid_t *sender);

/// Non-zero when process `pid` lives in the same PID namespace as process `leader` (compares the
/// /proc/PID/ns/pid inodes). 0 when it does not or either is gone.
int img_same_pid_namespace(pid_t pid, pid_t leader);

/// sd_notify(3) by hand: one datagram `message` (`length` bytes) to `address`, a socket path
/// ("/...") or an abstract name ("@..."). Returns 0, or -1 and sets errno (EAFNOSUPPORT for an
/// address of another kind, e.g. systemd's "vsock:").
int img_notify_send(const char *address, const char *message, size_t length);
