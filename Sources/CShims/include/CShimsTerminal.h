// CShimsTerminal: pseudo-terminals and consoles: pty pairs (posix_openpt/grantpt/unlockpt/
// ptsname_r are declared by glibc only under _XOPEN_SOURCE/_GNU_SOURCE, which Swift's Glibc
// module does not define), window sizes, SIGWINCH, and passing a pty master over a socket.
#pragma once

/// A new pty pair from /dev/ptmx: posix_openpt(O_RDWR|O_NOCTTY|O_CLOEXEC), grantpt, unlockpt,
/// ptsname_r, and open(2) of the slave with O_RDWR|O_NOCTTY|O_CLOEXEC. Returns 0, or -1 with
/// errno set (nothing left open).
int img_open_pty(int *master, int *slave);

/// Sends `fd` over the AF_UNIX `socket` (SCM_RIGHTS, one byte of data); -1 and errno on failure.
int img_send_fd(int socket, int fd);

/// The window size of the terminal `fd` (TIOCGWINSZ); -1 and errno when it is none.
int img_terminal_size(int fd, unsigned short *rows, unsigned short *columns);

/// Sets the window size of the terminal `fd` (TIOCSWINSZ); -1 and errno on failure.
int img_set_terminal_size(int fd, unsigned short rows, unsigned short columns);

/// The read end of a non-blocking pipe that gets one byte per SIGWINCH, from a process-wide
/// handler installed on the first call (async-signal-safe: it only writes). -1 and errno on failure.
int img_winch_pipe(void);

/// Receives one file descriptor sent with SCM_RIGHTS on `socket`; -1 and errno on failure.
int img_receive_fd(int socket);
