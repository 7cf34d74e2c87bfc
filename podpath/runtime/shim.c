/*
 * podpath-shim: one per container, in the role of containerd's shim and of the kubelet's
 * restart policy Always.
 *
 *   podpath-shim [--netns PATH] --status FILE --name NAME [--bells DIR] [--grace SECONDS]
 *                [--backoff SECONDS] [--backoff-max SECONDS] -- COMMAND [ARG...]
 *
 * It joins the network namespace bound at PATH, starts COMMAND (the container runtime's
 * command line: nsenter ... unshare --fork ... the container's own command) as its child,
 * holds its stdio (the shim's own stdout and stderr, the container's log), reaps it and
 * writes the container's status to FILE, atomically (a temporary file in the same folder,
 * then rename), when the container starts and when it exits, never in between, and after
 * each write rings every doorbell (FIFO) in DIR, one byte each and never waiting: the node
 * processes sleep on those bells and read the status files again when one rings.
 *
 *   {"name": NAME, "state": "running" | "waiting" | "terminated", "restarts": N,
 *    "pid": the container's first process or null, "started": epoch seconds or null,
 *    "last": null | {"exitCode": N or null, "signal": N or null, "finished": epoch seconds},
 *    "backoffUntil": epoch seconds or null}
 *
 * Whatever the container leaves behind when its first process dies goes with it: the shim is
 * the subreaper of the container's processes outside a PID namespace of their own, and kills
 * the orphans it is given; in a PID namespace shared with the pod (its pause is pid 1 there,
 * and the orphans go to the pause) it kills every process left in the container's own mount
 * namespace, as containerd's shim kills what is left of a container.
 *
 * When the container exits it is started again, after the kubelet's back-off: the first
 * restart at once, then 10 s, doubling up to 300 s, measured from the exit; a container
 * that ran for twice the cap (10 minutes) since its last restart starts again from the
 * beginning of the curve. On SIGTERM (or SIGINT) it sends SIGTERM to the container's
 * first process (SIGKILL at once to a PID namespace's init that has no SIGTERM handler,
 * which the kernel would not deliver SIGTERM to), waits up to the grace period, kills
 * what is left, writes "terminated" and exits without restarting.
 *
 * The container's first process is found by following the command's only child down
 * through the runtime's own programs (nsenter, unshare) to the first process that runs
 * something else. That process is not the shim's child: unshare --fork reaps it, and
 * passes on an exit code but not always the signal that ended it. So the shim stops the
 * programs in between (SIGSTOP: they only wait for their child), waits for the container's
 * exit on a pidfd, reads the exit status of the zombie the container leaves while nobody
 * reaps it (/proc/PID/stat), then lets them go on (SIGCONT). Where that cannot be done
 * (no pidfd), the command's own exit status is reported.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

#define MAX_CHAIN 8
/* How long the shim looks for the container's first process before it takes the deepest
 * process it found (a command that is itself called nsenter or unshare, say). */
#define FIND_LIMIT_S 5.0

static const char *launchers[] = {"nsenter", "unshare", NULL};

static struct {
    const char *netns, *status, *name, *bells;
    double grace, initial, max;
    char **argv;
} opt = {NULL, NULL, NULL, NULL, 30.0, 10.0, 300.0, NULL};

/* what the status file says */
static struct {
    const char *state;
    int restarts;
    pid_t pid;          /* 0: null */
    double started;     /* 0: null */
    int have_last;
    int exit_code;      /* -1: null */
    int signal;         /* 0: null */
    double finished;
    double backoff_until; /* 0: null */
} st = {"waiting", 0, 0, 0, 0, -1, 0, 0, 0};

static char self_comm[32];
static int sfd = -1;

static double now_real(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void say(const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(line, sizeof line, "podpath-shim: %s: ", opt.name);
    if (n < 0 || n >= (int)sizeof line)
        n = 0;
    vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    if (len < sizeof line - 1)
        line[len++] = '\n';
    if (write(2, line, len) < 0) {
        /* the log is gone: nothing to tell it */
    }
}

static void json_string(FILE *out, const char *s) {
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static void mkdirs(const char *dir) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    }
    mkdir(path, 0755);
}

