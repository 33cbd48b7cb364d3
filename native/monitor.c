/*
 * berth-monitor: the per-container monitor (the conmon / containerd-shim role).
 *
 * One monitor per container. The engine spawns it detached (setsid, stdio /dev/null); it drives
 * any runc-compatible OCI runtime through its CLI, is the parent and subreaper of the container's
 * init (the runtime creates init with CLONE_PARENT), owns the container's stdio (pipes, or the pty
 * master received over --console-socket), writes the CRI log, relays live output to attach
 * clients, records the exit status, applies the restart policy, and exits when the container is
 * done. Single-threaded: one poll() loop over a signalfd (SIGCHLD), the control and attach
 * sockets, and the output fds. Runtime commands (create/start/delete) are run synchronously.
 *
 * ARGV
 * | option                    | meaning                                                          |
 * |---------------------------|------------------------------------------------------------------|
 * | --runtime PATH            | OCI runtime binary (runc, crun, berth-oci)              required |
 * | --runtime-arg ARG         | global runtime argument, repeatable (e.g. --root, R)             |
 * | --id ID                   | container id                                            required |
 * | --bundle DIR              | bundle directory (absolute)                             required |
 * | --exit-file PATH          | where the exit record (JSON) is written atomically      required |
 * | --pid-file PATH           | runtime's --pid-file (default: <exit-file>.pid)                  |
 * | --log PATH                | CRI log file (none when absent)                                  |
 * | --log-max BYTES           | rotate log -> log.1 when it would exceed BYTES (0 = never)        |
 * | --ctl PATH                | control socket (unix stream; protocol below)                     |
 * | --attach PATH             | attach socket (unix stream; framing below)                       |
 * | --console-socket PATH     | where to listen for the pty master (default /tmp/berth-console-<pid>.sock) |
 * | --sync-fd N               | fd to report created/started/error on (JSON lines), then closed   |
 * | --terminal                | container has a pty (config.json process.terminal must be true)   |
 * | --stdin                   | keep stdin open (pipe, or the pty) for attach clients             |
 * | --start                   | run `<runtime> start` right after create (else wait for ctl start)|
 * | --keep                    | do not run `<runtime> delete` after the container exits for good  |
 * |                           | (the engine deletes in-process; restarts still delete first)      |
 * | --external-start          | the first ctl `start` only records the start: the caller starts   |
 * |                           | the container itself (in-process); restarts run `<runtime> start` |
 * | --handoff-fd N            | the engine creates the init itself (below); N: unix stream socket |
 * | --zygote PATH             | berth-zygote binary for --handoff-fd                              |
 * | --restart POLICY          | no | on-failure[:N] | always (backoff 100 ms doubling, max 10 s)   |
 *
 * RUNTIME COMMANDS (argv: <runtime> <runtime-args...> <verb> ...)
 * | create --bundle B --pid-file P [--console-socket S] ID | stdio = container pipes (or /dev/null + stderr pipe with a pty) |
 * | start ID                                             | stderr captured in a memfd for the error text  |
 * | delete [--force] ID                                  | after exit (unless --keep); --force on failure  |
 *
 * HANDOFF (--handoff-fd N, first create only; restarts use `<runtime> create`): the monitor starts
 * PATH (berth-zygote) as its child over a SOCK_SEQPACKET pair and sends on N, one fd per message
 * (SCM_RIGHTS, 1 byte): the zygote's socket, then without --terminal the init's stdin (pipe, or
 * /dev/null), stdout and stderr pipe ends. The engine clones the init through that zygote (so the
 * init is the monitor's child), and replies on N: with --terminal first the pty master (SCM_RIGHTS),
 * then "<pid>\n". EOF instead means the engine's create failed: the monitor reports an error and exits.
 *
 * SYNC FD (JSON lines, monitor -> engine; closed after "started", "error", or "created" without --start)
 * | {"event":"created","pid":N}                 | create succeeded, init is waiting for start |
 * | {"event":"started","pid":N}                 | start succeeded                              |
 * | {"event":"error","stage":S,"message":M}     | S = args|setup|create|start; the monitor exits 1 |
 *
 * CONTROL SOCKET (one request line, one JSON reply line per connection)
 * | start      | {"ok":true,"pid":N} or {"ok":false,"error":M}; with --external-start the  |
 * |            | caller starts the container right after this reply (first start only)  |
 * | status     | {"ok":true,"state":"created|running|restarting|stopped","pid":N,"restarts":N} |
 * | norestart  | {"ok":true} — disable the restart policy (send before stopping)       |
 *
 * ATTACH SOCKET FRAMES: 1 byte type, 4 byte big-endian length, data
 * | 1 stdout, 2 stderr (monitor -> client) | raw output bytes, as the container wrote them          |
 * | 3 exit (monitor -> client)             | the exit record JSON; then the monitor closes the socket |
 * | 0 stdin (client -> monitor)            | bytes for the container's stdin (needs --stdin)          |
 * | 4 stdin-eof (client -> monitor)        | close the container's stdin pipe                         |
 * | 5 resize (client -> monitor)           | 4 bytes: rows u16 BE, cols u16 BE -> TIOCSWINSZ on the pty |
 *
 * LOG LINES (CRI): `<RFC3339Nano UTC> <stdout|stderr> <P|F> <msg>\n`; F ends a line, P is a chunk of
 * a longer line (8 KiB) or an unterminated tail at exit. With a pty everything is "stdout".
 *
 * EXIT FILE (JSON, temp + rename, rewritten after every exit of init):
 * {"id","pid","exitCode":N|null,"signal":N|null,"oomKilled":bool,"startedAt","finishedAt",
 *  "restarts":N,"restarting":bool,"error":M|null}
 *
 * Signals: SIGTERM/SIGINT/SIGHUP are ignored (stop the container with `<runtime> kill`); the
 * monitor exits once the container has exited for good.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_RT_ARGS 32
#define MAX_CLIENTS 16
#define LINE_MAX_BYTES 8192
#define READ_CHUNK 8192
#define FRAME_MAX 16384
#define ERR_MAX 2048
#define BACKOFF_START_MS 100
#define BACKOFF_MAX_MS 10000

enum restart_policy { RESTART_NO, RESTART_ON_FAILURE, RESTART_ALWAYS };
enum state { ST_CREATED, ST_RUNNING, ST_BACKOFF, ST_STOPPED };
static const char *const state_names[] = { "created", "running", "restarting", "stopped" };

struct opts {
  const char *runtime, *id, *bundle, *exit_file, *log, *ctl, *attach;
  char pid_file[4096], console[108];
  const char *rt_args[MAX_RT_ARGS];
  int n_rt_args, sync_fd, terminal, stdin_open, start, keep, external_start, handoff_fd;
  const char *zygote;
  long long log_max;
  enum restart_policy restart;
  int restart_max; /* on-failure:N; 0 = unlimited */
};

