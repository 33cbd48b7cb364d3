/*
 * spawn.c: the container init, from clone() to execve(). No JavaScript runs in the child.
 *
 * Job: berth_spawn() (called synchronously through koffi from runtime/linux/spawn.ts, or from C)
 * decodes a binary SpawnConfig, copies everything the child needs into memory allocated before
 * clone, opens the namespace files to join, the exec fifo (O_PATH) and two socketpairs, then
 * clone()s (fork-like raw clone: the child runs on a copy of the caller's stack; CLONE_PIDFD;
 * CLONE_NEW* for the namespaces to create; CLONE_PARENT when asked; SIGCHLD as exit signal).
 * Joining an existing PID namespace is done with setns(CLONE_NEWPID) on the calling thread around
 * clone (it only affects children) and restored afterwards, so the returned pid is the process
 * that will exec and stays waitable by the caller. A new cgroup namespace is unshared by the
 * child after GO, i.e. after the parent has put it in its cgroup. Time namespaces are refused.
 *
 * The child is async-signal-safe C only: no malloc, no stdio, no locale; raw syscalls where glibc
 * wrappers take locks or broadcast to threads (setresuid/setresgid/setgroups, capset, seccomp,
 * prlimit, pivot_root, openat2, clone, close_range). Its order follows runc/crun:
 *   reset signals, setsid, pdeathsig, oom_score_adj, exec fifo (createExecFifo), wait GO | setns user, then ipc/uts/net/
 *   cgroup/mnt; unshare cgroupns | sethostname/setdomainname | "/" MS_SLAVE|MS_REC (or
 *   rootfsPropagation), bind rootfs on itself, mounts in order (destinations resolved with
 *   openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS), created component by component inside the
 *   rootfs, mounted through /proc/self/fd/N, bind flags applied by remount, then propagation),
 *   /dev (devices by mknod, or bind from the host path in a user ns; fd/stdin/stdout/stderr/ptmx
 *   symlinks), sysctls | HOOKS pause | pivot_root(".", ".") + detach old root (or MS_MOVE +
 *   chroot), root propagation, readonly root, masked paths, readonly paths | rlimits | terminal |
 *   stdio + extra fds, CLOEXEC on the rest | seccomp here if !no_new_privs | bounding set, keepcaps,
 *   groups/gid/uid, capset, ambient | no_new_privs | umask, chdir, PATH lookup | READY + exec fifo |
 *   seccomp here if no_new_privs | execve.
 *
 * Sync protocol. Two AF_UNIX SOCK_STREAM|SOCK_CLOEXEC socketpairs: the sync socket carries framed
 * messages {u32 type, u32 len, payload[len]} (host byte order); the fd socket carries only
 * SCM_RIGHTS (1 byte + 1 fd), so a parent reading the sync socket with plain read() (Node's
 * net.Socket) never loses an fd: it calls berth_recv_fd(fdsock) when it sees PTY, and the fd is
 * already queued because the child sends it before the PTY message.
 *
 *   message   | direction      | when                                          | payload
 *   ----------+----------------+-----------------------------------------------+---------------------------
 *   GO        | parent -> child| after parent setup (uid/gid maps, cgroup, net) | none
 *   HOOKS     | child -> parent| cfg.hookPause: mounts done, before pivot_root  | none
 *   CONTINUE  | parent -> child| after HOOKS, when the hooks have run           | none
 *   PTY       | child -> parent| cfg.terminal: master already sent on fd socket | none
 *   READY     | child -> parent| cfg.execFifo: all set up, about to open fifo   | none
 *   ERROR     | child -> parent| any failure; child then _exit(127)             | i32 errno, char stage[16]
 *             |                |                                               | (NUL-padded), message bytes
 *   (EOF)     | child -> parent| execve succeeded (sync socket is CLOEXEC)     | -
 *   (EOF)     | parent -> child| the caller closed its end or died before GO   | - (the child exits)
 * Order seen by the parent: [HOOKS..CONTINUE] [PTY] [READY] then EOF or ERROR. An ERROR may come
 * at any point and is final. EOF without ERROR means execve succeeded.
 * Stages: "sync", "setns", "unshare", "hostname", "mount", "dev", "sysctl", "pivot_root",
 * "rootfs", "masked", "readonly", "rlimit", "oom_score_adj", "terminal", "stdio", "seccomp",
 * "capabilities", "user", "no_new_privs", "cwd", "exec_fifo", "exec".
 *
 * Config encoding (produced by encodeSpawnConfig in runtime/linux/spawn.ts). Host byte order,
 * every field 4-byte aligned. u32/i32: 4 bytes. u64: two u32 (low, high). str: u32 len, len
 * bytes, NUL, zero padding to a multiple of 4. blob: u32 len, bytes, zero padding to 4.
 *   u32 magic 0x31545242 ("BRT1")
 *   u32 nns, nns * { u32 clone_flag (CLONE_NEW*), str path ("" = create) }
 *   str rootfs, u32 rootfs_readonly, u32 rootfs_propagation, u32 no_pivot
 *   u32 nmounts, nmounts * { str source, str destination, str fstype, u32 flags,
 *                            u32 nprop, nprop * u32, str data }
 *   u32 setup_dev
 *   u32 ndev, ndev * { str path, u32 type ('c','b','p'), u32 major, u32 minor, u32 mode, u32 uid, u32 gid }
 *   u32 nmasked, str...; u32 nreadonly, str...
 *   str hostname, str domainname
 *   u32 nsysctl, nsysctl * { str key, str value }
 *   u32 nrlimit, nrlimit * { u32 resource, u64 soft, u64 hard }
 *   u32 has_oom, i32 oom_score_adj
 *   u32 has_caps, u64 bounding, u64 effective, u64 permitted, u64 inheritable, u64 ambient
 *   u32 no_new_privs
 *   u32 has_seccomp, u32 seccomp_flags, blob program (struct sock_filter[])
 *   u32 uid, u32 gid, u32 ngids, ngids * u32
 *   u32 has_umask, u32 umask
 *   str cwd, u32 nargs, str..., u32 nenv, str...
 *   u32 terminal, i32 stdio[3], u32 nextra, nextra * i32
 *   str exec_fifo, u32 clone_parent, u32 pdeathsig, u32 hook_pause, u32 create_exec_fifo (optional:
 *   the fifo is made by the child before GO, or before clone when the child gets a new user ns)
 *   u32 end magic 0x444e4542 ("BEND")
 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>
#include <pthread.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#define MAGIC 0x31545242u
#define END_MAGIC 0x444e4542u
#define MAX_ITEMS 65536u
#define STAGE_LEN 16

/* ---------- decoded config (allocated by the parent before clone; read-only in the child) ---------- */

struct ns_entry { uint32_t flag; const char *path; int fd; };
struct mount_entry {
	const char *source, *dest, *fstype, *data;
	uint32_t flags, nprop;
	const uint32_t *prop; /* points into the config copy (4-byte aligned) */
};
struct dev_entry { const char *path; uint32_t type, major, minor, mode, uid, gid; };
struct sysctl_entry { const char *key, *value; };
struct rlimit_entry { uint32_t resource; uint64_t soft, hard; };

struct config {
	uint32_t nns; struct ns_entry *ns;
	const char *rootfs; uint32_t rootfs_readonly, rootfs_propagation, no_pivot;
	uint32_t nmounts; struct mount_entry *mounts;
	uint32_t setup_dev;
	uint32_t ndev; struct dev_entry *devs;
	uint32_t nmasked; const char **masked;
	uint32_t nreadonly; const char **readonly;
	const char *hostname, *domainname;
	uint32_t nsysctl; struct sysctl_entry *sysctls;
	uint32_t nrlimit; struct rlimit_entry *rlimits;
	uint32_t has_oom; int32_t oom;
	uint32_t has_caps; uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
	uint32_t nnp;
	uint32_t has_seccomp, seccomp_flags; struct sock_filter *seccomp_prog; uint32_t seccomp_len;
	uint32_t uid, gid, ngids; gid_t *gids;
	uint32_t has_umask, umask;
	const char *cwd;
	uint32_t nargs; char **args; /* NULL-terminated */
	uint32_t nenv; char **env;   /* NULL-terminated */
	uint32_t terminal; int32_t stdio[3]; uint32_t nextra; int32_t *extra;
	const char *exec_fifo; uint32_t clone_parent, pdeathsig, hook_pause, create_fifo;
	/* derived */
	uint32_t new_flags;   /* CLONE_NEW* to create at clone time */
	int new_cgroupns;     /* unshare after GO */
	int userns;           /* created or joined a user namespace */
	int has_mntns, has_utsns;
	int pid_join_fd;      /* -1 unless joining a pid ns */
	int fifo_fd;          /* O_PATH fd of exec_fifo or -1 */
	int child_fifo;       /* the child makes exec_fifo (create_fifo without a new user ns) */
	int from_zygote;      /* cloned by berth-zygote: only SIGPIPE differs from the defaults */
	pid_t parent_pid;     /* who the child's parent will be (for the pdeathsig race check) */
	int sync_fd, fd_sock; /* child ends */
	int parent_sync_fd, parent_fd_sock; /* the caller's ends: the child closes its copies first */
	char *blob;           /* the config copy every pointer refers into */
};