/* One byte to every FIFO in --bells DIR, without waiting: a bell with no reader (ENXIO) or
 * a full one (EAGAIN, rings already wait) is passed by; what is not a FIFO is left alone. */
static void ring_bells(void) {
    if (!opt.bells)
        return;
    DIR *dir = opendir(opt.bells);
    if (!dir)
        return;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        struct stat sb;
        if (entry->d_name[0] == '.' || fstatat(dirfd(dir), entry->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISFIFO(sb.st_mode))
            continue;
        int fd = openat(dirfd(dir), entry->d_name, O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (write(fd, "!", 1) < 0) {
            /* nobody to tell, or already told */
        }
        close(fd);
    }
    closedir(dir);
}

/* The status file, whole or not at all: a temporary file in the same folder, renamed over it. */
static void write_status(void) {
    char dir[PATH_MAX], tmp[PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s", opt.status);
    char *slash = strrchr(dir, '/');
    const char *base = opt.status;
    if (slash) {
        *slash = '\0';
        base = slash + 1;
        mkdirs(dir[0] ? dir : "/");
        snprintf(tmp, sizeof tmp, "%s/.%s.%d.tmp", dir, base, (int)getpid());
    } else {
        snprintf(tmp, sizeof tmp, ".%s.%d.tmp", base, (int)getpid());
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FILE *out = fd < 0 ? NULL : fdopen(fd, "w");
    if (!out) {
        say("cannot write %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    fputs("{\"name\": ", out);
    json_string(out, opt.name);
    fprintf(out, ", \"state\": \"%s\", \"restarts\": %d, \"pid\": ", st.state, st.restarts);
    if (st.pid > 0)
        fprintf(out, "%d", (int)st.pid);
    else
        fputs("null", out);
    fputs(", \"started\": ", out);
    if (st.started > 0)
        fprintf(out, "%.3f", st.started);
    else
        fputs("null", out);
    fputs(", \"last\": ", out);
    if (st.have_last) {
        fputs("{\"exitCode\": ", out);
        if (st.exit_code >= 0)
            fprintf(out, "%d", st.exit_code);
        else
            fputs("null", out);
        fputs(", \"signal\": ", out);
        if (st.signal > 0)
            fprintf(out, "%d", st.signal);
        else
            fputs("null", out);
        fprintf(out, ", \"finished\": %.3f}", st.finished);
    } else {
        fputs("null", out);
    }
    fputs(", \"backoffUntil\": ", out);
    if (st.backoff_until > 0)
        fprintf(out, "%.3f", st.backoff_until);
    else
        fputs("null", out);
    fputs("}\n", out);
    if (fclose(out) != 0) {
        say("cannot write %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return;
    }
    if (rename(tmp, opt.status) != 0) {
        say("cannot rename %s to %s: %s", tmp, opt.status, strerror(errno));
        unlink(tmp);
        return;
    }
    ring_bells();
}

static int read_file(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return (int)n;
}

static int comm_of(pid_t pid, char *comm, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    if (read_file(path, comm, size) < 0)
        return -1;
    comm[strcspn(comm, "\n")] = '\0';
    return 0;
}

static pid_t first_child(pid_t pid) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    if (read_file(path, buf, sizeof buf) <= 0)
        return 0;
    return (pid_t)atoi(buf);
}

/* Follow CHILD's only child down through the runtime's programs. Returns 1 with *LEAF the
 * container's first process and CHAIN[0..*N) the processes above it, or 0 (not there yet)
 * with *LEAF the deepest process found. */
static int find_container(pid_t child, pid_t *leaf, pid_t *chain, int *n) {
    pid_t pid = child;
    *n = 0;
    for (int depth = 0; depth < MAX_CHAIN; depth++) {
        char comm[32];
        *leaf = pid;
        if (comm_of(pid, comm, sizeof comm) != 0)
            return 0;
        int launcher = strcmp(comm, self_comm) == 0; /* forked, not yet the command */
        for (const char **l = launchers; *l && !launcher; l++)
            launcher = strcmp(comm, *l) == 0;
        if (!launcher)
            return 1;
        pid_t next = first_child(pid);
        if (next <= 0)
            return 0;
        chain[(*n)++] = pid;
        pid = next;
    }
    return 0;
}

/* The wait status of PID from its /proc/PID/stat (field 52) while it is a zombie, or -1. */
static int zombie_status(pid_t pid) {
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_file(path, buf, sizeof buf) <= 0)
        return -1;
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || p[2] != 'Z')
        return -1;
    int field = 2; /* the comm just ended */
    for (p++; *p && field < 52; p++) {
        if (*p == ' ')
            field++;
    }
    if (field != 52 || !isdigit((unsigned char)*p))
        return -1;
    return atoi(p);
}

/* PID is its PID namespace's first process and has no SIGTERM handler: the kernel drops a
 * SIGTERM sent to it (sleep as a container's first process). */
static int deaf_init(pid_t pid) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (read_file(path, buf, sizeof buf) <= 0)
        return 0;
    char *nspid = strstr(buf, "\nNSpid:");
    char *caught = strstr(buf, "\nSigCgt:");
    if (!nspid || !caught)
        return 0;
    char *end = strchr(nspid + 1, '\n');
    if (end)
        *end = '\0';
    int words = 0;
    char *last = NULL;
    for (char *tok = strtok(nspid + 7, " \t"); tok; tok = strtok(NULL, " \t")) {
        words++;
        last = tok;
    }
    unsigned long long mask = strtoull(caught + 8, NULL, 16);
    return words > 1 && last && strcmp(last, "1") == 0 && !(mask & (1ULL << (SIGTERM - 1)));
}

static void send(pid_t pid, int pidfd, int sig) {
    if (pidfd >= 0 && syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) == 0)
        return;
    if (pidfd < 0 && pid > 0)
        kill(pid, sig);
}

/* Kill and reap what is left below the shim: orphans of the container's processes that the
 * shim, their subreaper, was given. */
static void kill_leftovers(void) {
    for (int round = 0; round < 50; round++) {
        pid_t pid = first_child(getpid());
        if (pid <= 0)
            break;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

static ino_t ns_inode(pid_t pid, const char *kind) {
    char path[64];
    struct stat info;
    snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)pid, kind);
    return stat(path, &info) == 0 ? info.st_ino : 0;
}

/* Kill what the container left in a PID namespace it shares with its pod (the pause is pid 1
 * there, and the container's orphans go to it, not to the shim): every process in the
 * container's own mount namespace MNT and the pod's network namespace NET, as containerd's
 * shim kills what is left of a container whose first process died. A container with no mount
 * namespace of its own (MNT is the shim's) is left alone: that namespace is the host's. */
static void kill_namespace_leftovers(ino_t mnt, ino_t net) {
    if (!mnt || !net || mnt == ns_inode(getpid(), "mnt"))
        return;
    double until = now_mono() + 2.0;
    for (;;) {
        int found = 0;
        DIR *proc = opendir("/proc");
        struct dirent *entry;
        while (proc && (entry = readdir(proc)) != NULL) {
            pid_t pid = (pid_t)atoi(entry->d_name);
            if (pid <= 0 || pid == getpid())
                continue;
            if (ns_inode(pid, "mnt") == mnt && ns_inode(pid, "net") == net && zombie_status(pid) < 0) {
                kill(pid, SIGKILL);
                found++;
            }
        }
        if (proc)
            closedir(proc);
        if (!found || now_mono() > until)
            return;
        usleep(2000); /* until their parent, the pause, has reaped them */
    }
}

enum { SIG_NONE, SIG_STOP };

/* Read the signals that are waiting: returns SIG_STOP on SIGTERM or SIGINT. Children that
 * exited are reaped here; *CHILD_STATUS gets CHILD's wait status (and CHILD is set to 0). */
static int drain_signals(pid_t *child, int *child_status) {
    struct signalfd_siginfo info;
    int stop = SIG_NONE;
    while (read(sfd, &info, sizeof info) == sizeof info) {
        if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT)
            stop = SIG_STOP;
    }
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (child && *child && pid == *child) {
            *child_status = status;
            *child = 0;
        }
    }
    return stop;
}