struct stream {
  int fd;          /* read end (pipe) or pty master; -1 when closed */
  int frame_type;  /* 1 stdout, 2 stderr */
  const char *name;
  size_t len;
  char line[LINE_MAX_BYTES];
};

struct client {
  int fd;
  size_t len;
  unsigned char buf[5 + FRAME_MAX];
};

static struct opts O = { .sync_fd = -1, .handoff_fd = -1 };
static struct stream out_s = { .fd = -1, .frame_type = 1, .name = "stdout" };
static struct stream err_s = { .fd = -1, .frame_type = 2, .name = "stderr" };
static struct client clients[MAX_CLIENTS];
static int out_w = -1, err_w = -1, in_r = -1, in_w = -1; /* pipe ends kept across restarts */
static int log_fd = -1, sig_fd = -1, ctl_fd = -1, attach_fd = -1, console_fd = -1;
static long long log_size;
static enum state st = ST_CREATED;
static pid_t init_pid;
static int restarts, backoff_ms = BACKOFF_START_MS;
static struct timespec backoff_until, started_at;
static char mem_cgroup[4096]; /* memory.oom_control / memory.events of init's cgroup, if found */
static char last_error[ERR_MAX];

struct reaped { pid_t pid; int status; };
static struct reaped recent[8];
static int n_recent;

/* ---------- small helpers ---------- */

static void errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static int set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
  return 0;
}

/* Write everything; on EAGAIN wait up to timeout_ms for room. Returns -1 on error/timeout. */
static int write_all(int fd, const void *data, size_t len, int timeout_ms) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        int r = poll(&pfd, 1, timeout_ms);
        if (r <= 0) { if (r == 0) errno = ETIMEDOUT; return -1; }
        continue;
      }
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Append s to dst (size cap) as a JSON string literal with quotes. */
static void json_str(char *dst, size_t cap, const char *s) {
  size_t o = strlen(dst);
  if (o + 2 >= cap) return;
  dst[o++] = '"';
  for (; *s && o + 8 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') { dst[o++] = '\\'; dst[o++] = (char)c; }
    else if (c == '\n') { dst[o++] = '\\'; dst[o++] = 'n'; }
    else if (c < 0x20) o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", c);
    else dst[o++] = (char)c;
  }
  dst[o++] = '"';
  dst[o] = 0;
}

static void append(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *dst, size_t cap, const char *fmt, ...) {
  size_t o = strlen(dst);
  if (o >= cap) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dst + o, cap - o, fmt, ap);
  va_end(ap);
}

static void rfc3339(const struct timespec *ts, char *out, size_t cap) {
  struct tm tm;
  gmtime_r(&ts->tv_sec, &tm);
  size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, cap - n, ".%09ldZ", ts->tv_nsec);
}

static long long ms_until(const struct timespec *t) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (long long)(t->tv_sec - now.tv_sec) * 1000 + (t->tv_nsec - now.tv_nsec) / 1000000;
}

static void sync_send(const char *line) {
  if (O.sync_fd < 0) return;
  if (write_all(O.sync_fd, line, strlen(line), 1000) < 0) close_fd(&O.sync_fd);
}

static void sync_error(const char *stage, const char *msg) {
  char buf[ERR_MAX + 128] = "{\"event\":\"error\",\"stage\":";
  json_str(buf, sizeof buf, stage);
  append(buf, sizeof buf, ",\"message\":");
  json_str(buf, sizeof buf, msg);
  append(buf, sizeof buf, "}\n");
  sync_send(buf);
  close_fd(&O.sync_fd);
}

/* ---------- log writer ---------- */

