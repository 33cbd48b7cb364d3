/*
 * berth-init: the tiny init for `berth run --init`, bind-mounted read-only at /dev/init.
 *
 * PROTOCOL: argv = /dev/init -- CMD [ARGS...]. It runs as the container's pid 1, starts CMD as
 * its child (in a new process group, with the original signal mask), forwards every catchable
 * signal it receives to CMD (SIGTERM from `berth stop` reaches a CMD that, as pid 1, would have
 * ignored it), reaps every zombie reparented to it, and exits with CMD's status: the exit code,
 * or 128 + signal. Errors before CMD runs go to stderr as "berth-init: <what>: <strerror>" and
 * exit 127 (not found) or 126 (other exec errors) like a shell.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  int first = 1;
  if (first < argc && strcmp(argv[first], "--") == 0) first++;
  if (first >= argc) {
    fprintf(stderr, "berth-init: usage: %s -- CMD [ARGS...]\n", argv[0]);
    return 2;
  }
  sigset_t all, old;
  sigfillset(&all);
  if (sigprocmask(SIG_BLOCK, &all, &old) < 0) {
    fprintf(stderr, "berth-init: sigprocmask: %s\n", strerror(errno));
    return 1;
  }
  pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "berth-init: fork: %s\n", strerror(errno));
    return 1;
  }
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    setpgid(0, 0);
    execvp(argv[first], &argv[first]);
    int e = errno;
    fprintf(stderr, "berth-init: exec %s: %s\n", argv[first], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
  }
  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&all, &si);
    if (sig < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "berth-init: sigwaitinfo: %s\n", strerror(errno));
      return 1;
    }
    if (sig != SIGCHLD) {
      if (kill(child, sig) < 0 && errno != ESRCH) fprintf(stderr, "berth-init: forward signal %d: %s\n", sig, strerror(errno));
      continue;
    }
    for (;;) {
      int status;
      pid_t p = waitpid(-1, &status, WNOHANG);
      if (p <= 0) break;
      if (p == child) {
        if (WIFEXITED(status)) return WEXITSTATUS(status);
        if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      }
    }
  }
}
