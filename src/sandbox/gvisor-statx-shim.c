/*
 * Preloaded into every dynamically linked program under gVisor (via the
 * sandbox's /etc/ld.so.preload).
 *
 * The runsc in Debian 12 (2022 build) rejects statx(2) with EINVAL whenever
 * AT_NO_AUTOMOUNT is set, and coreutils (ls, stat, cp, ...) always sets it,
 * so they fail on every file. The flag only matters for automount points,
 * which do not exist in the sandbox: dropping it is exact.
 *
 * Build: cc -O2 -shared -fPIC -o libkiln-statx.so gvisor-statx-shim.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int statx(int dirfd, const char *restrict path, int flags, unsigned int mask, struct statx *restrict buf) {
    return (int)syscall(SYS_statx, dirfd, path, flags & ~AT_NO_AUTOMOUNT, mask, buf);
}