static void log_rotate(void) {
  char old[4200];
  snprintf(old, sizeof old, "%s.1", O.log);
  close_fd(&log_fd);
  if (rename(O.log, old) < 0 && errno != ENOENT) { /* keep writing to the same file */ }
  log_fd = open(O.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  log_size = 0;
}

static void log_entry(const char *stream, char tag, const char *msg, size_t len) {
  if (log_fd < 0) return;
  char head[96];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  rfc3339(&ts, head, sizeof head - 16);
  size_t hl = strlen(head);
  hl += (size_t)snprintf(head + hl, sizeof head - hl, " %s %c ", stream, tag);
  long long total = (long long)(hl + len + 1);
  if (O.log_max > 0 && log_size > 0 && log_size + total > O.log_max) log_rotate();
  if (log_fd < 0) return;
  if (write_all(log_fd, head, hl, 1000) < 0 || write_all(log_fd, msg, len, 1000) < 0 || write_all(log_fd, "\n", 1, 1000) < 0) return;
  log_size += total;
}

static void stream_flush(struct stream *s) {
  if (s->len == 0) return;
  log_entry(s->name, 'P', s->line, s->len);
  s->len = 0;
}

/* ---------- attach clients ---------- */

static void client_drop(struct client *c) {
  close_fd(&c->fd);
  c->len = 0;
}

static void broadcast(int type, const char *data, size_t len) {
  unsigned char hdr[5] = { (unsigned char)type, (unsigned char)(len >> 24), (unsigned char)(len >> 16), (unsigned char)(len >> 8), (unsigned char)len };
  for (int i = 0; i < MAX_CLIENTS; i++) {
    struct client *c = &clients[i];
    if (c->fd < 0) continue;
    if (write_all(c->fd, hdr, 5, 2000) < 0 || (len && write_all(c->fd, data, len, 2000) < 0)) client_drop(c);
  }
}

static void stream_data(struct stream *s, const char *data, size_t len) {
  broadcast(s->frame_type, data, len);
  while (len > 0) {
    const char *nl = memchr(data, '\n', len);
    size_t take = nl ? (size_t)(nl - data) : len;
    size_t room = sizeof s->line - s->len;
    if (take > room) take = room;
    memcpy(s->line + s->len, data, take);
    s->len += take;
    data += take;
    len -= take;
    if (nl && data == nl) {
      log_entry(s->name, 'F', s->line, s->len);
      s->len = 0;
      data++;
      len--;
    } else if (s->len == sizeof s->line) {
      stream_flush(s);
    }
  }
}

/* Read what is available; returns 0 on EOF/EIO (fd closed), 1 otherwise. */
static int stream_read(struct stream *s) {
  char buf[READ_CHUNK];
  for (int rounds = 0; rounds < 16; rounds++) {
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n > 0) { stream_data(s, buf, (size_t)n); continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return 1;
    close_fd(&s->fd); /* EOF, or EIO from a pty whose slave side is gone */
    return 0;
  }
  return 1;
}

static int stdin_target(void) { return O.terminal ? out_s.fd : in_w; }

static void client_frame(struct client *c, int type, const unsigned char *data, size_t len) {
  if (type == 0) {
    int fd = stdin_target();
    if (fd >= 0 && O.stdin_open && write_all(fd, data, len, 2000) < 0 && !O.terminal) close_fd(&in_w);
  } else if (type == 4) {
    if (!O.terminal) close_fd(&in_w);
  } else if (type == 5 && len == 4 && O.terminal && out_s.fd >= 0) {
    struct winsize ws = { .ws_row = (unsigned short)(data[0] << 8 | data[1]), .ws_col = (unsigned short)(data[2] << 8 | data[3]) };
    ioctl(out_s.fd, TIOCSWINSZ, &ws);
  }
  (void)c;
}

static void client_read(struct client *c) {
  ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) { client_drop(c); return; }
  c->len += (size_t)n;
  size_t off = 0;
  while (c->len - off >= 5) {
    const unsigned char *h = c->buf + off;
    size_t flen = (size_t)h[1] << 24 | (size_t)h[2] << 16 | (size_t)h[3] << 8 | h[4];
    if (flen > FRAME_MAX) { client_drop(c); return; }
    if (c->len - off < 5 + flen) break;
    client_frame(c, h[0], h + 5, flen);
    if (c->fd < 0) return;
    off += 5 + flen;
  }
  memmove(c->buf, c->buf + off, c->len - off);
  c->len -= off;
}

static void attach_accept(void) {
  int fd = accept4(attach_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;
  for (int i = 0; i < MAX_CLIENTS; i++) {
    if (clients[i].fd < 0) { clients[i].fd = fd; clients[i].len = 0; return; }
  }
  close(fd); /* too many clients */
}

/* ---------- sockets ---------- */

static int listen_unix(const char *path, int backlog) {
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof sa.sun_path) { errno = ENAMETOOLONG; errf("socket path %s: too long", path); return -1; }
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) { errf("socket for %s: %s", path, strerror(errno)); return -1; }
  unlink(path);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, backlog) < 0) {
    errf("listen on %s: %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

/* Receive the pty master the runtime sent to the console socket. */
static int recv_console(void) {
  struct pollfd pfd = { .fd = console_fd, .events = POLLIN };
  if (poll(&pfd, 1, 5000) <= 0) { errf("runtime did not connect to the console socket %s", O.console); return -1; }
  int conn = accept4(console_fd, NULL, NULL, SOCK_CLOEXEC);
  if (conn < 0) { errf("accept on console socket %s: %s", O.console, strerror(errno)); return -1; }
  struct timeval tv = { .tv_sec = 5 };
  setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char name[256];
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
  struct iovec iov = { .iov_base = name, .iov_len = sizeof name };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
  ssize_t n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
  int saved = errno;
  close(conn);
  if (n < 0) { errf("receive pty master on %s: %s", O.console, strerror(saved)); return -1; }
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  if (!cm || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(sizeof(int))) {
    errf("console socket %s: runtime sent no file descriptor", O.console);
    return -1;
  }
  int fd;
  memcpy(&fd, CMSG_DATA(cm), sizeof fd);
  return fd;
}

/* ---------- running the runtime ---------- */

/* fork+exec `<runtime> <rt args> argv...`; stdio as given (-1 = /dev/null). Waits for it.
 * Returns the wait status, or -1 with last_error set. */
static int run_runtime(const char *const *argv, int in, int out, int errfd) {
  const char *full[MAX_RT_ARGS + 16];
  int n = 0;
  full[n++] = O.runtime;
  for (int i = 0; i < O.n_rt_args; i++) full[n++] = O.rt_args[i];
  for (int i = 0; argv[i] && n < MAX_RT_ARGS + 15; i++) full[n++] = argv[i];
  full[n] = NULL;
  pid_t pid = fork();
  if (pid < 0) { errf("fork for %s %s: %s", O.runtime, argv[0], strerror(errno)); return -1; }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    int devnull = open("/dev/null", O_RDWR);
    int fds[3] = { in >= 0 ? in : devnull, out >= 0 ? out : devnull, errfd >= 0 ? errfd : devnull };
    /* move sources above 2 first so dup2 order cannot clobber them */
    for (int i = 0; i < 3; i++) if (fds[i] >= 0 && fds[i] < 3) fds[i] = fcntl(fds[i], F_DUPFD, 3);
    for (int i = 0; i < 3; i++) {
      if (fds[i] < 0 || dup2(fds[i], i) < 0) _exit(127);
      int fl = fcntl(i, F_GETFL);
      if (fl >= 0) fcntl(i, F_SETFL, fl & ~O_NONBLOCK);
    }
    closefrom(3);
    execv(full[0], (char *const *)full);
    dprintf(2, "berth-monitor: exec %s: %s\n", full[0], strerror(errno));
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) { errf("waitpid %s %s: %s", O.runtime, argv[0], strerror(errno)); return -1; }
  }
  return status;
}

