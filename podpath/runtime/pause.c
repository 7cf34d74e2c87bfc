/*
 * podpath-pause: the process that holds a pod's namespaces, in the role of the
 * Kubernetes pause container.
 *
 *   podpath-pause NETNS_PATH [HOSTNAME]
 *
 * It joins the network namespace bind-mounted at NETNS_PATH (the pod's, under
 * /var/run/netns), makes a new IPC and UTS namespace that the pod's containers join,
 * sets the pod's hostname (the pod's name, as the kubelet asks containerd to), then
 * sleeps. It reaps any child it is given and exits 0 on SIGTERM or SIGINT, so stopping a
 * pod is quick and leaves no zombie.
 *
 * For a pod with shareProcessNamespace, podpath_netns starts it as pid 1 of a new PID
 * namespace, which the pod's containers join (containerd's pause is pid 1 of its
 * sandbox's). Nothing changes here: as pid 1 it is given every orphan of the pod, which
 * its SIGCHLD handler reaps, and the kernel delivers it only the signals it handles, so
 * SIGTERM still stops it, and its exit ends every process of the pod.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) { (void)sig; _exit(0); }

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s NETNS_PATH [HOSTNAME]\n", argv[0]);
        return 2;
    }
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
        fprintf(stderr, "podpath-pause: cannot join %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    close(fd);
    if (unshare(CLONE_NEWIPC | CLONE_NEWUTS) != 0) {
        fprintf(stderr, "podpath-pause: unshare: %s\n", strerror(errno));
        return 1;
    }
    if (argc == 3 && sethostname(argv[2], strlen(argv[2])) != 0) {
        fprintf(stderr, "podpath-pause: sethostname: %s\n", strerror(errno));
        return 1;
    }
    struct sigaction stop = {.sa_handler = on_stop};
    struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    if (sigaction(SIGTERM, &stop, NULL) || sigaction(SIGINT, &stop, NULL) ||
        sigaction(SIGCHLD, &child, NULL)) {
        perror("podpath-pause: sigaction");
        return 1;
    }
    for (;;)
        pause();
}
