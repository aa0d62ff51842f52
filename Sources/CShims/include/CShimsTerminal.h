// CShimsTerminal: pseudo-terminal pairs. posix_openpt/grantpt/unlockpt/ptsname_r are declared by
// glibc only under _XOPEN_SOURCE/_GNU_SOURCE, which Swift's Glibc module does not define.
#pragma once

/// A new pty pair from /dev/ptmx: posix_openpt(O_RDWR|O_NOCTTY|O_CLOEXEC), grantpt, unlockpt,
/// ptsname_r, and open(2) of the slave with O_RDWR|O_NOCTTY|O_CLOEXEC. Returns 0, or -1 with
/// errno set (nothing left open).
int img_open_pty(int *master, int *slave);