static void read_fd_into(int fd, char *out, size_t cap, int rewind) {
  if (rewind) lseek(fd, 0, SEEK_SET);
  size_t o = strlen(out);
  while (o + 1 < cap) {
    ssize_t n = read(fd, out + o, cap - o - 1);
    if (n <= 0) break;
    o += (size_t)n;
  }
  out[o] = 0;
  while (o > 0 && (out[o - 1] == '\n' || out[o - 1] == ' ')) out[--o] = 0;
}

static void describe_failure(const char *verb, int status, const char *output) {
  char how[64];
  if (status < 0) return; /* last_error already set */
  if (WIFEXITED(status)) snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(status));
  else snprintf(how, sizeof how, "signal %d", WTERMSIG(status));
  errf("%s %s %s failed (%s)%s%s", O.runtime, verb, O.id, how, *output ? ": " : "", output);
}

/* Runs a runtime verb with stderr captured; 0 on success, -1 with last_error set. */
static int runtime_simple(const char *const *argv) {
  int mfd = memfd_create("berth-runtime-stderr", MFD_CLOEXEC);
  if (mfd < 0) { errf("memfd_create: %s", strerror(errno)); return -1; }
  int status = run_runtime(argv, -1, -1, mfd);
  char out[ERR_MAX] = "";
  read_fd_into(mfd, out, sizeof out, 1);
  close(mfd);
  if (status == 0) return 0;
  describe_failure(argv[0], status, out);
  return -1;
}

static void runtime_delete(int force) {
  const char *del[] = { "delete", force ? "--force" : O.id, force ? O.id : NULL, NULL };
  runtime_simple(del);
}

static void find_mem_cgroup(pid_t pid) {
  char path[64], line[4096];
  snprintf(path, sizeof path, "/proc/%d/cgroup", pid);
  mem_cgroup[0] = 0;
  FILE *f = fopen(path, "re");
  if (!f) return;
  char v2[4096] = "";
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    char *c1 = strchr(line, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    *c2 = 0;
    const char *ctrls = c1 + 1, *cg = c2 + 1;
    if (strstr(ctrls, "memory")) { snprintf(mem_cgroup, sizeof mem_cgroup, "/sys/fs/cgroup/memory%s/memory.oom_control", cg); break; }
    if (!*ctrls) snprintf(v2, sizeof v2, "/sys/fs/cgroup%s/memory.events", cg);
  }
  fclose(f);
  if (!mem_cgroup[0] && v2[0]) memcpy(mem_cgroup, v2, sizeof mem_cgroup);
}

static int oom_killed(void) {
  if (!mem_cgroup[0]) return 0;
  FILE *f = fopen(mem_cgroup, "re");
  if (!f) return 0;
  char line[256];
  long long n = 0;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "oom_kill %lld", &n) == 1) break;
  }
  fclose(f);
  return n > 0;
}

/* create (+ console) and read the pid file. 0 on success; on failure cleans up the runtime side. */
static int do_create(void) {
  unlink(O.pid_file);
  const char *argv[12];
  int n = 0;
  argv[n++] = "create";
  argv[n++] = "--bundle";
  argv[n++] = O.bundle;
  argv[n++] = "--pid-file";
  argv[n++] = O.pid_file;
  if (O.terminal) { argv[n++] = "--console-socket"; argv[n++] = O.console; }
  argv[n++] = O.id;
  argv[n] = NULL;
  int status, errmem = -1;
  char out[ERR_MAX] = "";
  if (O.terminal) {
    console_fd = listen_unix(O.console, 1);
    if (console_fd < 0) return -1;
    errmem = memfd_create("berth-runtime-stderr", MFD_CLOEXEC);
    if (errmem < 0) { errf("memfd_create: %s", strerror(errno)); close_fd(&console_fd); unlink(O.console); return -1; }
    status = run_runtime(argv, -1, -1, errmem);
    read_fd_into(errmem, out, sizeof out, 1);
    close(errmem);
  } else {
    status = run_runtime(argv, O.stdin_open ? in_r : -1, out_w, err_w);
    /* before start, anything on the container's stderr pipe is the runtime's own message */
    read_fd_into(err_s.fd, out, sizeof out, 0);
    char junk[READ_CHUNK];
    while (read(out_s.fd, junk, sizeof junk) > 0) {}
  }
  if (status != 0) {
    describe_failure("create", status, out);
    goto fail;
  }
  if (O.terminal) {
    int m = recv_console();
    if (m < 0) goto fail;
    out_s.fd = m;
    set_nonblock(m);
    close_fd(&console_fd);
    unlink(O.console);
  }
  FILE *f = fopen(O.pid_file, "re");
  int pid = 0;
  if (!f || fscanf(f, "%d", &pid) != 1 || pid <= 0) {
    errf("read pid file %s written by %s create: %s", O.pid_file, O.runtime, f ? "no pid in it" : strerror(errno));
    if (f) fclose(f);
    goto fail;
  }
  fclose(f);
  init_pid = pid;
  find_mem_cgroup(pid);
  st = ST_CREATED;
  return 0;
fail:
  if (O.terminal) { close_fd(&console_fd); unlink(O.console); close_fd(&out_s.fd); }
  {
    char saved[ERR_MAX];
    memcpy(saved, last_error, sizeof saved);
    runtime_delete(1);
    memcpy(last_error, saved, sizeof saved);
  }
  return -1;
}