struct reader { uint8_t *p, *end; int bad; };

static uint32_t rd_u32(struct reader *r)
{
	uint32_t v;
	if (r->bad || r->end - r->p < 4) { r->bad = 1; return 0; }
	memcpy(&v, r->p, 4);
	r->p += 4;
	return v;
}

static uint64_t rd_u64(struct reader *r)
{
	uint64_t lo = rd_u32(r), hi = rd_u32(r);
	return lo | (hi << 32);
}

static uint32_t rd_count(struct reader *r)
{
	uint32_t n = rd_u32(r);
	if (n > MAX_ITEMS) r->bad = 1;
	return r->bad ? 0 : n;
}

static char *rd_str(struct reader *r)
{
	uint32_t len = rd_u32(r);
	size_t padded = ((size_t)len + 1 + 3) & ~(size_t)3;
	if (r->bad || (size_t)(r->end - r->p) < padded || r->p[len] != 0) { r->bad = 1; return (char *)""; }
	char *s = (char *)r->p;
	r->p += padded;
	return s;
}

static void *rd_blob(struct reader *r, uint32_t *len)
{
	*len = rd_u32(r);
	size_t padded = ((size_t)*len + 3) & ~(size_t)3;
	if (r->bad || (size_t)(r->end - r->p) < padded) { r->bad = 1; *len = 0; return NULL; }
	void *b = r->p;
	r->p += padded;
	return b;
}

static void *xcalloc(size_t n, size_t sz, int *oom)
{
	void *p = calloc(n ? n : 1, sz);
	if (!p) *oom = 1;
	return p;
}

static void free_config(struct config *c)
{
	if (!c) return;
	for (uint32_t i = 0; c->ns && i < c->nns; i++)
		if (c->ns[i].fd >= 0) close(c->ns[i].fd);
	free(c->ns); free(c->mounts); free(c->devs); free(c->masked); free(c->readonly);
	free(c->sysctls); free(c->rlimits); free(c->seccomp_prog); free(c->gids);
	free(c->args); free(c->env); free(c->extra); free(c->blob);
	free(c);
}

/* Decode into *c. Returns NULL on success or a static message. */
static const char *decode(struct config *c, const uint8_t *cfg, size_t len)
{
	int oom = 0;
	c->blob = malloc(len + 8);
	if (!c->blob) return "out of memory copying the config";
	memcpy(c->blob, cfg, len);
	struct reader r = { (uint8_t *)c->blob, (uint8_t *)c->blob + len, 0 };
	if ((uintptr_t)c->blob % 4) return "config copy misaligned";
	if (rd_u32(&r) != MAGIC) return "bad config magic (encoder/decoder version mismatch)";

	c->nns = rd_count(&r);
	c->ns = xcalloc(c->nns, sizeof *c->ns, &oom);
	for (uint32_t i = 0; !oom && i < c->nns; i++) {
		c->ns[i].flag = rd_u32(&r); c->ns[i].path = rd_str(&r); c->ns[i].fd = -1;
	}
	c->rootfs = rd_str(&r); c->rootfs_readonly = rd_u32(&r); c->rootfs_propagation = rd_u32(&r); c->no_pivot = rd_u32(&r);
	c->nmounts = rd_count(&r);
	c->mounts = xcalloc(c->nmounts, sizeof *c->mounts, &oom);
	for (uint32_t i = 0; !oom && i < c->nmounts; i++) {
		struct mount_entry *m = &c->mounts[i];
		m->source = rd_str(&r); m->dest = rd_str(&r); m->fstype = rd_str(&r); m->flags = rd_u32(&r);
		m->nprop = rd_count(&r);
		m->prop = (const uint32_t *)r.p;
		for (uint32_t j = 0; j < m->nprop; j++) rd_u32(&r);
		m->data = rd_str(&r);
	}
	c->setup_dev = rd_u32(&r);
	c->ndev = rd_count(&r);
	c->devs = xcalloc(c->ndev, sizeof *c->devs, &oom);
	for (uint32_t i = 0; !oom && i < c->ndev; i++) {
		struct dev_entry *d = &c->devs[i];
		d->path = rd_str(&r); d->type = rd_u32(&r); d->major = rd_u32(&r); d->minor = rd_u32(&r);
		d->mode = rd_u32(&r); d->uid = rd_u32(&r); d->gid = rd_u32(&r);
	}
	c->nmasked = rd_count(&r);
	c->masked = xcalloc(c->nmasked, sizeof *c->masked, &oom);
	for (uint32_t i = 0; !oom && i < c->nmasked; i++) c->masked[i] = rd_str(&r);
	c->nreadonly = rd_count(&r);
	c->readonly = xcalloc(c->nreadonly, sizeof *c->readonly, &oom);
	for (uint32_t i = 0; !oom && i < c->nreadonly; i++) c->readonly[i] = rd_str(&r);
	c->hostname = rd_str(&r); c->domainname = rd_str(&r);
	c->nsysctl = rd_count(&r);
	c->sysctls = xcalloc(c->nsysctl, sizeof *c->sysctls, &oom);
	for (uint32_t i = 0; !oom && i < c->nsysctl; i++) { c->sysctls[i].key = rd_str(&r); c->sysctls[i].value = rd_str(&r); }
	c->nrlimit = rd_count(&r);
	c->rlimits = xcalloc(c->nrlimit, sizeof *c->rlimits, &oom);
	for (uint32_t i = 0; !oom && i < c->nrlimit; i++) {
		c->rlimits[i].resource = rd_u32(&r); c->rlimits[i].soft = rd_u64(&r); c->rlimits[i].hard = rd_u64(&r);
	}
	c->has_oom = rd_u32(&r); c->oom = (int32_t)rd_u32(&r);
	c->has_caps = rd_u32(&r);
	c->cap_bounding = rd_u64(&r); c->cap_effective = rd_u64(&r); c->cap_permitted = rd_u64(&r);
	c->cap_inheritable = rd_u64(&r); c->cap_ambient = rd_u64(&r);
	c->nnp = rd_u32(&r);
	c->has_seccomp = rd_u32(&r); c->seccomp_flags = rd_u32(&r);
	uint32_t plen = 0;
	void *prog = rd_blob(&r, &plen);
	if (c->has_seccomp) {
		if (plen == 0 || plen % sizeof(struct sock_filter) || plen / sizeof(struct sock_filter) > BPF_MAXINSNS)
			return "seccomp program must be a non-empty array of 8-byte sock_filter entries (at most 4096)";
		c->seccomp_prog = malloc(plen);
		if (!c->seccomp_prog) return "out of memory";
		memcpy(c->seccomp_prog, prog, plen);
		c->seccomp_len = plen / sizeof(struct sock_filter);
	}
	c->uid = rd_u32(&r); c->gid = rd_u32(&r);
	c->ngids = rd_count(&r);
	c->gids = xcalloc(c->ngids, sizeof *c->gids, &oom);
	for (uint32_t i = 0; !oom && i < c->ngids; i++) c->gids[i] = rd_u32(&r);
	c->has_umask = rd_u32(&r); c->umask = rd_u32(&r);
	c->cwd = rd_str(&r);
	c->nargs = rd_count(&r);
	c->args = xcalloc(c->nargs + 1, sizeof *c->args, &oom);
	for (uint32_t i = 0; !oom && i < c->nargs; i++) c->args[i] = rd_str(&r);
	c->nenv = rd_count(&r);
	c->env = xcalloc(c->nenv + 1, sizeof *c->env, &oom);
	for (uint32_t i = 0; !oom && i < c->nenv; i++) c->env[i] = rd_str(&r);
	c->terminal = rd_u32(&r);
	for (int i = 0; i < 3; i++) c->stdio[i] = (int32_t)rd_u32(&r);
	c->nextra = rd_count(&r);
	c->extra = xcalloc(c->nextra, sizeof *c->extra, &oom);
	for (uint32_t i = 0; !oom && i < c->nextra; i++) c->extra[i] = (int32_t)rd_u32(&r);
	c->exec_fifo = rd_str(&r); c->clone_parent = rd_u32(&r); c->pdeathsig = rd_u32(&r); c->hook_pause = rd_u32(&r);
	/* create_exec_fifo came later: an encoder that predates it ends with the trailer here. */
	uint32_t next = rd_u32(&r);
	if (next != END_MAGIC) { c->create_fifo = next; next = rd_u32(&r); }
	if (next != END_MAGIC && !r.bad) return "config trailer missing (encoder/decoder version mismatch)";
	if (oom) return "out of memory decoding the config";
	if (r.bad) return "config is truncated or malformed";
	if (r.p != r.end) return "config has trailing bytes";
	return NULL;
}

/* ---------- tiny async-signal-safe message builder ---------- */

static char g_msg[2048];
static size_t g_msglen;

static void msg_reset(void) { g_msglen = 0; g_msg[0] = 0; }
static void msg_s(const char *s)
{
	while (s && *s && g_msglen < sizeof g_msg - 1) g_msg[g_msglen++] = *s++;
	g_msg[g_msglen] = 0;
}
static void msg_u(unsigned long long v)
{
	char tmp[24]; int n = 0;
	do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
	while (n && g_msglen < sizeof g_msg - 1) g_msg[g_msglen++] = tmp[--n];
	g_msg[g_msglen] = 0;
}
static void msg_i(long long v)
{
	if (v < 0) { msg_s("-"); msg_u((unsigned long long)(-(v + 1)) + 1); } else msg_u((unsigned long long)v);
}

