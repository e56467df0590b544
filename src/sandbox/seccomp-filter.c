/*
 * Kiln build-sandbox seccomp filter generator.
 *
 * Writes a compiled classic-BPF program to stdout; bubblewrap loads it with
 * `--seccomp FD` just before it execs the untrusted command (so bwrap's own
 * mount/clone calls are not affected).
 *
 * It is a deny-list on top of what the namespaces already isolate: it closes
 * the kernel attack surface a compiler never needs (ptrace, bpf, io_uring,
 * keyrings, mount APIs, new namespaces, perf, userfaultfd, modules, LDT
 * edits, pidfds, personality changes, ...) and every socket family but AF_UNIX. SANDBOX.md measured that cargo (with
 * build.rs), clang and node run normally under exactly this set.
 *
 * Syscalls of a foreign architecture (32-bit int 0x80, x32) hit the default
 * "bad arch" action of libseccomp, which kills the process: nothing a
 * toolchain here needs, and the classic way around a native-only filter.
 *
 * `kiln-seccomp fetch` writes the profile of the dependency fetch step
 * (src/fetch): the same rules, except that AF_INET and AF_INET6 sockets are
 * allowed too. That step runs in its own empty network namespace whose only
 * interface is loopback, where Kiln's forwarder bridges 127.0.0.1 to the
 * filtering proxy's unix socket (docs/decisions/0010-fetch-phase.md).
 *
 * Build: cc -O2 -o kiln-seccomp seccomp-filter.c -lseccomp
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

/* Denied outright with EPERM: programs see "operation not permitted" and may
 * fall back, instead of dying on SIGSYS in the middle of a build. */
static const char *const denied[] = {
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "keyctl", "add_key", "request_key",
    "mount", "umount", "umount2", "pivot_root", "chroot",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "unshare", "setns",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "create_module", "get_kernel_syms", "query_module",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "fanotify_init",
    "syslog", "vhangup", "iopl", "ioperm", "uselib", "nfsservctl",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname",
    /* modify_ldt: 16-bit segments, a long history of kernel bugs; pidfd_open:
     * a handle on another process (signals, pidfd_getfd) no compiler needs. */
    "modify_ldt", "pidfd_open",
};

static const unsigned long new_namespace_flags[] = {
    CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
    CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP, CLONE_NEWTIME,
};

static int add(scmp_filter_ctx ctx, uint32_t action, const char *name,
               unsigned int argc, const struct scmp_arg_cmp *args) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) return 0; /* not on this architecture: nothing to deny */
    int rc = seccomp_rule_add_array(ctx, action, nr, argc, args);
    if (rc < 0) fprintf(stderr, "kiln-seccomp: rule for %s: %s\n", name, strerror(-rc));
    return rc;
}

/* Fetch profile: deny every family but AF_UNIX, AF_INET and AF_INET6. A rule
 * compares an argument once, so the gaps are denied one range at a time. */
static int deny_sockets_but_inet(scmp_filter_ctx ctx, const char *name) {
    int rc = 0;
    struct scmp_arg_cmp unspec = SCMP_A0(SCMP_CMP_EQ, AF_UNSPEC);
    struct scmp_arg_cmp above = SCMP_A0(SCMP_CMP_GT, AF_INET6);
    rc |= add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), name, 1, &unspec);
    rc |= add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), name, 1, &above);
    for (unsigned long family = AF_INET + 1; family < AF_INET6; family++) {
        struct scmp_arg_cmp gap = SCMP_A0(SCMP_CMP_EQ, family);
        rc |= add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), name, 1, &gap);
    }
    return rc;
}

static int add_rules(scmp_filter_ctx ctx, int fetch) {
    int rc = 0;
    for (size_t i = 0; i < sizeof denied / sizeof *denied; i++)
        rc |= add(ctx, SCMP_ACT_ERRNO(EPERM), denied[i], 0, NULL);

    /* clone3 passes its flags in a struct that seccomp cannot inspect; ENOSYS
     * makes glibc fall back to clone(), whose flags we can check. */
    rc |= add(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL);

    /* clone(2) with any CLONE_NEW* flag: one rule per flag, since a rule's
     * masked comparison can only test "all bits of the mask set". */
    for (size_t i = 0; i < sizeof new_namespace_flags / sizeof *new_namespace_flags; i++) {
        unsigned long flag = new_namespace_flags[i];
        struct scmp_arg_cmp cmp = SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag);
        rc |= add(ctx, SCMP_ACT_ERRNO(EPERM), "clone", 1, &cmp);
    }

    /* personality: only the query (0xffffffff) stays; changing it can turn
     * off ASLR (ADDR_NO_RANDOMIZE) or make data executable (READ_IMPLIES_EXEC). */
    struct scmp_arg_cmp not_query = SCMP_A0(SCMP_CMP_NE, 0xffffffffUL);
    rc |= add(ctx, SCMP_ACT_ERRNO(EPERM), "personality", 1, &not_query);

    /* Terminal injection; the command is in its own session anyway. The
     * request number is an int, so compare the low 32 bits only. */
    struct scmp_arg_cmp tiocsti = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, TIOCSTI);
    rc |= add(ctx, SCMP_ACT_ERRNO(EPERM), "ioctl", 1, &tiocsti);
#ifdef TIOCLINUX
    struct scmp_arg_cmp tioclinux = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, TIOCLINUX);
    rc |= add(ctx, SCMP_ACT_ERRNO(EPERM), "ioctl", 1, &tioclinux);
#endif

    /* Sockets: only AF_UNIX (local IPC of build tools, e.g. make's jobserver
     * alternatives and node's internals). Everything else, including netlink
     * and packet sockets, fails like on a kernel built without it. */
    struct scmp_arg_cmp not_unix = SCMP_A0(SCMP_CMP_NE, AF_UNIX);
    if (fetch) rc |= deny_sockets_but_inet(ctx, "socket");
    else rc |= add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), "socket", 1, &not_unix);
    rc |= add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), "socketpair", 1, &not_unix);
    return rc;
}

int main(int argc, char **argv) {
    int fetch = argc > 1 && strcmp(argv[1], "fetch") == 0;
    if (argc > 1 && !fetch) {
        fprintf(stderr, "kiln-seccomp: unknown profile %s\n", argv[1]);
        return 2;
    }
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL) {
        fprintf(stderr, "kiln-seccomp: seccomp_init failed\n");
        return 1;
    }
    int ok = add_rules(ctx, fetch) == 0; /* add() already printed what failed */
    if (ok) {
        int rc = seccomp_export_bpf(ctx, 1);
        if (rc < 0) fprintf(stderr, "kiln-seccomp: export: %s\n", strerror(-rc));
        ok = rc == 0;
    }
    seccomp_release(ctx);
    return ok ? 0 : 1;
}