static void recent_check(void);

static int do_start(void) {
  const char *argv[] = { "start", O.id, NULL };
  if (O.external_start) O.external_start = 0; /* the caller starts it; later restarts are ours */
  else if (runtime_simple(argv) < 0) return -1;
  clock_gettime(CLOCK_REALTIME, &started_at);
  st = ST_RUNNING;
  recent_check();
  return 0;
}

/* ---------- exit handling ---------- */

static int last_status, last_oom;

static int write_exit_file(int status, int have_status, int restarting) {
  char buf[ERR_MAX + 1024] = "{\"id\":";
  char started[64] = "", finished[64];
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  rfc3339(&now, finished, sizeof finished);
  if (started_at.tv_sec) rfc3339(&started_at, started, sizeof started);
  json_str(buf, sizeof buf, O.id);
  append(buf, sizeof buf, ",\"pid\":%d,", init_pid);
  if (have_status && WIFEXITED(status)) append(buf, sizeof buf, "\"exitCode\":%d,\"signal\":null,", WEXITSTATUS(status));
  else if (have_status) append(buf, sizeof buf, "\"exitCode\":null,\"signal\":%d,", WTERMSIG(status));
  else append(buf, sizeof buf, "\"exitCode\":null,\"signal\":null,");
  append(buf, sizeof buf, "\"oomKilled\":%s,\"startedAt\":", have_status && last_oom ? "true" : "false");
  if (started[0]) json_str(buf, sizeof buf, started); else append(buf, sizeof buf, "null");
  append(buf, sizeof buf, ",\"finishedAt\":");
  json_str(buf, sizeof buf, finished);
  append(buf, sizeof buf, ",\"restarts\":%d,\"restarting\":%s,\"error\":", restarts, restarting ? "true" : "false");
  if (!have_status && last_error[0]) json_str(buf, sizeof buf, last_error); else append(buf, sizeof buf, "null");
  append(buf, sizeof buf, "}\n");

  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", O.exit_file);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  int ok = write_all(fd, buf, strlen(buf), 1000) == 0 && fsync(fd) == 0;
  close(fd);
  if (!ok || rename(tmp, O.exit_file) < 0) { unlink(tmp); return -1; }
  /* keep the record for attach clients */
  if (!restarting) broadcast(3, buf, strlen(buf) - 1);
  return 0;
}

static int should_restart(int status) {
  if (O.restart == RESTART_NO) return 0;
  if (O.restart == RESTART_ALWAYS) return 1;
  int failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  return failed && (O.restart_max == 0 || restarts < O.restart_max);
}

static void drain_outputs(void) {
  if (out_s.fd >= 0) stream_read(&out_s);
  if (!O.terminal && err_s.fd >= 0) stream_read(&err_s);
  stream_flush(&out_s);
  stream_flush(&err_s);
}

static void init_exited(int status) {
  drain_outputs();
  if (O.terminal) close_fd(&out_s.fd);
  /* record oom before delete removes the cgroup */
  int restart = should_restart(status);
  last_oom = oom_killed(); /* before delete removes the cgroup */
  last_status = status;
  if (!O.keep || restart) runtime_delete(0);
  write_exit_file(status, 1, restart);
  if (restart) {
    clock_gettime(CLOCK_MONOTONIC, &backoff_until);
    backoff_until.tv_sec += backoff_ms / 1000;
    backoff_until.tv_nsec += (long)(backoff_ms % 1000) * 1000000L;
    if (backoff_until.tv_nsec >= 1000000000L) { backoff_until.tv_sec++; backoff_until.tv_nsec -= 1000000000L; }
    backoff_ms = backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms * 2;
    st = ST_BACKOFF;
  } else {
    st = ST_STOPPED;
  }
}

static void handle_reaped(pid_t pid, int status) {
  if (init_pid > 0 && pid == init_pid && (st == ST_RUNNING || st == ST_CREATED)) {
    init_exited(status);
    return;
  }
  recent[n_recent % 8] = (struct reaped){ pid, status };
  n_recent++;
}

static void recent_check(void) {
  for (int i = 0; i < 8 && i < n_recent; i++) {
    if (recent[i].pid == init_pid) {
      recent[i].pid = 0;
      init_exited(recent[i].status);
      return;
    }
  }
}

static void reap_all(void) {
  struct signalfd_siginfo si;
  while (read(sig_fd, &si, sizeof si) == sizeof si) {}
  for (;;) {
    int status;
    pid_t p = waitpid(-1, &status, WNOHANG);
    if (p <= 0) break;
    handle_reaped(p, status);
  }
}

/* ---------- control socket ---------- */