static void fmt_into(char *buf, size_t cap, const char *a, long long n, const char *b)
{
	size_t len = 0;
	char num[24]; int k = 0; unsigned long long v = n < 0 ? 0 : (unsigned long long)n;
	for (; a && *a && len < cap - 1; a++) buf[len++] = *a;
	if (n >= 0) {
		do { num[k++] = (char)('0' + v % 10); v /= 10; } while (v);
		while (k && len < cap - 1) buf[len++] = num[--k];
	}
	for (; b && *b && len < cap - 1; b++) buf[len++] = *b;
	buf[len] = 0;
}

/* ---------- child side ---------- */

static struct config *C; /* the child's view of the config (copied memory) */

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) { if (errno == EINTR) continue; return -errno; }
		p += n; len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0) { if (errno == EINTR) continue; return -errno; }
		if (n == 0) return -EPIPE;
		p += n; len -= (size_t)n;
	}
	return 0;
}

static void send_msg(int type)
{
	uint32_t h[2] = { (uint32_t)type, 0 };
	(void)write_all(C->sync_fd, h, sizeof h);
}

static void expect_msg(int type, const char *what);

__attribute__((noreturn)) static void die(const char *stage, int err)
{
	struct { uint32_t type, len; int32_t err; char stage[STAGE_LEN]; } __attribute__((packed)) h;
	memset(&h, 0, sizeof h);
	h.type = BERTH_SYNC_ERROR;
	h.len = (uint32_t)(4 + STAGE_LEN + g_msglen);
	h.err = err;
	for (int i = 0; i < STAGE_LEN - 1 && stage[i]; i++) h.stage[i] = stage[i];
	(void)write_all(C->sync_fd, &h, sizeof h);
	(void)write_all(C->sync_fd, g_msg, g_msglen);
	_exit(127);
}

static void expect_msg(int type, const char *what)
{
	uint32_t h[2];
	int r = read_all(C->sync_fd, h, sizeof h);
	if (r < 0) _exit(126); /* parent gone: nobody to report to */
	if (h[0] != (uint32_t)type || h[1] != 0) {
		msg_reset(); msg_s("unexpected sync message while waiting for "); msg_s(what);
		die("sync", EPROTO);
	}
}

static int open_in_root(int rootfd, const char *path)
{
	struct open_how how;
	memset(&how, 0, sizeof how);
	how.flags = O_PATH | O_CLOEXEC;
	how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
	long r = syscall(SYS_openat2, rootfd, *path ? path : "/", &how, sizeof how);
	return r < 0 ? -errno : (int)r;
}

/*
 * Resolve path inside rootfd, creating missing components (directories; the last one a regular
 * file when as_file). Symlinks are resolved as if rootfd were "/", so nothing escapes it.
 * Returns an O_PATH fd or -errno.
 */
static char g_pathbuf[PATH_MAX];

/* The last component of path (which has no trailing '/') is missing: make it in its parent when
 * that exists (the usual case: one level below a mount just made). 1: done (*out set), 0: the
 * parent is missing too, < 0: -errno. */
static int mk_last_in_root(int rootfd, const char *path, size_t len, int as_file, int *out)
{
	size_t cut = len;
	while (cut > 0 && path[cut - 1] != '/') cut--;
	if (cut <= 1 || len - cut >= NAME_MAX) return 0; /* directly under "/" or odd: the general walk */
	memcpy(g_pathbuf, path, cut - 1);
	g_pathbuf[cut - 1] = 0;
	int parent = open_in_root(rootfd, g_pathbuf);
	if (parent == -ENOENT) return 0;
	if (parent < 0) return parent;
	const char *comp = path + cut;
	int r;
	if (as_file) {
		r = openat(parent, comp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (r >= 0) close(r);
	} else {
		r = mkdirat(parent, comp, 0755);
	}
	int e = r < 0 ? errno : 0;
	close(parent);
	if (r < 0 && e != EEXIST) return -e;
	int fd = open_in_root(rootfd, path);
	if (fd < 0) return fd;
	*out = fd;
	return 1;
}

static int mkpath_in_root(int rootfd, const char *path, int create, int as_file)
{
	int fd = open_in_root(rootfd, path);
	if (fd >= 0 || fd != -ENOENT || !create) return fd;
	size_t len = strlen(path);
	if (len >= sizeof g_pathbuf) return -ENAMETOOLONG;
	if (len > 1 && path[len - 1] != '/') {
		int r = mk_last_in_root(rootfd, path, len, as_file, &fd);
		if (r != 0) return r < 0 ? r : fd;
	}
	memcpy(g_pathbuf, path, len + 1);
	int parent = open_in_root(rootfd, "/");
	if (parent < 0) return parent;
	size_t i = 0;
	while (i < len) {
		while (i < len && g_pathbuf[i] == '/') i++;
		if (i >= len) break;
		size_t start = i;
		while (i < len && g_pathbuf[i] != '/') i++;
		char saved = g_pathbuf[i];
		g_pathbuf[i] = 0;
		int last = 1;
		for (size_t k = i; k < len; k++) if (g_pathbuf[k] != '/' && k != i) { last = 0; break; }
		fd = open_in_root(rootfd, g_pathbuf);
		if (fd == -ENOENT) {
			const char *comp = g_pathbuf + start;
			int r;
			if (last && as_file) {
				r = openat(parent, comp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
				if (r >= 0) close(r);
			} else {
				r = mkdirat(parent, comp, 0755);
			}
			if (r < 0 && errno != EEXIST) { int e = -errno; close(parent); return e; }
			fd = open_in_root(rootfd, g_pathbuf);
		}
		g_pathbuf[i] = saved;
		close(parent);
		if (fd < 0) return fd;
		parent = fd;
	}
	return parent;
}

static void fd_path(char *buf, size_t cap, int fd) { fmt_into(buf, cap, "/proc/self/fd/", fd, ""); }

static unsigned long statfs_to_ms(unsigned long f)
{
	unsigned long m = 0;
	if (f & ST_NOSUID) m |= MS_NOSUID;
	if (f & ST_NODEV) m |= MS_NODEV;
	if (f & ST_NOEXEC) m |= MS_NOEXEC;
	if (f & ST_NOATIME) m |= MS_NOATIME;
	if (f & ST_NODIRATIME) m |= MS_NODIRATIME;
	if (f & ST_RELATIME) m |= MS_RELATIME;
	return m;
}

/* Remount a bind mount (given as a path) read-only, keeping the flags the kernel may have locked. */
static int remount_ro(const char *target, unsigned long extra)
{
	struct statfs st;
	unsigned long keep = 0;
	if (statfs(target, &st) == 0) keep = statfs_to_ms((unsigned long)st.f_flags);
	if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | keep | extra, NULL) < 0) return -errno;
	return 0;
}

#define BIND_REMOUNT_FLAGS (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME | MS_NOSYMFOLLOW)

static void mount_error(const struct mount_entry *m, const char *what, int err)
{
	msg_reset();
	msg_s(what); msg_s(" "); msg_s(*m->source ? m->source : "none"); msg_s(" on "); msg_s(m->dest);
	if (*m->fstype) { msg_s(" ("); msg_s(m->fstype); msg_s(")"); }
	die("mount", err);
}

static void do_mount(int rootfd, const struct mount_entry *m)
{
	int is_bind = (m->flags & MS_BIND) || !*m->fstype || !strcmp(m->fstype, "bind");
	int as_file = 0;
	if (is_bind) {
		struct stat st;
		if (stat(m->source, &st) < 0) mount_error(m, "bind source missing for", errno);
		as_file = !S_ISDIR(st.st_mode);
	}
	int fd = mkpath_in_root(rootfd, m->dest, 1, as_file);
	if (fd < 0) mount_error(m, "resolve mount destination for", -fd);
	char target[64];
	fd_path(target, sizeof target, fd);
	if (is_bind) {
		if (mount(m->source, target, NULL, MS_BIND | (m->flags & MS_REC), NULL) < 0) mount_error(m, "bind", errno);
	} else {
		if (mount(m->source, target, m->fstype, m->flags, *m->data ? m->data : NULL) < 0) mount_error(m, "mount", errno);
	}
	close(fd);
	/* Reopen: the fd still names the covered directory, not the new mount. */
	fd = open_in_root(rootfd, m->dest);
	if (fd < 0) mount_error(m, "reopen mount destination of", -fd);
	fd_path(target, sizeof target, fd);
	if (is_bind && (m->flags & BIND_REMOUNT_FLAGS)) {
		int r;
		if (m->flags & MS_RDONLY) r = remount_ro(target, m->flags & BIND_REMOUNT_FLAGS & ~MS_RDONLY);
		else r = mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | (m->flags & BIND_REMOUNT_FLAGS), NULL) < 0 ? -errno : 0;
		if (r < 0) mount_error(m, "remount bind flags of", -r);
	}
	for (uint32_t i = 0; i < m->nprop; i++)
		if (mount(NULL, target, NULL, m->prop[i], NULL) < 0) mount_error(m, "set propagation of", errno);
	close(fd);
}