static void set_last(int status, double finished) {
    st.have_last = 1;
    st.finished = finished;
    if (WIFSIGNALED(status)) {
        st.exit_code = -1;
        st.signal = WTERMSIG(status);
    } else {
        st.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        st.signal = 0;
    }
}

/* Run the container once. Returns 1 if the shim was told to stop, 0 if the container
 * exited by itself; either way the exit is in st's last. */
static int run_once(void) {
    pid_t me = getpid();
    pid_t child = fork();
    if (child < 0) {
        say("cannot fork: %s", strerror(errno));
        st.have_last = 1;
        st.exit_code = 127;
        st.signal = 0;
        st.finished = now_real();
        return 0;
    }
    if (child == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        /* every signal's default action, as a container runtime gives a container: a signal
         * the shim's own starter ignored (a job started with & ignores SIGINT and SIGQUIT)
         * stays ignored across exec otherwise, and a shell cannot trap it */
        for (int sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP)
                signal(sig, SIG_DFL);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* the container never outlives its shim */
        if (getppid() != me)
            _exit(1);
        execvp(opt.argv[0], opt.argv);
        fprintf(stderr, "podpath-shim: %s: cannot run %s: %s\n", opt.name, opt.argv[0], strerror(errno));
        _exit(127);
    }
    double start = now_mono();
    st.started = now_real();
    pid_t running = child, init = 0, chain[MAX_CHAIN];
    ino_t init_mnt = 0;
    int nchain = 0, pidfd = -1, stopped_chain = 0, child_status = 0;
    int have_init_status = 0, init_status = 0, stopping = 0, delay_ms = 1;
    double deadline = 0;

    for (;;) {
        if (!init && running) {
            pid_t leaf;
            int found = find_container(child, &leaf, chain, &nchain);
            if (found || now_mono() - start > FIND_LIMIT_S) {
                init = leaf;
                if (!found)
                    nchain = 0;
                pidfd = (int)syscall(SYS_pidfd_open, init, 0);
                init_mnt = ns_inode(init, "mnt");
                if (pidfd >= 0 && nchain > 0) {
                    for (int i = 0; i < nchain; i++)
                        kill(chain[i], SIGSTOP);
                    stopped_chain = 1;
                }
                st.state = "running";
                st.pid = init;
                st.backoff_until = 0;
                write_status();
                if (stopping) /* told to stop while it started: now it can be told */
                    send(init, pidfd, deaf_init(init) ? SIGKILL : SIGTERM);
            }
        }
        int timeout = -1;
        if (!init && running) {
            timeout = delay_ms;
            delay_ms = delay_ms < 32 ? delay_ms * 2 : 50;
        }
        if (stopping) {
            int left = (int)((deadline - now_mono()) * 1000) + 1;
            timeout = timeout < 0 || left < timeout ? (left > 0 ? left : 0) : timeout;
        }
        struct pollfd fds[2] = {{sfd, POLLIN, 0}, {pidfd, POLLIN, 0}};
        int n = poll(fds, pidfd >= 0 ? 2 : 1, timeout);
        if (n < 0 && errno != EINTR) {
            say("poll: %s", strerror(errno));
            sleep(1);
        }
        if (pidfd >= 0 && (fds[1].revents & (POLLIN | POLLHUP))) {
            /* the container's first process has exited: read its status before it is reaped */
            int status = init == child ? -1 : zombie_status(init);
            if (status >= 0) {
                init_status = status;
                have_init_status = 1;
            }
            close(pidfd);
            pidfd = -1;
            if (stopped_chain) {
                for (int i = 0; i < nchain; i++)
                    kill(chain[i], SIGCONT);
                stopped_chain = 0;
            }
        }
        if (drain_signals(&running, &child_status) == SIG_STOP && !stopping) {
            stopping = 1;
            deadline = now_mono() + opt.grace;
            if (init)
                send(init, pidfd, deaf_init(init) ? SIGKILL : SIGTERM);
        }
        if (!running)
            break;
        if (stopping && now_mono() >= deadline) {
            if (init)
                send(init, pidfd, SIGKILL);
            kill(child, SIGKILL);
            deadline = now_mono() + 3600;
        }
    }
    if (pidfd >= 0)
        close(pidfd);
    set_last(have_init_status ? init_status : child_status, now_real());
    kill_leftovers();
    kill_namespace_leftovers(init_mnt, ns_inode(getpid(), "net"));
    return stopping;
}