static void ctl_handle(void) {
  int fd = accept4(ctl_fd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return;
  struct timeval tv = { .tv_sec = 2 };
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  char req[128];
  size_t n = 0;
  while (n + 1 < sizeof req) {
    ssize_t r = read(fd, req + n, sizeof req - n - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
    if (memchr(req, '\n', n)) break;
  }
  req[n] = 0;
  req[strcspn(req, "\r\n")] = 0;
  char reply[ERR_MAX + 128] = "";
  if (strcmp(req, "start") == 0) {
    if (st != ST_CREATED) {
      snprintf(reply, sizeof reply, "{\"ok\":false,\"error\":\"container %s is %s, not created\"}", O.id, state_names[st]);
    } else if (do_start() < 0) {
      strcpy(reply, "{\"ok\":false,\"error\":");
      json_str(reply, sizeof reply, last_error);
      append(reply, sizeof reply, "}");
    } else {
      snprintf(reply, sizeof reply, "{\"ok\":true,\"pid\":%d}", init_pid);
    }
  } else if (strcmp(req, "status") == 0) {
    snprintf(reply, sizeof reply, "{\"ok\":true,\"state\":\"%s\",\"pid\":%d,\"restarts\":%d}", state_names[st], init_pid, restarts);
  } else if (strcmp(req, "norestart") == 0) {
    O.restart = RESTART_NO;
    if (st == ST_BACKOFF) { st = ST_STOPPED; write_exit_file(last_status, 1, 0); }
    strcpy(reply, "{\"ok\":true}");
  } else {
    strcpy(reply, "{\"ok\":false,\"error\":");
    json_str(reply, sizeof reply, "unknown control request (want start|status|norestart)");
    append(reply, sizeof reply, "}");
  }
  append(reply, sizeof reply, "\n");
  write_all(fd, reply, strlen(reply), 2000);
  close(fd);
}

/* ---------- setup ---------- */

static int parse_restart(const char *s) {
  if (strcmp(s, "no") == 0) O.restart = RESTART_NO;
  else if (strcmp(s, "always") == 0) O.restart = RESTART_ALWAYS;
  else if (strncmp(s, "on-failure", 10) == 0 && (s[10] == 0 || s[10] == ':')) {
    O.restart = RESTART_ON_FAILURE;
    if (s[10] == ':') {
      char *end;
      long v = strtol(s + 11, &end, 10);
      if (*end || end == s + 11 || v < 0 || v > 1000000) return -1;
      O.restart_max = (int)v;
    }
  } else return -1;
  return 0;
}

static int parse_args(int argc, char **argv) {
  static const struct option lo[] = {
    { "runtime", required_argument, 0, 'r' }, { "runtime-arg", required_argument, 0, 'R' },
    { "id", required_argument, 0, 'i' }, { "bundle", required_argument, 0, 'b' },
    { "exit-file", required_argument, 0, 'e' }, { "pid-file", required_argument, 0, 'p' },
    { "log", required_argument, 0, 'l' }, { "log-max", required_argument, 0, 'm' },
    { "ctl", required_argument, 0, 'c' }, { "attach", required_argument, 0, 'a' },
    { "console-socket", required_argument, 0, 'C' }, { "sync-fd", required_argument, 0, 'S' },
    { "terminal", no_argument, 0, 't' }, { "stdin", no_argument, 0, 'I' },
    { "start", no_argument, 0, 's' }, { "keep", no_argument, 0, 'k' },
    { "restart", required_argument, 0, 'P' }, { "external-start", no_argument, 0, 'X' },
    { "handoff-fd", required_argument, 0, 'H' }, { "zygote", required_argument, 0, 'Z' }, { 0, 0, 0, 0 },
  };
  int c;
  char *end;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'r': O.runtime = optarg; break;
    case 'R':
      if (O.n_rt_args >= MAX_RT_ARGS) { errf("too many --runtime-arg (max %d)", MAX_RT_ARGS); return -1; }
      O.rt_args[O.n_rt_args++] = optarg;
      break;
    case 'i': O.id = optarg; break;
    case 'b': O.bundle = optarg; break;
    case 'e': O.exit_file = optarg; break;
    case 'p': snprintf(O.pid_file, sizeof O.pid_file, "%s", optarg); break;
    case 'l': O.log = optarg; break;
    case 'm':
      O.log_max = strtoll(optarg, &end, 10);
      if (*end || O.log_max < 0) { errf("--log-max %s: want a byte count", optarg); return -1; }
      break;
    case 'c': O.ctl = optarg; break;
    case 'a': O.attach = optarg; break;
    case 'C':
      if (strlen(optarg) >= sizeof O.console) { errf("--console-socket %s: path too long", optarg); return -1; }
      strcpy(O.console, optarg);
      break;
    case 'S':
      O.sync_fd = (int)strtol(optarg, &end, 10);
      if (*end || O.sync_fd < 3) { O.sync_fd = -1; errf("--sync-fd %s: want an fd number >= 3", optarg); return -1; }
      fcntl(O.sync_fd, F_SETFD, FD_CLOEXEC);
      break;
    case 't': O.terminal = 1; break;
    case 'I': O.stdin_open = 1; break;
    case 's': O.start = 1; break;
    case 'k': O.keep = 1; break;
    case 'X': O.external_start = 1; break;
    case 'H':
      O.handoff_fd = (int)strtol(optarg, &end, 10);
      if (*end || O.handoff_fd < 3) { O.handoff_fd = -1; errf("--handoff-fd %s: want an fd number >= 3", optarg); return -1; }
      fcntl(O.handoff_fd, F_SETFD, FD_CLOEXEC);
      break;
    case 'Z': O.zygote = optarg; break;
    case 'P':
      if (parse_restart(optarg) < 0) { errf("--restart %s: want no, on-failure[:N] or always", optarg); return -1; }
      break;
    default: errf("bad arguments (see the table at the top of native/monitor.c)"); return -1;
    }
  }
  if (optind != argc) { errf("unexpected argument %s", argv[optind]); return -1; }
  if (!O.runtime || !O.id || !O.bundle || !O.exit_file) { errf("--runtime, --id, --bundle and --exit-file are required"); return -1; }
  if (O.handoff_fd >= 0 && !O.zygote) { errf("--handoff-fd needs --zygote"); return -1; }
  if (O.start && O.external_start) { errf("--start and --external-start exclude each other"); return -1; }
  if (!O.pid_file[0]) snprintf(O.pid_file, sizeof O.pid_file, "%s.pid", O.exit_file);
  if (!O.console[0]) snprintf(O.console, sizeof O.console, "/tmp/berth-console-%d.sock", getpid());
  return 0;
}