static const char *base_name(const char *p)
{
	const char *b = p;
	for (; *p; p++) if (*p == '/' && p[1]) b = p + 1;
	return b;
}

/* Copy the parent directory of path into buf ("/dev/null" -> "/dev"). */
static void dir_name(char *buf, size_t cap, const char *p)
{
	size_t len = strlen(p);
	while (len > 1 && p[len - 1] == '/') len--;
	while (len > 0 && p[len - 1] != '/') len--;
	if (len >= cap) len = cap - 1;
	memcpy(buf, p, len);
	buf[len] = 0;
	if (!len) { buf[0] = '/'; buf[1] = 0; }
}

static void dev_fail(const char *what, const char *path, int err)
{
	msg_reset(); msg_s(what); msg_s(" "); msg_s(path);
	die("dev", err);
}

/* The parent directory of the last device made (most devices share /dev): path and O_PATH fd. */
static char g_devdir[PATH_MAX];
static int g_devdirfd = -1;

static void create_device(int rootfd, const struct dev_entry *d)
{
	char dir[PATH_MAX];
	dir_name(dir, sizeof dir, d->path);
	if (g_devdirfd < 0 || strcmp(dir, g_devdir)) {
		if (g_devdirfd >= 0) close(g_devdirfd);
		g_devdirfd = mkpath_in_root(rootfd, dir, 1, 0);
		if (g_devdirfd < 0) dev_fail("create parent directory of device", d->path, -g_devdirfd);
		memcpy(g_devdir, dir, strlen(dir) + 1);
	}
	int dfd = g_devdirfd;
	const char *name = base_name(d->path);
	if (C->userns) {
		/* mknod is not allowed in a user namespace: bind the host's node instead (as runc). */
		int f = openat(dfd, name, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0000);
		if (f < 0) dev_fail("create bind target for device", d->path, errno);
		close(f);
		int t = open_in_root(rootfd, d->path);
		if (t < 0) dev_fail("open bind target for device", d->path, -t);
		char target[64];
		fd_path(target, sizeof target, t);
		if (mount(d->path, target, NULL, MS_BIND, NULL) < 0) dev_fail("bind host device", d->path, errno);
		close(t);
	} else {
		mode_t type = d->type == 'b' ? S_IFBLK : d->type == 'p' ? S_IFIFO : S_IFCHR;
		dev_t dev = makedev(d->major, d->minor);
		if (mknodat(dfd, name, type | (d->mode & 07777), dev) < 0) {
			if (errno != EEXIST) dev_fail("mknod", d->path, errno);
			if (unlinkat(dfd, name, 0) < 0 || mknodat(dfd, name, type | (d->mode & 07777), dev) < 0)
				dev_fail("replace existing node with device", d->path, errno);
		}
		if (fchownat(dfd, name, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0) dev_fail("chown device", d->path, errno);
	}
}

static void setup_dev(int rootfd)
{
	int dfd = mkpath_in_root(rootfd, "/dev", 1, 0);
	if (dfd < 0) dev_fail("open", "/dev", -dfd);
	static const char *const links[][2] = {
		{ "/proc/self/fd", "fd" }, { "/proc/self/fd/0", "stdin" },
		{ "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" },
	};
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
		if (symlinkat(links[i][0], dfd, links[i][1]) < 0 && errno != EEXIST)
			dev_fail("symlink /dev/", links[i][1], errno);
	if (unlinkat(dfd, "ptmx", 0) < 0 && errno != ENOENT) dev_fail("remove", "/dev/ptmx", errno);
	if (symlinkat("pts/ptmx", dfd, "ptmx") < 0) dev_fail("symlink", "/dev/ptmx", errno);
	close(dfd);
}

static void write_file(const char *stage, const char *path, const char *val, const char *what)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t len = strlen(val);
	if (fd < 0 || write(fd, val, len) != (ssize_t)len) {
		int e = errno;
		msg_reset(); msg_s(what); msg_s(" "); msg_s(path); msg_s(" = "); msg_s(val);
		die(stage, e);
	}
	close(fd);
}

static void do_sysctls(void)
{
	for (uint32_t i = 0; i < C->nsysctl; i++) {
		char path[PATH_MAX];
		size_t n = 0;
		const char *pre = "/proc/sys/";
		while (*pre) path[n++] = *pre++;
		for (const char *k = C->sysctls[i].key; *k && n < sizeof path - 1; k++) path[n++] = *k == '.' ? '/' : *k;
		path[n] = 0;
		write_file("sysctl", path, C->sysctls[i].value, "write sysctl");
	}
}

static void mask_paths(void)
{
	for (uint32_t i = 0; i < C->nmasked; i++) {
		const char *p = C->masked[i];
		struct stat st;
		if (lstat(p, &st) < 0) {
			if (errno == ENOENT) continue;
			msg_reset(); msg_s("stat masked path "); msg_s(p); die("masked", errno);
		}
		int r = S_ISDIR(st.st_mode) ? mount("tmpfs", p, "tmpfs", MS_RDONLY, NULL) : mount("/dev/null", p, NULL, MS_BIND, NULL);
		if (r < 0) {
			/* The target exists (lstat above): ENOENT here means no /dev/null, never ignore it. */
			msg_reset(); msg_s("mask "); msg_s(p); msg_s(S_ISDIR(st.st_mode) ? " with a read-only tmpfs" : " with /dev/null");
			die("masked", errno);
		}
	}
}

static void readonly_paths(void)
{
	for (uint32_t i = 0; i < C->nreadonly; i++) {
		const char *p = C->readonly[i];
		if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
			if (errno == ENOENT) continue;
			msg_reset(); msg_s("bind readonly path "); msg_s(p); die("readonly", errno);
		}
		int r = remount_ro(p, 0);
		if (r < 0) { msg_reset(); msg_s("remount read-only "); msg_s(p); die("readonly", -r); }
	}
}

static const char *const rlimit_names[] = {
	"RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
	"RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS",
	"RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
};

static void msg_limit(uint64_t v)
{
	if (v == UINT64_MAX) msg_s("unlimited"); else msg_u(v);
}

static void do_rlimits(void)
{
	for (uint32_t i = 0; i < C->nrlimit; i++) {
		const struct rlimit_entry *l = &C->rlimits[i];
		struct rlimit64 { uint64_t cur, max; } v = { l->soft, l->hard };
		if (syscall(SYS_prlimit64, 0, l->resource, &v, NULL) < 0) {
			int e = errno;
			msg_reset(); msg_s("setrlimit ");
			if (l->resource < sizeof rlimit_names / sizeof rlimit_names[0]) msg_s(rlimit_names[l->resource]);
			else { msg_s("resource "); msg_u(l->resource); }
			msg_s(" soft="); msg_limit(l->soft); msg_s(" hard="); msg_limit(l->hard);
			if (e == EPERM) msg_s(": above the caller's hard limit (raising it needs CAP_SYS_RESOURCE)");
			die("rlimit", e);
		}
	}
}

static int send_fd_raw(int sock, int fd)
{
	char byte = 'F';
	struct iovec iov = { &byte, 1 };
	union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
	memset(&u, 0, sizeof u);
	struct msghdr mh;
	memset(&mh, 0, sizeof mh);
	mh.msg_iov = &iov; mh.msg_iovlen = 1;
	mh.msg_control = u.buf; mh.msg_controllen = sizeof u.buf;
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	for (;;) {
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
		if (n >= 0) return 0;
		if (errno != EINTR) return -errno;
	}
}

/* Move fd above floor (keeping CLOEXEC); returns the new fd. */
static int fd_above(int fd, int floor, const char *what)
{
	if (fd < 0 || fd >= floor) return fd;
	int n = fcntl(fd, F_DUPFD_CLOEXEC, floor);
	if (n < 0) { msg_reset(); msg_s("move "); msg_s(what); msg_s(" fd out of the way"); die("stdio", errno); }
	close(fd);
	return n;
}

static int setup_terminal(void)
{
	int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0) { msg_reset(); msg_s("open /dev/ptmx (is devpts mounted on /dev/pts with newinstance?)"); die("terminal", errno); }
	int zero = 0;
	if (ioctl(master, TIOCSPTLCK, &zero) < 0) { msg_reset(); msg_s("unlock pty"); die("terminal", errno); }
	int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0) { msg_reset(); msg_s("open pty slave"); die("terminal", errno); }
	if (ioctl(slave, TIOCSCTTY, 0) < 0) { msg_reset(); msg_s("set pty slave as controlling terminal"); die("terminal", errno); }
	int r = send_fd_raw(C->fd_sock, master);
	if (r < 0) { msg_reset(); msg_s("send pty master to the parent"); die("terminal", -r); }
	send_msg(BERTH_SYNC_PTY);
	close(master);
	return slave;
}