static void stopped(void) {
    st.state = "terminated";
    st.pid = 0;
    st.started = 0;
    st.backoff_until = 0;
    write_status();
    exit(0);
}

/* Sleep SECONDS, or until told to stop (returns 1). */
static int backoff_sleep(double seconds) {
    double until = now_mono() + seconds;
    for (;;) {
        double left = until - now_mono();
        if (left <= 0)
            return 0;
        struct pollfd fd = {sfd, POLLIN, 0};
        poll(&fd, 1, (int)(left * 1000) + 1);
        if (drain_signals(NULL, NULL) == SIG_STOP)
            return 1;
    }
}

static double seconds(const char *what, const char *text) {
    char *end;
    double value = strtod(text, &end);
    if (*text == '\0' || *end != '\0' || value < 0 || value > 86400) {
        fprintf(stderr, "podpath-shim: %s %s is not a number of seconds (0 to 86400)\n", what, text);
        exit(2);
    }
    return value;
}

static void usage(void) {
    fputs("usage: podpath-shim [--netns PATH] --status FILE --name NAME [--bells DIR] [--grace SECONDS]\n"
          "                    [--backoff SECONDS] [--backoff-max SECONDS] -- COMMAND [ARG...]\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv) {
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--netns") == 0)
            opt.netns = v;
        else if (strcmp(a, "--status") == 0)
            opt.status = v;
        else if (strcmp(a, "--name") == 0)
            opt.name = v;
        else if (strcmp(a, "--bells") == 0)
            opt.bells = v;
        else if (strcmp(a, "--grace") == 0)
            opt.grace = seconds("grace period", v);
        else if (strcmp(a, "--backoff") == 0)
            opt.initial = seconds("back-off", v);
        else if (strcmp(a, "--backoff-max") == 0)
            opt.max = seconds("longest back-off", v);
        else
            usage();
    }
    if (i >= argc || !opt.status || !opt.name || !*opt.status || !*opt.name)
        usage();
    opt.argv = argv + i;
    if (opt.max < opt.initial)
        opt.max = opt.initial;

    if (comm_of(getpid(), self_comm, sizeof self_comm) != 0)
        snprintf(self_comm, sizeof self_comm, "podpath-shim");
    if (opt.netns) {
        int fd = open(opt.netns, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
            fprintf(stderr, "podpath-shim: %s: cannot join %s: %s\n", opt.name, opt.netns, strerror(errno));
            return 1;
        }
        close(fd);
    }
    /* orphans of the container's processes come to the shim, which reaps them */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        perror("podpath-shim: signalfd");
        return 1;
    }

    int have_entry = 0;               /* the kubelet's back-off entry for this container */
    double backoff = 0, last_update = 0; /* its current delay and when it last moved (monotonic) */
    for (;;) {
        if (run_once())
            stopped();
        double finished = now_mono();
        /* as the kubelet's doBackOff: in back-off while less than the current delay has
         * passed since the exit, unless the entry has not moved for twice the cap */
        int expired = !have_entry || finished - last_update > 2 * opt.max;
        double delay = expired ? 0 : backoff - (now_mono() - finished);
        if (delay < 0)
            delay = 0;
        st.state = "waiting";
        st.pid = 0;
        st.started = 0;
        st.backoff_until = st.finished + delay;
        write_status();
        char how[32], when[48];
        if (st.signal)
            snprintf(how, sizeof how, "signal %d", st.signal);
        else
            snprintf(how, sizeof how, "code %d", st.exit_code);
        if (delay > 0)
            snprintf(when, sizeof when, "after a back-off of %.3g s", delay);
        else
            snprintf(when, sizeof when, "at once");
        say("exited (%s); restart %d %s", how, st.restarts + 1, when);
        if (backoff_sleep(delay))
            stopped();
        /* as the kubelet's backOff.Next: the initial delay, or twice the last, at most the cap */
        if (expired) {
            backoff = opt.initial;
        } else {
            backoff = 2 * backoff;
            if (backoff > opt.max)
                backoff = opt.max;
        }
        have_entry = 1;
        last_update = now_mono();
        st.restarts++;
    }
}