static int setup(void) {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) { errf("prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(errno)); return -1; }
  signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) { errf("sigprocmask: %s", strerror(errno)); return -1; }
  sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sig_fd < 0) { errf("signalfd: %s", strerror(errno)); return -1; }
  for (int i = 0; i < MAX_CLIENTS; i++) clients[i].fd = -1;
  if (O.log) {
    log_fd = open(O.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (log_fd < 0) { errf("open log %s: %s", O.log, strerror(errno)); return -1; }
    struct stat sb;
    if (fstat(log_fd, &sb) == 0) log_size = sb.st_size;
  }
  if (!O.terminal) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) { errf("pipe for stdout: %s", strerror(errno)); return -1; }
    out_s.fd = p[0]; out_w = p[1];
    if (pipe2(p, O_CLOEXEC) < 0) { errf("pipe for stderr: %s", strerror(errno)); return -1; }
    err_s.fd = p[0]; err_w = p[1];
    set_nonblock(out_s.fd);
    set_nonblock(err_s.fd);
    if (O.stdin_open) {
      if (pipe2(p, O_CLOEXEC) < 0) { errf("pipe for stdin: %s", strerror(errno)); return -1; }
      in_r = p[0]; in_w = p[1];
      set_nonblock(in_w);
    }
  }
  if (O.ctl && (ctl_fd = listen_unix(O.ctl, 8)) < 0) return -1;
  if (O.attach && (attach_fd = listen_unix(O.attach, 8)) < 0) return -1;
  return 0;
}

static void cleanup(void) {
  for (int i = 0; i < MAX_CLIENTS; i++) if (clients[i].fd >= 0) { shutdown(clients[i].fd, SHUT_WR); client_drop(&clients[i]); }
  if (ctl_fd >= 0) { close_fd(&ctl_fd); unlink(O.ctl); }
  if (attach_fd >= 0) { close_fd(&attach_fd); unlink(O.attach); }
  if (console_fd >= 0) { close_fd(&console_fd); unlink(O.console); }
  close_fd(&out_s.fd); close_fd(&err_s.fd);
  close_fd(&out_w); close_fd(&err_w); close_fd(&in_r); close_fd(&in_w);
  close_fd(&log_fd); close_fd(&sig_fd); close_fd(&O.sync_fd);
  unlink(O.pid_file);
}

/* ---------- handoff: the engine creates the init through our zygote ---------- */

static int send_one_fd(int sock, int fd) {
  char byte = 0;
  struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
  memset(&u, 0, sizeof u);
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  ssize_t n;
  do n = sendmsg(sock, &msg, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
  return n == 1 ? 0 : -1;
}

/*
 * The engine's cgroup migration of the init would wait for an RCU grace period (cgroup v1's
 * cgroup_threadgroup_rwsem: 12-18 ms here) unless another migration ended less than about one
 * grace period before. While we wait for the engine's create, migrate ourselves into our own pids
 * cgroup (a no-op) every few ms to keep that lock warm. Returns an fd, or -1 (then we just wait).
 */
static int warm_cgroup_fd(void) {
  FILE *f = fopen("/proc/self/cgroup", "re");
  if (!f) return -1;
  char line[4096], path[4200] = "";
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    *c2 = 0;
    if (strcmp(c1 + 1, "pids") == 0) { snprintf(path, sizeof path, "/sys/fs/cgroup/pids%s/cgroup.procs", c2 + 1); break; }
    if (c1[1] == 0 && !path[0]) snprintf(path, sizeof path, "/sys/fs/cgroup%s/cgroup.procs", c2 + 1);
  }
  fclose(f);
  return path[0] ? open(path, O_WRONLY | O_CLOEXEC) : -1;
}

/* poll the handoff socket for up to 30 s, keeping the migration lock warm meanwhile. */
static int handoff_wait(int warm_fd) {
  struct pollfd pfd = { .fd = O.handoff_fd, .events = POLLIN };
  char pid[16];
  int len = snprintf(pid, sizeof pid, "%d", (int)getpid());
  for (int waited = 0; waited < 30000; waited += 4) {
    int r = poll(&pfd, 1, warm_fd >= 0 ? 4 : 30000);
    if (r != 0) return r;
    if (warm_fd >= 0 && write(warm_fd, pid, (size_t)len) < 0) return poll(&pfd, 1, 30000 - waited);
  }
  return 0;
}