static void setup_stdio(int tty)
{
	int n = 3 + (int)C->nextra;
	C->sync_fd = fd_above(C->sync_fd, n, "sync socket");
	C->fd_sock = fd_above(C->fd_sock, n, "fd socket");
	C->fifo_fd = fd_above(C->fifo_fd, n, "exec fifo");
	int src[3 + 1024];
	if (C->nextra > 1024) { msg_reset(); msg_s("too many extra fds (max 1024)"); die("stdio", EINVAL); }
	for (int i = 0; i < n; i++) {
		int s = i < 3 ? (C->terminal ? tty : C->stdio[i]) : C->extra[i - 3];
		src[i] = -1;
		if (s < 0) continue;
		src[i] = fcntl(s, F_DUPFD_CLOEXEC, n);
		if (src[i] < 0) {
			msg_reset(); msg_s("duplicate fd "); msg_i(s); msg_s(" for container fd "); msg_i(i);
			die("stdio", errno);
		}
	}
	for (int i = 0; i < n; i++) {
		if (src[i] < 0) continue;
		if (dup2(src[i], i) < 0) { msg_reset(); msg_s("dup2 to container fd "); msg_i(i); die("stdio", errno); }
		close(src[i]);
	}
	if (tty >= n) close(tty);
	if (syscall(SYS_close_range, (unsigned)n, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
		for (int fd = n; fd < 65536; fd++) {
			int fl = fcntl(fd, F_GETFD);
			if (fl >= 0 && !(fl & FD_CLOEXEC)) fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
		}
	}
}

static void install_seccomp(void)
{
	struct sock_fprog prog = { (unsigned short)C->seccomp_len, C->seccomp_prog };
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, C->seccomp_flags, &prog) < 0) {
		msg_reset(); msg_s("install seccomp filter ("); msg_u(C->seccomp_len); msg_s(" instructions, flags ");
		msg_u(C->seccomp_flags); msg_s(")");
		if (!C->nnp && errno == EACCES) msg_s(": needs CAP_SYS_ADMIN or no_new_privs");
		die("seccomp", errno);
	}
}

static void cap_fail(const char *what, int cap, int err)
{
	msg_reset(); msg_s(what);
	if (cap >= 0) { msg_s(" capability "); msg_i(cap); }
	die("capabilities", err);
}

static void drop_bounding(void)
{
	/* Dropping a capability that is already out of the set succeeds, so no PR_CAPBSET_READ first
	 * (half the syscalls); EINVAL means past CAP_LAST_CAP. */
	for (int c = 0; c < 64; c++) {
		if (C->cap_bounding & (1ULL << c)) continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
			int e = errno;
			if (e == EINVAL) break;
			/* Without CAP_SETPCAP every drop fails: fine for one that is already gone. */
			if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 0) continue;
			cap_fail("drop from bounding set", c, e);
		}
	}
}

static void apply_caps(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof data);
	data[0].effective = (uint32_t)C->cap_effective; data[1].effective = (uint32_t)(C->cap_effective >> 32);
	data[0].permitted = (uint32_t)C->cap_permitted; data[1].permitted = (uint32_t)(C->cap_permitted >> 32);
	data[0].inheritable = (uint32_t)C->cap_inheritable; data[1].inheritable = (uint32_t)(C->cap_inheritable >> 32);
	if (syscall(SYS_capset, &hdr, data) < 0) cap_fail("capset effective/permitted/inheritable", -1, errno);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		cap_fail("clear ambient set", -1, errno);
	/* The kernel only lets a capability into the ambient set when it is both permitted and
	 * inheritable. runc's own `spec` template asks for ambient caps without inheritable ones and
	 * runc runs it: like runc, skip those (and caps this kernel doesn't know, EINVAL) silently. */
	uint64_t raisable = C->cap_ambient & C->cap_permitted & C->cap_inheritable;
	for (int c = 0; c < 64; c++)
		if ((raisable & (1ULL << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0 && errno != EINVAL)
			cap_fail("raise ambient", c, errno);
}

static void set_user(void)
{
	if (C->has_caps && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) cap_fail("PR_SET_KEEPCAPS", -1, errno);
	if (!C->userns || C->ngids) {
		if (syscall(SYS_setgroups, (size_t)C->ngids, C->gids) < 0) {
			msg_reset(); msg_s("setgroups ("); msg_u(C->ngids); msg_s(" additional gids)");
			if (C->userns) msg_s(": /proc/<pid>/setgroups is probably \"deny\"");
			die("user", errno);
		}
	}
	if (syscall(SYS_setresgid, C->gid, C->gid, C->gid) < 0) {
		msg_reset(); msg_s("setresgid "); msg_u(C->gid); msg_s(" (is the gid mapped?)"); die("user", errno);
	}
	if (syscall(SYS_setresuid, C->uid, C->uid, C->uid) < 0) {
		msg_reset(); msg_s("setresuid "); msg_u(C->uid); msg_s(" (is the uid mapped?)"); die("user", errno);
	}
}

static char g_exe[PATH_MAX];

/* execvpe-style lookup of args[0]; fills g_exe or dies with stage "exec". */
static void lookup_exe(void)
{
	const char *name = C->args[0];
	if (strchr(name, '/')) {
		size_t l = strlen(name);
		if (l >= sizeof g_exe) { msg_reset(); msg_s("executable path too long"); die("exec", ENAMETOOLONG); }
		memcpy(g_exe, name, l + 1);
		struct stat st;
		if (stat(g_exe, &st) < 0) { msg_reset(); msg_s("exec \""); msg_s(name); msg_s("\""); die("exec", errno); }
		return;
	}
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (uint32_t i = 0; i < C->nenv; i++)
		if (!strncmp(C->env[i], "PATH=", 5)) path = C->env[i] + 5;
	int seen_eacces = 0;
	const char *p = path;
	for (;;) {
		const char *e = strchrnul(p, ':');
		size_t dl = (size_t)(e - p), nl = strlen(name);
		if (dl == 0) { g_exe[0] = '.'; dl = 1; } else if (dl < sizeof g_exe) memcpy(g_exe, p, dl);
		if (dl + 1 + nl < sizeof g_exe) {
			g_exe[dl] = '/';
			memcpy(g_exe + dl + 1, name, nl + 1);
			struct stat st;
			if (stat(g_exe, &st) == 0 && S_ISREG(st.st_mode)) {
				if (access(g_exe, X_OK) == 0) return;
				seen_eacces = 1;
			}
		}
		if (!*e) break;
		p = e + 1;
	}
	msg_reset(); msg_s("executable file \""); msg_s(name); msg_s("\" not found in $PATH ("); msg_s(path); msg_s(")");
	die("exec", seen_eacces ? EACCES : ENOENT);
}

static void reset_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	/* berth-zygote (zygote.c) only ignores SIGPIPE: one call instead of 64. */
	if (C->from_zygote) (void)sigaction(SIGPIPE, &sa, NULL);
	for (int s = 1; s < NSIG && !C->from_zygote; s++) {
		if (s == SIGKILL || s == SIGSTOP) continue;
		(void)sigaction(s, &sa, NULL);
	}
	sigset_t none;
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
}

static void join_namespaces(void)
{
	static const uint32_t order[] = { CLONE_NEWUSER, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNET, CLONE_NEWCGROUP, CLONE_NEWNS };
	for (size_t o = 0; o < sizeof order / sizeof order[0]; o++) {
		for (uint32_t i = 0; i < C->nns; i++) {
			struct ns_entry *n = &C->ns[i];
			if (n->flag != order[o] || n->fd < 0) continue;
			if (setns(n->fd, (int)n->flag) < 0) { msg_reset(); msg_s("join namespace "); msg_s(n->path); die("setns", errno); }
			close(n->fd);
			n->fd = -1;
		}
	}
	/*
	 * In a user namespace we created, become its root now that the parent wrote the maps (as
	 * runc does): until then our kuid 0 is unmapped there and creating inodes on filesystems the
	 * namespace owns (tmpfs on /dev) fails with EOVERFLOW. Ignored when 0 is not mapped.
	 */
	if (C->new_flags & CLONE_NEWUSER) {
		if (syscall(SYS_setresgid, 0, 0, 0) < 0 && errno != EINVAL) { msg_reset(); msg_s("setresgid 0 in the new user namespace"); die("user", errno); }
		if (syscall(SYS_setresuid, 0, 0, 0) < 0 && errno != EINVAL) { msg_reset(); msg_s("setresuid 0 in the new user namespace"); die("user", errno); }
	}
	if (C->new_cgroupns && unshare(CLONE_NEWCGROUP) < 0) { msg_reset(); msg_s("unshare cgroup namespace"); die("unshare", errno); }
}

