#include <seccomp.h>
#include <linux/filter.h>
#include <sys/ioctl.h>