/* Start the zygote, hand its socket and the stdio ends to the engine, adopt the init it made. */
static int do_handoff(void) {
  int sv[2] = { -1, -1 }, devnull = -1, rc = -1, warm_fd = warm_cgroup_fd();
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) { errf("socketpair for the zygote: %s", strerror(errno)); return -1; }
  struct timeval tv = { .tv_sec = 10 };
  setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  pid_t z = fork();
  if (z < 0) { errf("fork for the zygote: %s", strerror(errno)); goto out; }
  if (z == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(sv[1], 3) < 0) _exit(127);
    closefrom(4);
    execl(O.zygote, O.zygote, (char *)NULL);
    _exit(127);
  }
  close_fd(&sv[1]);
  if (send_one_fd(O.handoff_fd, sv[0]) < 0) { errf("hand the zygote socket to the engine: %s", strerror(errno)); goto out; }
  close_fd(&sv[0]);
  if (!O.terminal) {
    if (!O.stdin_open && (devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) { errf("open /dev/null: %s", strerror(errno)); goto out; }
    if (send_one_fd(O.handoff_fd, O.stdin_open ? in_r : devnull) < 0 || send_one_fd(O.handoff_fd, out_w) < 0 || send_one_fd(O.handoff_fd, err_w) < 0) {
      errf("hand the stdio pipes to the engine: %s", strerror(errno));
      goto out;
    }
  }
  if (O.terminal) {
    if (handoff_wait(warm_fd) <= 0) { errf("the engine sent no pty master"); goto out; }
    char byte;
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    ssize_t n = recvmsg(O.handoff_fd, &msg, MSG_CMSG_CLOEXEC);
    struct cmsghdr *cm = n == 1 ? CMSG_FIRSTHDR(&msg) : NULL;
    if (!cm || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(sizeof(int))) { errf("the engine's create failed (no pty master)"); goto out; }
    memcpy(&out_s.fd, CMSG_DATA(cm), sizeof(int));
    set_nonblock(out_s.fd);
  }
  char line[32];
  size_t got = 0;
  while (got + 1 < sizeof line && !memchr(line, '\n', got)) {
    if (handoff_wait(warm_fd) <= 0) { errf("the engine did not report the init's pid"); goto out; }
    ssize_t n = read(O.handoff_fd, line + got, sizeof line - 1 - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  line[got] = 0;
  int pid = atoi(line);
  if (pid <= 0) { errf("the engine's create failed"); goto out; }
  init_pid = pid;
  find_mem_cgroup(pid);
  st = ST_CREATED;
  rc = 0;
out:
  close_fd(&sv[0]);
  close_fd(&sv[1]);
  close_fd(&devnull);
  close_fd(&warm_fd);
  close_fd(&O.handoff_fd);
  if (rc < 0 && O.terminal) close_fd(&out_s.fd);
  return rc;
}

static int create_and_start(int report) {
  if (O.handoff_fd >= 0 ? do_handoff() : do_create()) {
    if (report) sync_error("create", last_error);
    return -1;
  }
  if (report) {
    char msg[64];
    snprintf(msg, sizeof msg, "{\"event\":\"created\",\"pid\":%d}\n", init_pid);
    sync_send(msg);
  }
  if (!O.start && report) { close_fd(&O.sync_fd); return 0; }
  if (do_start() < 0) {
    if (report) sync_error("start", last_error);
    char saved[ERR_MAX];
    memcpy(saved, last_error, sizeof saved);
    runtime_delete(1);
    memcpy(last_error, saved, sizeof saved);
    return -1;
  }
  if (report) {
    char msg[64];
    snprintf(msg, sizeof msg, "{\"event\":\"started\",\"pid\":%d}\n", init_pid);
    sync_send(msg);
    close_fd(&O.sync_fd);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (parse_args(argc, argv) < 0) {
    sync_error("args", last_error);
    fprintf(stderr, "berth-monitor: %s\n", last_error);
    return 2;
  }
  if (chdir("/") < 0) { /* harmless: all paths are absolute */ }
  if (setup() < 0) {
    sync_error("setup", last_error);
    cleanup();
    return 1;
  }
  if (create_and_start(1) < 0) {
    write_exit_file(0, 0, 0);
    cleanup();
    return 1;
  }
  int rc = 0;
  while (st != ST_STOPPED) {
    struct pollfd pfd[4 + MAX_CLIENTS];
    struct client *who[4 + MAX_CLIENTS];
    int n = 0;
    pfd[n++] = (struct pollfd){ .fd = sig_fd, .events = POLLIN };
    pfd[n++] = (struct pollfd){ .fd = ctl_fd, .events = POLLIN };
    pfd[n++] = (struct pollfd){ .fd = attach_fd, .events = POLLIN };
    pfd[n++] = (struct pollfd){ .fd = out_s.fd, .events = POLLIN };
    pfd[n++] = (struct pollfd){ .fd = O.terminal ? -1 : err_s.fd, .events = POLLIN };
    int base = n;
    for (int i = 0; i < MAX_CLIENTS; i++) {
      if (clients[i].fd < 0) continue;
      who[n] = &clients[i];
      pfd[n++] = (struct pollfd){ .fd = clients[i].fd, .events = POLLIN };
    }
    int timeout = -1;
    if (st == ST_BACKOFF) {
      long long ms = ms_until(&backoff_until);
      timeout = ms < 0 ? 0 : (int)ms;
    }
    int r = poll(pfd, (nfds_t)n, timeout);
    if (r < 0 && errno != EINTR) { rc = 1; break; }
    if (st == ST_BACKOFF && ms_until(&backoff_until) <= 0) {
      restarts++;
      if (create_and_start(0) < 0) {
        write_exit_file(0, 0, 0);
        st = ST_STOPPED;
        rc = 1;
        break;
      }
      continue;
    }
    if (r <= 0) continue;
    if (pfd[3].revents) stream_read(&out_s);
    if (pfd[4].revents) stream_read(&err_s);
    if (pfd[0].revents) reap_all();
    if (pfd[1].revents) ctl_handle();
    if (pfd[2].revents) attach_accept();
    for (int i = base; i < n; i++) if (pfd[i].revents && who[i]->fd >= 0) client_read(who[i]);
  }
  /* reap orphans that are already gone; nothing else should be left once init has exited */
  for (int status; waitpid(-1, &status, WNOHANG) > 0;) {}
  cleanup();
  return rc;
}