__attribute__((noreturn)) static void child_main(struct config *cfg)
{
	C = cfg;
	/* The clone copied the caller's ends of both socketpairs. Holding them, the child would
	 * never read EOF: a caller that dies before pdeathsig is armed (the window cannot be checked
	 * in a new pid namespace) would leave it waiting for GO forever. */
	close(C->parent_sync_fd);
	close(C->parent_fd_sock);
	reset_signals();
	if (setsid() < 0) { /* already a leader only if our parent was odd; ignore */ }
	if (C->pdeathsig) {
		if (prctl(PR_SET_PDEATHSIG, C->pdeathsig, 0, 0, 0) < 0) { msg_reset(); msg_s("PR_SET_PDEATHSIG"); die("sync", errno); }
		/* Parent died before pdeathsig was armed? (Only checkable when we share its pid ns:
		 * in a new or joined one getppid() is 0 either way.) */
		if (!(C->new_flags & CLONE_NEWPID) && C->pid_join_fd < 0 && getppid() != C->parent_pid) _exit(126);
	}
	mode_t old_umask = umask(0);
	if (C->has_oom) {
		char v[24];
		if (C->oom < 0) fmt_into(v, sizeof v, "-", -(long long)C->oom, "");
		else fmt_into(v, sizeof v, "", C->oom, "");
		write_file("oom_score_adj", "/proc/self/oom_score_adj", v, "write");
	}
	/* Still in the caller's mount namespace (a copy) with its credentials, umask 0: mode 0622.
	 * EEXIST: left by a spawn that failed before (the caller retries after a zygote died). A
	 * failure is reported after GO, when the caller reads the sync socket. */
	int fifo_err = 0;
	if (C->child_fifo) {
		int r = mknod(C->exec_fifo, S_IFIFO | 0622, 0);
		if (r < 0 && errno == EEXIST && unlink(C->exec_fifo) == 0) r = mknod(C->exec_fifo, S_IFIFO | 0622, 0);
		if (r == 0) C->fifo_fd = open(C->exec_fifo, O_PATH | O_CLOEXEC);
		if (r < 0 || C->fifo_fd < 0) fifo_err = errno;
	}

	expect_msg(BERTH_SYNC_GO, "GO");
	if (fifo_err) { msg_reset(); msg_s("create exec fifo "); msg_s(C->exec_fifo); die("exec_fifo", fifo_err); }

	join_namespaces();
	if (*C->hostname && sethostname(C->hostname, strlen(C->hostname)) < 0) {
		msg_reset(); msg_s("sethostname "); msg_s(C->hostname); die("hostname", errno);
	}
	if (*C->domainname && setdomainname(C->domainname, strlen(C->domainname)) < 0) {
		msg_reset(); msg_s("setdomainname "); msg_s(C->domainname); die("hostname", errno);
	}

	int rootfd = -1;
	if (*C->rootfs || C->nmounts) {
		unsigned long rprop = C->rootfs_propagation ? C->rootfs_propagation : (MS_SLAVE | MS_REC);
		if (mount(NULL, "/", NULL, rprop, NULL) < 0) { msg_reset(); msg_s("set propagation of / before mounting"); die("mount", errno); }
		const char *root = *C->rootfs ? C->rootfs : "/";
		if (*C->rootfs && mount(root, root, NULL, MS_BIND | MS_REC, NULL) < 0) {
			msg_reset(); msg_s("bind rootfs "); msg_s(root); msg_s(" onto itself"); die("mount", errno);
		}
		rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (rootfd < 0) { msg_reset(); msg_s("open rootfs "); msg_s(root); die("mount", errno); }
		for (uint32_t i = 0; i < C->nmounts; i++) do_mount(rootfd, &C->mounts[i]);
		if (C->setup_dev) setup_dev(rootfd);
		for (uint32_t i = 0; i < C->ndev; i++) create_device(rootfd, &C->devs[i]);
		if (g_devdirfd >= 0) { close(g_devdirfd); g_devdirfd = -1; }
	}
	do_sysctls();

	if (C->hook_pause) {
		send_msg(BERTH_SYNC_HOOKS);
		expect_msg(BERTH_SYNC_CONTINUE, "CONTINUE after hooks");
	}

	if (*C->rootfs) {
		if (fchdir(rootfd) < 0) { msg_reset(); msg_s("chdir to rootfs "); msg_s(C->rootfs); die("pivot_root", errno); }
		if (C->no_pivot) {
			if (mount(C->rootfs, "/", NULL, MS_MOVE, NULL) < 0) { msg_reset(); msg_s("move rootfs "); msg_s(C->rootfs); msg_s(" to /"); die("pivot_root", errno); }
			if (chroot(".") < 0) { msg_reset(); msg_s("chroot to "); msg_s(C->rootfs); die("pivot_root", errno); }
		} else {
			if (syscall(SYS_pivot_root, ".", ".") < 0) { msg_reset(); msg_s("pivot_root to "); msg_s(C->rootfs); die("pivot_root", errno); }
			if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0) { msg_reset(); msg_s("make old root rslave"); die("pivot_root", errno); }
			if (umount2(".", MNT_DETACH) < 0) { msg_reset(); msg_s("detach old root"); die("pivot_root", errno); }
		}
		if (chdir("/") < 0) { msg_reset(); msg_s("chdir /"); die("pivot_root", errno); }
		if (C->rootfs_propagation && mount(NULL, "/", NULL, C->rootfs_propagation, NULL) < 0) {
			msg_reset(); msg_s("set rootfs propagation"); die("rootfs", errno);
		}
		if (C->rootfs_readonly) {
			int r = remount_ro("/", 0);
			if (r < 0) { msg_reset(); msg_s("remount / read-only"); die("rootfs", -r); }
		}
	}
	if (rootfd >= 0) close(rootfd);
	mask_paths();
	readonly_paths();
	do_rlimits();

	int tty = C->terminal ? setup_terminal() : -1;
	setup_stdio(tty);

	if (C->has_seccomp && !C->nnp) install_seccomp();
	if (C->has_caps) drop_bounding();
	set_user();
	/* A credential change clears the parent-death signal: arm it again (as runc does). */
	if (C->pdeathsig && prctl(PR_SET_PDEATHSIG, C->pdeathsig, 0, 0, 0) < 0) { msg_reset(); msg_s("PR_SET_PDEATHSIG after setuid"); die("user", errno); }
	if (C->has_caps) apply_caps();
	if (C->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) { msg_reset(); msg_s("PR_SET_NO_NEW_PRIVS"); die("no_new_privs", errno); }
	umask(C->has_umask ? (mode_t)C->umask : old_umask);
	if (*C->cwd && chdir(C->cwd) < 0) { msg_reset(); msg_s("chdir to working directory "); msg_s(C->cwd); die("cwd", errno); }
	lookup_exe();

	if (C->fifo_fd >= 0) {
		char p[64];
		fd_path(p, sizeof p, C->fifo_fd);
		send_msg(BERTH_SYNC_READY);
		int w = open(p, O_WRONLY | O_CLOEXEC);
		if (w < 0) { msg_reset(); msg_s("open exec fifo "); msg_s(C->exec_fifo); msg_s(" for writing (is /proc mounted?)"); die("exec_fifo", errno); }
		if (write(w, "0", 1) != 1) { msg_reset(); msg_s("write exec fifo "); msg_s(C->exec_fifo); die("exec_fifo", errno); }
		close(w);
		close(C->fifo_fd);
	}
	if (C->has_seccomp && C->nnp) install_seccomp();
	execve(g_exe, C->args, C->env);
	msg_reset(); msg_s("exec \""); msg_s(g_exe); msg_s("\"");
	die("exec", errno);
}

/* ---------- parent side ---------- */

static int set_err(char *err, size_t errlen, int e, const char *a, const char *b, const char *c)
{
	if (err && errlen) {
		size_t n = 0;
		const char *parts[3] = { a, b, c };
		for (int i = 0; i < 3; i++)
			for (const char *s = parts[i]; s && *s && n < errlen - 1; s++) err[n++] = *s;
		err[n] = 0;
	}
	return -e;
}

static uint32_t ns_flag_ok(uint32_t f)
{
	switch (f) {
	case CLONE_NEWPID: case CLONE_NEWNET: case CLONE_NEWNS: case CLONE_NEWIPC: case CLONE_NEWUTS:
	case CLONE_NEWUSER: case CLONE_NEWCGROUP: case CLONE_NEWTIME: return 1;
	default: return 0;
	}
}

/*
 * berth_spawn, optionally for a zygote: fds (when not NULL) replace the config's stdio/extra fds
 * that are >= 0, in order (stdio[0..2] then extra[]), and the init is cloned with CLONE_PARENT so
 * it becomes the child of the zygote's parent.
 */
/*
 * Spare network namespace (zygote with BERTH_ZYGOTE_SPARE_NETNS only). Creating a netns costs
 * ~0.3 ms inside clone(), on the critical path of every create. Instead the zygote itself sits in
 * a fresh, unused netns made ahead of time (unshare after it answered the previous request): an
 * init that asks for a new netns (and no new user ns, which must own its netns) is cloned without
 * CLONE_NEWNET and so is born in it, exactly as if clone had made it; the zygote then moves to the
 * next spare. Any other init is cloned from the zygote's original netns (setns around clone), as
 * it would be without a spare. g_host_netns < 0: the feature is off.
 */
static int g_host_netns = -1; /* the netns the zygote started in */
static int g_spare_netns = -1; /* the unused netns the zygote sits in now, or -1 */
static int g_spare_wanted;     /* an init asked for a new netns: keep a spare from now on */

/* Move the zygote into a fresh spare netns (after the last one was given away). */
static void spare_netns_refill(void)
{
	if (g_host_netns < 0 || g_spare_netns >= 0 || !g_spare_wanted) return;
	if (unshare(CLONE_NEWNET) == 0) {
		g_spare_netns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		if (g_spare_netns >= 0) return;
	}
	/* No spare: never stay in a netns that was given away. */
	if (setns(g_host_netns, CLONE_NEWNET) < 0) { /* our own netns: cannot fail */ }
}

