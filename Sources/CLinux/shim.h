// Linux interfaces that Swift's Glibc module does not import: signalfd, eventfd,
// renameat2(RENAME_EXCHANGE) and sync_file_range, which glibc declares only
// under _GNU_SOURCE, cachestat (no glibc wrapper before 2.39), statfs's
// filesystem type, openat2 (no glibc wrapper), prctl and a crash marker.
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

#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif

/// The page cache's state of a byte range (cachestat(2), Linux 6.5): pages
/// cached, dirty and under writeback. 0, or -1 with errno (ENOSYS before 6.5).
static inline int jf_cachestat(int fd, unsigned long long offset, unsigned long long nbytes,
                               unsigned long long *cached, unsigned long long *dirty, unsigned long long *writeback) {
    struct { unsigned long long off, len; } range = { offset, nbytes };
    struct { unsigned long long nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted; } cs;
    if (syscall(__NR_cachestat, fd, &range, &cs, 0) != 0) return -1;
    *cached = cs.nr_cache;
    *dirty = cs.nr_dirty;
    *writeback = cs.nr_writeback;
    return 0;
}
#include <sys/vfs.h>

/// The filesystem's magic number (statfs's f_type) of an open file, or of a
/// path; -1 with errno when it cannot be asked.
static inline long long jf_fs_type(int fd) {
    struct statfs st;
    return fstatfs(fd, &st) == 0 ? (long long)st.f_type : -1;
}
static inline long long jf_path_fs_type(const char *path) {
    struct statfs st;
    return statfs(path, &st) == 0 ? (long long)st.f_type : -1;
}
#include <linux/openat2.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <signal.h>
#include <string.h>

/// Opens `path` relative to `dirfd` the way nothing from outside can redirect:
/// the kernel refuses any resolution that leaves `dirfd` (`..`, an absolute
/// path) or crosses a symbolic link anywhere in the path (openat2, Linux 5.6).
/// `mode` is used only with O_CREAT. -1 with errno (EXDEV, ELOOP...) otherwise.
static inline int jf_open_beneath(int dirfd, const char *path, int flags, unsigned int mode) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)flags;
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/// No core file, and no ptrace or /proc/<pid>/mem by other unprivileged
/// processes: the daemon's memory holds tokens. (prctl is variadic.)
static inline int jf_forbid_core_dumps(void) {
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) != 0) return -1;
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/// The crash marker: a word in a shared file mapping that a fatal signal's
/// handler sets before the signal takes its course (memory stores are
/// async-signal-safe, and a MAP_SHARED page outlives the process).
struct jf_crash_state {
    volatile unsigned char *_Nullable word;
    int thread_slot;
    struct sigaction previous[65];
};

/// The job a worker thread works for (`kind/id`), or none: a crash on that
/// thread is that job's, whatever the engine thread was doing.
struct jf_thread_job {
    unsigned short len;
    char key[478];
};

static inline struct jf_thread_job *jf_thread_job(void) {
    static __thread struct jf_thread_job job;
    return &job;
}

/// Says which job the calling thread works for (len 0: none).
static inline void jf_crash_set_thread_job(const char *_Nullable key, int len) {
    struct jf_thread_job *j = jf_thread_job();
    if (key == NULL || len < 0) len = 0;
    if (len > (int)sizeof j->key) len = (int)sizeof j->key;
    if (len > 0) memcpy(j->key, key, (size_t)len);
    j->len = (unsigned short)len;
}

/// One state for the process: a function-local static, because Swift emits
/// no storage for a static variable declared in an imported header.
static inline struct jf_crash_state *jf_crash(void) {
    static struct jf_crash_state state;
    return &state;
}

static void jf_crash_handler(int sig, siginfo_t *info, void *context) {
    (void)context;
    struct jf_crash_state *s = jf_crash();
    if (s->word) {
        struct jf_thread_job *j = jf_thread_job();
        if (j->len > 0) {
            // The crashing thread works for a job of its own: its slot says which.
            memcpy((unsigned char *)s->word + s->thread_slot + 2, j->key, j->len);
            memcpy((unsigned char *)s->word + s->thread_slot, &j->len, 2);
        }
        *s->word = (unsigned char)sig;
    }
    // The previous disposition (the default, or Swift's backtracer) takes it
    // from here: a fault of the instruction itself (SIGILL from a Swift trap,
    // SIGSEGV, SIGBUS, SIGFPE with si_code > 0) happens again when it runs
    // again, with its address intact; anything else (kill, abort, a trap
    // that has moved past, SIGSYS) is raised again.
    sigaction(sig, &s->previous[sig], NULL);
    int refaults = (sig == SIGILL || sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE) && info != NULL && info->si_code > 0;
    if (!refaults) raise(sig);
}

/// Installs the handler for the signals a crash or a watchdog kill brings
/// (once per process; later calls only move the marker to `word`). The
/// handler sets `word[0]` to the signal, and writes a worker thread's job
/// (length, then key) at `word + thread_slot`.
static inline int jf_install_crash_marker(unsigned char *word, int thread_slot) {
    static const int sigs[] = {SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGSYS};
    struct jf_crash_state *s = jf_crash();
    // Installed once: a second install would record this handler as the
    // previous one, and a crash would then re-raise into itself for ever.
    int installed = s->word != NULL;
    s->thread_slot = thread_slot;
    s->word = word;
    if (installed) return 0;
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = jf_crash_handler;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        if (sigaction(sigs[i], &sa, &s->previous[sigs[i]]) != 0) return -1;
    }
    return 0;
}
/// A descriptor that becomes readable when process `pid` exits (Linux 5.3):
/// waiting for a child with a deadline, without polling its status.
static inline int jf_pidfd_open(int pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

#include <spawn.h>
#include <errno.h>

/// Closes every descriptor from `from` up in the child (glibc 2.34).
static inline int jf_spawn_closefrom(posix_spawn_file_actions_t *fa, int from) {
    return posix_spawn_file_actions_addclosefrom_np(fa, from);
}

/// Starts an `on_complete` hook: `path` (absolute, no PATH search) with
/// `argv` and `envp`, stdin from /dev/null, stdout and stderr into one
/// pipe whose read end (non-blocking, close-on-exec) is put in `*out`, no
/// other descriptor of the daemon, default signal dispositions and an
/// empty signal mask (the daemon blocks and ignores some), and its own
/// process group, so that a timeout can kill it with its children.
/// Returns the pid, or -errno.
static inline int jf_spawn_hook(const char *path, char *const argv[], char *const envp[], int *out) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return -errno;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, path, &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(fds[1]);
    if (rc != 0) { close(fds[0]); return -rc; }
    int flags = fcntl(fds[0], F_GETFL);
    fcntl(fds[0], F_SETFL, flags | O_NONBLOCK);
    *out = fds[0];
    return pid;
}

#endif
