// Linux interfaces that Swift's Glibc module does not import: signalfd, eventfd, and
// renameat2(RENAME_EXCHANGE) and sync_file_range, which glibc declares only
// under _GNU_SOURCE.
#ifndef JOBFETCH_CLINUX_SHIM_H
#define JOBFETCH_CLINUX_SHIM_H
#include <sys/signalfd.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fcntl.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/// Swaps two paths atomically: both exist before and after. -1 with errno
/// (EINVAL where the filesystem cannot) otherwise.
static inline int jf_rename_exchange(const char *a, const char *b) {
    return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
}

#ifndef SYNC_FILE_RANGE_WAIT_BEFORE
#define SYNC_FILE_RANGE_WAIT_BEFORE 1
#define SYNC_FILE_RANGE_WRITE 2
#define SYNC_FILE_RANGE_WAIT_AFTER 4
#endif

/// Starts or waits for the writeback of a byte range without a full fsync.
static inline int jf_sync_file_range(int fd, long long offset, long long nbytes, unsigned int flags) {
    return (int)syscall(SYS_sync_file_range, fd, offset, nbytes, flags);
}
#endif