static int spawn_impl(const uint8_t *cfg, size_t cfglen, const int *fds, uint32_t nfds, int32_t *out, char *err, size_t errlen)
{
	int rc = 0, sync_sv[2] = { -1, -1 }, fd_sv[2] = { -1, -1 }, saved_pidns = -1;
	struct config *c = calloc(1, sizeof *c);
	if (!c) return set_err(err, errlen, ENOMEM, "out of memory", NULL, NULL);
	c->pid_join_fd = -1; c->fifo_fd = -1;
	const char *bad = decode(c, cfg, cfglen);
	if (bad) { rc = set_err(err, errlen, EINVAL, "spawn config: ", bad, NULL); goto out; }
	if (c->nargs == 0) { rc = set_err(err, errlen, EINVAL, "spawn config: args is empty", NULL, NULL); goto out; }
	if (fds) {
		uint32_t k = 0;
		for (uint32_t i = 0; i < 3 + c->nextra; i++) {
			int32_t *slot = i < 3 ? &c->stdio[i] : &c->extra[i - 3];
			if (*slot < 0) continue;
			if (k >= nfds) break;
			*slot = fds[k++];
		}
		if (k != nfds) { rc = set_err(err, errlen, EINVAL, "zygote: the fds sent do not match the config's stdio and extra fds", NULL, NULL); goto out; }
		c->clone_parent = 1;
		c->from_zygote = 1;
	}

	for (uint32_t i = 0; i < c->nns; i++) {
		struct ns_entry *n = &c->ns[i];
		if (!ns_flag_ok(n->flag)) { rc = set_err(err, errlen, EINVAL, "spawn config: unknown namespace flag", NULL, NULL); goto out; }
		for (uint32_t j = 0; j < i; j++)
			if (c->ns[j].flag == n->flag) { rc = set_err(err, errlen, EINVAL, "spawn config: a namespace kind is listed twice", NULL, NULL); goto out; }
		if (n->flag == CLONE_NEWTIME) { rc = set_err(err, errlen, EINVAL, "time namespaces are not supported", NULL, NULL); goto out; }
		if (n->flag == CLONE_NEWUSER) c->userns = 1;
		if (n->flag == CLONE_NEWNS) c->has_mntns = 1;
		if (n->flag == CLONE_NEWUTS) c->has_utsns = 1;
		if (!*n->path) {
			if (n->flag == CLONE_NEWCGROUP) c->new_cgroupns = 1;
			else c->new_flags |= n->flag;
			continue;
		}
		n->fd = open(n->path, O_RDONLY | O_CLOEXEC);
		if (n->fd < 0) { rc = set_err(err, errlen, errno, "open namespace ", n->path, " to join"); goto out; }
		if (n->flag == CLONE_NEWPID) { c->pid_join_fd = n->fd; }
	}
	if ((*c->rootfs || c->nmounts || c->setup_dev || c->ndev || c->nmasked || c->nreadonly) && !c->has_mntns) {
		rc = set_err(err, errlen, EINVAL, "rootfs, mounts, devices, masked or readonly paths need a mount namespace", " (refusing to change the host's mounts)", NULL);
		goto out;
	}
	if ((*c->hostname || *c->domainname) && !c->has_utsns) {
		rc = set_err(err, errlen, EINVAL, "setting hostname or domainname needs a UTS namespace", " (refusing to change the host's)", NULL);
		goto out;
	}
	if (*c->rootfs && c->rootfs[0] != '/') { rc = set_err(err, errlen, EINVAL, "rootfs must be an absolute path: ", c->rootfs, NULL); goto out; }
	for (uint32_t i = 0; i < c->nmounts; i++)
		if (c->mounts[i].dest[0] != '/') { rc = set_err(err, errlen, EINVAL, "mount destination must be absolute: ", c->mounts[i].dest, NULL); goto out; }
	/* create_fifo: the child makes the fifo itself before GO, while the caller writes its state
	 * and makes the cgroup, unless it is in a user namespace of its own (no rights on the host
	 * directory there): then it is made here. */
	c->child_fifo = *c->exec_fifo && c->create_fifo && !(c->new_flags & CLONE_NEWUSER);
	if (*c->exec_fifo && c->create_fifo && !c->child_fifo) {
		/* Mode 0622 whatever the umask (the init may run as any user). Only the single-threaded
		 * zygote may clear its umask around mknod; in-process, chmod afterwards. EEXIST: a
		 * zygote that died after making it (the caller retries directly). */
		mode_t old = fds ? umask(0) : 0;
		int r = mknod(c->exec_fifo, S_IFIFO | 0622, 0);
		if (r < 0 && errno == EEXIST && unlink(c->exec_fifo) == 0) r = mknod(c->exec_fifo, S_IFIFO | 0622, 0);
		if (fds) umask(old);
		else if (r == 0) r = chmod(c->exec_fifo, 0622);
		if (r < 0) { rc = set_err(err, errlen, errno, "create exec fifo ", c->exec_fifo, NULL); goto out; }
	}
	if (*c->exec_fifo && !c->child_fifo) {
		c->fifo_fd = open(c->exec_fifo, O_PATH | O_CLOEXEC);
		if (c->fifo_fd < 0) { rc = set_err(err, errlen, errno, "open exec fifo ", c->exec_fifo, NULL); goto out; }
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sync_sv) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd_sv) < 0) {
		rc = set_err(err, errlen, errno, "socketpair for the sync socket", NULL, NULL);
		goto out;
	}
	c->sync_fd = sync_sv[1];
	c->fd_sock = fd_sv[1];
	c->parent_sync_fd = sync_sv[0];
	c->parent_fd_sock = fd_sv[0];

	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (c->pid_join_fd >= 0) {
		saved_pidns = open("/proc/thread-self/ns/pid", O_RDONLY | O_CLOEXEC);
		if (saved_pidns < 0 || setns(c->pid_join_fd, CLONE_NEWPID) < 0) {
			int e = errno;
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			rc = set_err(err, errlen, e, "join pid namespace ", "(setns before clone)", NULL);
			goto out;
		}
	}
	int pidfd = -1;
	c->parent_pid = c->clone_parent ? getppid() : getpid();
	unsigned long flags = SIGCHLD | CLONE_PIDFD | c->new_flags | (c->clone_parent ? CLONE_PARENT : 0);
	int want_netns = (c->new_flags & CLONE_NEWNET) && !(c->new_flags & CLONE_NEWUSER);
	int use_spare = want_netns && g_spare_netns >= 0, from_host = 0;
	if (want_netns) g_spare_wanted = 1;
	if (use_spare) flags &= ~(unsigned long)CLONE_NEWNET;
	else if (g_spare_netns >= 0) from_host = setns(g_host_netns, CLONE_NEWNET) == 0;
	long pid = syscall(SYS_clone, flags, NULL, &pidfd, NULL, 0);
	if (pid == 0) child_main(c); /* never returns */
	int clone_errno = errno;
	if (from_host && setns(g_spare_netns, CLONE_NEWNET) < 0) { close(g_spare_netns); g_spare_netns = -1; }
	if (use_spare && pid > 0) { close(g_spare_netns); g_spare_netns = -1; } /* the init has it now */
	if (saved_pidns >= 0) {
		if (setns(saved_pidns, CLONE_NEWPID) < 0) { /* cannot fail for our own ns; nothing better to do */ }
		close(saved_pidns);
		saved_pidns = -1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) { rc = set_err(err, errlen, clone_errno, "clone the container init", NULL, NULL); goto out; }
	out[0] = (int32_t)pid; out[1] = pidfd; out[2] = sync_sv[0]; out[3] = fd_sv[0];
	sync_sv[0] = fd_sv[0] = -1;
out:
	if (saved_pidns >= 0) close(saved_pidns);
	for (int i = 0; i < 2; i++) {
		if (sync_sv[i] >= 0) close(sync_sv[i]);
		if (fd_sv[i] >= 0) close(fd_sv[i]);
	}
	if (c->fifo_fd >= 0) close(c->fifo_fd);
	free_config(c);
	return rc;
}

int berth_spawn(const uint8_t *cfg, size_t cfglen, int32_t *out, char *err, size_t errlen)
{
	return spawn_impl(cfg, cfglen, NULL, 0, out, err, errlen);
}

/* ---- zygote: a small process that clones inits (see the protocol in spawn.h) ---- */

#define ZYGOTE_ERRLEN 1024
struct zygote_reply { int32_t rc, pid; char err[ZYGOTE_ERRLEN]; };

static void zygote_close_fds(struct msghdr *mh)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
		int n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		int fds[BERTH_ZYGOTE_MAX_FDS];
		if (n > BERTH_ZYGOTE_MAX_FDS) n = BERTH_ZYGOTE_MAX_FDS;
		memcpy(fds, CMSG_DATA(cm), (size_t)n * sizeof(int));
		for (int i = 0; i < n; i++) close(fds[i]);
	}
}

int berth_zygote_serve(int sock) { return berth_zygote_serve_flags(sock, 0); }

int berth_zygote_serve_flags(int sock, unsigned flags)
{
	if (flags & BERTH_ZYGOTE_SPARE_NETNS) g_host_netns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	size_t cap = 1u << 20;
	uint8_t *buf = malloc(cap);
	if (!buf) return -ENOMEM;
	union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int) * BERTH_ZYGOTE_MAX_FDS)]; } ctl;
	for (;;) {
		struct iovec iov = { buf, cap };
		struct msghdr mh;
		memset(&mh, 0, sizeof mh);
		mh.msg_iov = &iov; mh.msg_iovlen = 1;
		mh.msg_control = ctl.b; mh.msg_controllen = sizeof ctl.b;
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) { free(buf); return n == 0 ? 0 : -errno; } /* parent gone */
		struct zygote_reply r;
		memset(&r, 0, sizeof r);
		int32_t out[4] = { -1, -1, -1, -1 };
		int fds[BERTH_ZYGOTE_MAX_FDS];
		uint32_t nfds = 0;
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			nfds = (uint32_t)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (nfds > BERTH_ZYGOTE_MAX_FDS) nfds = BERTH_ZYGOTE_MAX_FDS;
			memcpy(fds, CMSG_DATA(cm), nfds * sizeof(int));
		}
		if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) r.rc = set_err(r.err, sizeof r.err, EMSGSIZE, "zygote: request too large", NULL, NULL);
		else r.rc = spawn_impl(buf, (size_t)n, fds, nfds, out, r.err, sizeof r.err);
		zygote_close_fds(&mh);
		r.pid = out[0];
		struct iovec riov = { &r, sizeof r };
		union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int) * 3)]; } rctl;
		struct msghdr rh;
		memset(&rh, 0, sizeof rh);
		memset(&rctl, 0, sizeof rctl);
		rh.msg_iov = &riov; rh.msg_iovlen = 1;
		if (r.rc == 0) {
			rh.msg_control = rctl.b; rh.msg_controllen = sizeof rctl.b;
			struct cmsghdr *rc = CMSG_FIRSTHDR(&rh);
			rc->cmsg_level = SOL_SOCKET; rc->cmsg_type = SCM_RIGHTS; rc->cmsg_len = CMSG_LEN(sizeof(int) * 3);
			int give[3] = { out[1], out[2], out[3] };
			memcpy(CMSG_DATA(rc), give, sizeof give);
		}
		ssize_t w;
		do w = sendmsg(sock, &rh, MSG_NOSIGNAL); while (w < 0 && errno == EINTR);
		if (r.rc == 0) for (int i = 1; i < 4; i++) close(out[i]);
		if (w < 0) { free(buf); return -errno; }
		spare_netns_refill(); /* off the caller's critical path: it has its answer */
	}
}

int berth_zygote_send(int sock, const uint8_t *cfg, size_t cfglen, const int32_t *fds, uint32_t nfds)
{
	if (nfds > BERTH_ZYGOTE_MAX_FDS) return -E2BIG;
	struct iovec iov = { (void *)cfg, cfglen };
	union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int) * BERTH_ZYGOTE_MAX_FDS)]; } ctl;
	struct msghdr mh;
	memset(&mh, 0, sizeof mh);
	memset(&ctl, 0, sizeof ctl);
	mh.msg_iov = &iov; mh.msg_iovlen = 1;
	if (nfds) {
		mh.msg_control = ctl.b; mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	ssize_t n;
	do n = sendmsg(sock, &mh, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

int berth_zygote_recv(int sock, int32_t *out, char *err, size_t errlen)
{
	out[4] = 1; /* transport failure unless a reply arrives */
	struct zygote_reply r;
	struct iovec riov = { &r, sizeof r };
	union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int) * 3)]; } rctl;
	struct msghdr rh;
	memset(&rh, 0, sizeof rh);
	rh.msg_iov = &riov; rh.msg_iovlen = 1;
	rh.msg_control = rctl.b; rh.msg_controllen = sizeof rctl.b;
	ssize_t n;
	do n = recvmsg(sock, &rh, MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
	if (n < 0) return -errno;
	if (n != (ssize_t)sizeof r) { zygote_close_fds(&rh); return -EPIPE; }
	out[4] = 0;
	if (r.rc < 0) {
		zygote_close_fds(&rh);
		size_t i = 0;
		for (; errlen && i < errlen - 1 && i < ZYGOTE_ERRLEN && r.err[i]; i++) err[i] = r.err[i];
		if (errlen) err[i] = 0;
		return r.rc;
	}
	struct cmsghdr *cm = CMSG_FIRSTHDR(&rh);
	if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(sizeof(int) * 3)) {
		zygote_close_fds(&rh);
		out[4] = 1;
		return -EPROTO;
	}
	int got[3];
	memcpy(got, CMSG_DATA(cm), sizeof got);
	out[0] = r.pid; out[1] = got[0]; out[2] = got[1]; out[3] = got[2];
	return 0;
}

int berth_zygote_spawn(int sock, const uint8_t *cfg, size_t cfglen, const int32_t *fds, uint32_t nfds, int32_t *out, char *err, size_t errlen)
{
	out[4] = 1;
	int rc = berth_zygote_send(sock, cfg, cfglen, fds, nfds);
	if (rc < 0) return rc;
	return berth_zygote_recv(sock, out, err, errlen);
}

int berth_zygote_socketpair(int32_t *fds)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
	/* The parent's end: a zygote that stopped answering must not hang the caller forever. */
	struct timeval tv = { 10, 0 };
	if (setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) { int e = errno; close(sv[0]); close(sv[1]); return -e; }
	fds[0] = sv[0]; fds[1] = sv[1];
	return 0;
}

int berth_sync_send(int syncfd, int type)
{
	uint32_t h[2] = { (uint32_t)type, 0 };
	const char *p = (const char *)h;
	size_t len = sizeof h;
	while (len) {
		ssize_t n = send(syncfd, p, len, MSG_NOSIGNAL);
		if (n < 0) { if (errno == EINTR) continue; return -errno; }
		p += n; len -= (size_t)n;
	}
	return 0;
}

static int read_full(int fd, void *buf, size_t len, int *eof)
{
	char *p = buf;
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);
		if (n < 0) { if (errno == EINTR) continue; return -errno; }
		if (n == 0) { *eof = got == 0; return got == 0 ? 0 : -EPROTO; }
		got += (size_t)n;
	}
	return 0;
}

int berth_spawn_next(int syncfd, int fdsock, int32_t *out, char *stage, size_t stagelen, char *msg, size_t msglen)
{
	out[0] = BERTH_OUT_EXEC; out[1] = 0; out[2] = -1;
	if (stagelen) stage[0] = 0;
	if (msglen) msg[0] = 0;
	for (;;) {
		uint32_t h[2];
		int eof = 0, r = read_full(syncfd, h, sizeof h, &eof);
		if (r < 0) return r;
		if (eof) return 0;
		if (h[0] == BERTH_SYNC_PTY) {
			int fd = berth_recv_fd(fdsock);
			if (fd < 0) return fd;
			out[2] = fd;
			continue;
		}
		if (h[0] == BERTH_SYNC_HOOKS || h[0] == BERTH_SYNC_READY) { out[0] = (int32_t)h[0]; return 0; }
		if (h[0] != BERTH_SYNC_ERROR || h[1] < 4 + STAGE_LEN || h[1] > 65536) return -EPROTO;
		char buf[65536];
		r = read_full(syncfd, buf, h[1], &eof);
		if (r < 0 || eof) return r < 0 ? r : -EPROTO;
		out[0] = BERTH_OUT_ERROR;
		memcpy(&out[1], buf, 4);
		size_t i;
		for (i = 0; stagelen && i < stagelen - 1 && i < STAGE_LEN && buf[4 + i]; i++) stage[i] = buf[4 + i];
		if (stagelen) stage[i] = 0;
		size_t ml = h[1] - 4 - STAGE_LEN;
		if (msglen) {
			if (ml > msglen - 1) ml = msglen - 1;
			memcpy(msg, buf + 4 + STAGE_LEN, ml);
			msg[ml] = 0;
		}
		return 0;
	}
}

int berth_send_fd(int sock, int fd) { return send_fd_raw(sock, fd); }

int berth_recv_fd(int sock)
{
	char byte;
	struct iovec iov = { &byte, 1 };
	union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
	struct msghdr mh;
	memset(&mh, 0, sizeof mh);
	mh.msg_iov = &iov; mh.msg_iovlen = 1;
	mh.msg_control = u.buf; mh.msg_controllen = sizeof u.buf;
	ssize_t n;
	do n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
	if (n < 0) return -errno;
	if (n == 0) return -EPIPE;
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(sizeof(int)))
		return -EPROTO;
	int fd;
	memcpy(&fd, CMSG_DATA(cm), sizeof fd);
	return fd;
}

int berth_socketpair(int32_t *fds)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
	fds[0] = sv[0]; fds[1] = sv[1];
	return 0;
}

int berth_unix_connect_send_fd(const char *path, int fd)
{
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	size_t l = strlen(path);
	if (l >= sizeof sa.sun_path) return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, l + 1);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0) return -errno;
	int r = 0;
	if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) r = -errno;
	else r = send_fd_raw(s, fd);
	close(s);
	return r;
}
