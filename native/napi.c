/*
 * napi.c: native/build/berth.node, a Node-API addon over spawn.c and the few libc calls on the
 * container lifecycle's hot path. It exists for start-up time: loading koffi costs a `berth-oci`
 * invocation ~5 ms, dlopen of this addon well under 1 ms. runtime/linux/native.ts uses it when it
 * is built and falls back to koffi (libberth.so, runtime/linux/libc.ts) otherwise.
 *
 * Protocol: every function takes plain numbers, Buffers, Int32Arrays or strings and returns an
 * int32: >= 0 on success, -errno on failure (-EINVAL for arguments of the wrong type). Nothing
 * throws and nothing blocks except what the named syscall does.
 *
 *   spawn(cfg: Buffer, out: Int32Array[4], err: Buffer)   berth_spawn (see spawn.h)
 *   syncSend(fd, type)                                     berth_sync_send
 *   sendFd(sock, fd) / recvFd(sock)                        SCM_RIGHTS helpers
 *   socketpair(out: Int32Array[2])                         berth_socketpair
 *   unixConnectSendFd(path, fd)                            berth_unix_connect_send_fd
 *   mknod(path, mode, major, minor)                        mknod(2)
 *   close(fd)                                              close(2)
 *   pidfdOpen(pid) / pidfdSendSignal(pidfd, sig)           pidfd_open(2) / pidfd_send_signal(2)
 *   waitpid(pid, status: Int32Array[1])                    waitpid(pid, &status, WNOHANG)
 *   zygoteSocketpair(out: Int32Array[2])                   berth_zygote_socketpair
 *   zygoteSpawn(sock, cfg: Buffer, fds: Int32Array,        berth_zygote_spawn (see spawn.h)
 *               out: Int32Array[5], err: Buffer)
 *   zygoteSend(sock, cfg: Buffer, fds: Int32Array)         berth_zygote_send: the first half of zygoteSpawn
 *   zygoteRecv(sock, out: Int32Array[5], err: Buffer)      berth_zygote_recv: its second half
 *   mount(src|null, target, fstype|null, flags, data|null) mount(2)
 *   umount2(target, flags)                                 umount2(2)
 *   lsetxattr(path, name, value: Buffer, flags)            lsetxattr(2)
 *   fsFlags(fd, set, flags: Int32Array[1])                 ioctl FS_IOC_GETFLAGS (set 0) / FS_IOC_SETFLAGS (set 1)
 *   unshare(flags) / setns(fd, nstype)                     unshare(2) / setns(2) of the calling thread
 *   loopbackUp()                                           lo IFF_UP in the calling thread's netns (SIOCSIFFLAGS)
 *   spawnDetached(path, argv: Buffer, fds: Int32Array)     posix_spawn (vfork-like: no copy of Node's page
 *                                                          tables) in a new session, signals default and
 *                                                          unblocked; argv is NUL-terminated strings back to
 *                                                          back; the child's fd i is fds[i] (-1: /dev/null),
 *                                                          each fds[i] >= fds.length; returns the pid
 *   hash64(data: Buffer, out: Int32Array[2])                runtime/oci/seccomp.ts's hash64, the same two 32-bit
 *                                                          lanes (its JavaScript loop costs ~2 ms cold on 40 KB)
 *
 * The Node-API declarations are written out here (they are a stable C ABI, resolved from the
 * node binary at load time), so building needs no Node headers.
 */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

/* ---- Node-API subset (node_api.h / js_native_api.h, NAPI_VERSION 1) ---- */
typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef int napi_status; /* napi_ok == 0 */
typedef napi_value (*napi_callback)(napi_env env, napi_callback_info info);
typedef int napi_typedarray_type; /* napi_int32_array == 5 */

extern napi_status napi_get_cb_info(napi_env, napi_callback_info, size_t *, napi_value *, napi_value *, void **);
extern napi_status napi_get_value_int32(napi_env, napi_value, int32_t *);
extern napi_status napi_create_int32(napi_env, int32_t, napi_value *);
extern napi_status napi_get_buffer_info(napi_env, napi_value, void **, size_t *);
extern napi_status napi_get_typedarray_info(napi_env, napi_value, napi_typedarray_type *, size_t *, void **, napi_value *, size_t *);
extern napi_status napi_get_value_string_utf8(napi_env, napi_value, char *, size_t, size_t *);
extern napi_status napi_create_function(napi_env, const char *, size_t, napi_callback, void *, napi_value *);
extern napi_status napi_set_named_property(napi_env, napi_value, const char *, napi_value);

#define NAPI_INT32_ARRAY 5
#define MAXARGS 5

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

struct args {
	napi_env env;
	size_t argc;
	napi_value v[MAXARGS];
};

static int get_args(napi_env env, napi_callback_info info, struct args *a, size_t want)
{
	a->env = env;
	a->argc = MAXARGS;
	if (napi_get_cb_info(env, info, &a->argc, a->v, NULL, NULL) != 0 || a->argc < want) return -1;
	return 0;
}

static int arg_i32(struct args *a, size_t i, int32_t *out)
{
	return napi_get_value_int32(a->env, a->v[i], out) == 0 ? 0 : -1;
}

static int arg_i32s(struct args *a, size_t i, int32_t **data, size_t *len)
{
	napi_typedarray_type t;
	void *p;
	if (napi_get_typedarray_info(a->env, a->v[i], &t, len, &p, NULL, NULL) != 0 || t != NAPI_INT32_ARRAY) return -1;
	*data = p;
	return 0;
}

static int arg_buf(struct args *a, size_t i, void **data, size_t *len)
{
	return napi_get_buffer_info(a->env, a->v[i], data, len) == 0 ? 0 : -1;
}

/* A NUL-terminated copy of a JS string argument; fails if it does not fit. */
static int arg_str(struct args *a, size_t i, char *buf, size_t size)
{
	size_t n = 0;
	if (napi_get_value_string_utf8(a->env, a->v[i], buf, size, &n) != 0 || n >= size - 1) return -1;
	return strlen(buf) == n ? 0 : -1; /* refuse embedded NULs */
}

/* Like arg_str, but a JS null/undefined gives *out = NULL. */
extern napi_status napi_typeof(napi_env, napi_value, int *);
#define NAPI_UNDEFINED 0
#define NAPI_NULL 1
static int arg_str_or_null(struct args *a, size_t i, char *buf, size_t size, char **out)
{
	int t;
	if (napi_typeof(a->env, a->v[i], &t) != 0) return -1;
	if (t == NAPI_UNDEFINED || t == NAPI_NULL) {
		*out = NULL;
		return 0;
	}
	*out = buf;
	return arg_str(a, i, buf, size);
}

static napi_value ret(napi_env env, int32_t v)
{
	napi_value r = NULL;
	napi_create_int32(env, v, &r);
	return r;
}

static napi_value js_spawn(napi_env env, napi_callback_info info)
{
	struct args a;
	void *cfg, *err;
	size_t cfglen, errlen, outlen;
	int32_t *out;
	if (get_args(env, info, &a, 3) || arg_buf(&a, 0, &cfg, &cfglen) || arg_i32s(&a, 1, &out, &outlen) || outlen < 4 ||
	    arg_buf(&a, 2, &err, &errlen))
		return ret(env, -EINVAL);
	return ret(env, berth_spawn(cfg, cfglen, out, err, errlen));
}

static napi_value js_sync_send(napi_env env, napi_callback_info info)
{
	struct args a;
	int32_t fd, type;
	if (get_args(env, info, &a, 2) || arg_i32(&a, 0, &fd) || arg_i32(&a, 1, &type)) return ret(env, -EINVAL);
	return ret(env, berth_sync_send(fd, type));
}

static napi_value js_send_fd(napi_env env, napi_callback_info info)
{
	struct args a;
	int32_t sock, fd;
	if (get_args(env, info, &a, 2) || arg_i32(&a, 0, &sock) || arg_i32(&a, 1, &fd)) return ret(env, -EINVAL);
	return ret(env, berth_send_fd(sock, fd));
}

static napi_value js_recv_fd(napi_env env, napi_callback_info info)
{
	struct args a;
	int32_t sock;
	if (get_args(env, info, &a, 1) || arg_i32(&a, 0, &sock)) return ret(env, -EINVAL);
	return ret(env, berth_recv_fd(sock));
}

static napi_value js_socketpair(napi_env env, napi_callback_info info)
{
	struct args a;
	int32_t *out;
	size_t n;
	if (get_args(env, info, &a, 1) || arg_i32s(&a, 0, &out, &n) || n < 2) return ret(env, -EINVAL);
	return ret(env, berth_socketpair(out));
}

static napi_value js_unix_connect_send_fd(napi_env env, napi_callback_info info)
{
	struct args a;
	char path[4096];
	int32_t fd;
	if (get_args(env, info, &a, 2) || arg_str(&a, 0, path, sizeof path) || arg_i32(&a, 1, &fd)) return ret(env, -EINVAL);
	return ret(env, berth_unix_connect_send_fd(path, fd));
}

static napi_value js_mknod(napi_env env, napi_callback_info info)
{
	struct args a;
	char path[4096];
	int32_t mode, ma, mi;
	if (get_args(env, info, &a, 4) || arg_str(&a, 0, path, sizeof path) || arg_i32(&a, 1, &mode) || arg_i32(&a, 2, &ma) ||
	    arg_i32(&a, 3, &mi))
		return ret(env, -EINVAL);
	return ret(env, mknod(path, (mode_t)mode, makedev((unsigned)ma, (unsigned)mi)) < 0 ? -errno : 0);
}

/* A call taking one int and returning 0 or -1 with errno: a wrapper returning 0 or -errno. */
#define INT_CALL(name, call)                                                                   \
	static napi_value name(napi_env env, napi_callback_info info)                           \
	{                                                                                       \
		struct args a;                                                                  \
		int32_t v;                                                                      \
		if (get_args(env, info, &a, 1) || arg_i32(&a, 0, &v)) return ret(env, -EINVAL); \
		return ret(env, call(v) < 0 ? -errno : 0);                                      \
	}

INT_CALL(js_close, close)

static napi_value js_pidfd_open(napi_env env, napi_callback_info info)
{
	struct args a;
	int32_t pid;
	if (get_args(env, info, &a, 1) || arg_i32(&a, 0, &pid)) return ret(env, -EINVAL);
	long fd = syscall(SYS_pidfd_open, pid, 0);
	return ret(env, fd < 0 ? -errno : (int32_t)fd);
}

static napi_value js_pidfd_send_signal(napi_env env, napi_callback_info info)
{
	struct args a;
	int32_t pidfd, sig;
	if (get_args(env, info, &a, 2) || arg_i32(&a, 0, &pidfd) || arg_i32(&a, 1, &sig)) return ret(env, -EINVAL);
	return ret(env, syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0);
}

static napi_value js_waitpid(napi_env env, napi_callback_info info)
{
	struct args a;
	int32_t pid, *st;
	size_t n;
	if (get_args(env, info, &a, 2) || arg_i32(&a, 0, &pid) || arg_i32s(&a, 1, &st, &n) || n < 1) return ret(env, -EINVAL);
	int status = 0;
	pid_t r;
	do r = waitpid(pid, &status, WNOHANG); while (r < 0 && errno == EINTR);
	if (r < 0) return ret(env, -errno);
	st[0] = status;
	return ret(env, r);
}

static napi_value js_zygote_socketpair(napi_env env, napi_callback_info info)
{
	struct args a;
	int32_t *out;
	size_t n;
	if (get_args(env, info, &a, 1) || arg_i32s(&a, 0, &out, &n) || n < 2) return ret(env, -EINVAL);
	return ret(env, berth_zygote_socketpair(out));
}

static napi_value js_zygote_spawn(napi_env env, napi_callback_info info)
{
	struct args a;
	int32_t sock, *fds, *out;
	void *cfg, *err;
	size_t cfglen, nfds, outlen, errlen;
	if (get_args(env, info, &a, 5) || arg_i32(&a, 0, &sock) || arg_buf(&a, 1, &cfg, &cfglen) || arg_i32s(&a, 2, &fds, &nfds) ||
	    arg_i32s(&a, 3, &out, &outlen) || outlen < 5 || arg_buf(&a, 4, &err, &errlen))
		return ret(env, -EINVAL);
	return ret(env, berth_zygote_spawn(sock, cfg, cfglen, fds, (uint32_t)nfds, out, err, errlen));
}

static napi_value js_zygote_send(napi_env env, napi_callback_info info)
{
	struct args a;
	int32_t sock, *fds;
	void *cfg;
	size_t cfglen, nfds;
	if (get_args(env, info, &a, 3) || arg_i32(&a, 0, &sock) || arg_buf(&a, 1, &cfg, &cfglen) || arg_i32s(&a, 2, &fds, &nfds))
		return ret(env, -EINVAL);
	return ret(env, berth_zygote_send(sock, cfg, cfglen, fds, (uint32_t)nfds));
}

static napi_value js_zygote_recv(napi_env env, napi_callback_info info)
{
	struct args a;
	int32_t sock, *out;
	void *err;
	size_t outlen, errlen;
	if (get_args(env, info, &a, 3) || arg_i32(&a, 0, &sock) || arg_i32s(&a, 1, &out, &outlen) || outlen < 5 || arg_buf(&a, 2, &err, &errlen))
		return ret(env, -EINVAL);
	return ret(env, berth_zygote_recv(sock, out, err, errlen));
}

static napi_value js_mount(napi_env env, napi_callback_info info)
{
	struct args a;
	char src[4096], target[4096], fstype[256], data[8192];
	char *srcp, *fsp, *datap;
	int32_t flags;
	if (get_args(env, info, &a, 5) || arg_str_or_null(&a, 0, src, sizeof src, &srcp) || arg_str(&a, 1, target, sizeof target) ||
	    arg_str_or_null(&a, 2, fstype, sizeof fstype, &fsp) || arg_i32(&a, 3, &flags) ||
	    arg_str_or_null(&a, 4, data, sizeof data, &datap))
		return ret(env, -EINVAL);
	return ret(env, mount(srcp, target, fsp, (unsigned long)(uint32_t)flags, datap) < 0 ? -errno : 0);
}

static napi_value js_umount2(napi_env env, napi_callback_info info)
{
	struct args a;
	char target[4096];
	int32_t flags;
	if (get_args(env, info, &a, 2) || arg_str(&a, 0, target, sizeof target) || arg_i32(&a, 1, &flags)) return ret(env, -EINVAL);
	return ret(env, umount2(target, flags) < 0 ? -errno : 0);
}

static napi_value js_lsetxattr(napi_env env, napi_callback_info info)
{
	struct args a;
	char path[4096], name[256];
	void *value;
	size_t len;
	int32_t flags;
	if (get_args(env, info, &a, 4) || arg_str(&a, 0, path, sizeof path) || arg_str(&a, 1, name, sizeof name) ||
	    arg_buf(&a, 2, &value, &len) || arg_i32(&a, 3, &flags))
		return ret(env, -EINVAL);
	return ret(env, lsetxattr(path, name, value, len, flags) < 0 ? -errno : 0);
}

static napi_value js_fs_flags(napi_env env, napi_callback_info info)
{
	struct args a;
	int32_t fd, set, *flags;
	size_t n;
	if (get_args(env, info, &a, 3) || arg_i32(&a, 0, &fd) || arg_i32(&a, 1, &set) || arg_i32s(&a, 2, &flags, &n) || n < 1)
		return ret(env, -EINVAL);
	/* The kernel reads and writes an int through these, whatever their _IOR/_IOW size says. */
	int v = flags[0];
	if (ioctl(fd, set ? FS_IOC_SETFLAGS : FS_IOC_GETFLAGS, &v) < 0) return ret(env, -errno);
	flags[0] = v;
	return ret(env, 0);
}

INT_CALL(js_unshare, unshare)

static napi_value js_setns(napi_env env, napi_callback_info info)
{
	struct args a;
	int32_t fd, nstype;
	if (get_args(env, info, &a, 2) || arg_i32(&a, 0, &fd) || arg_i32(&a, 1, &nstype)) return ret(env, -EINVAL);
	return ret(env, setns(fd, nstype) < 0 ? -errno : 0);
}

static napi_value js_loopback_up(napi_env env, napi_callback_info info)
{
	(void)info;
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) return ret(env, -errno);
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
	if (rc == 0) {
		ifr.ifr_flags |= IFF_UP;
		rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	int e = rc < 0 ? errno : 0;
	close(fd);
	return ret(env, -e);
}

extern char **environ;

static napi_value js_spawn_detached(napi_env env, napi_callback_info info)
{
	struct args a;
	char path[4096];
	void *argbuf;
	size_t arglen, nfds;
	int32_t *fds;
	if (get_args(env, info, &a, 3) || arg_str(&a, 0, path, sizeof path) || arg_buf(&a, 1, &argbuf, &arglen) ||
	    arg_i32s(&a, 2, &fds, &nfds) || nfds > 64 || arglen == 0 || ((char *)argbuf)[arglen - 1] != '\0')
		return ret(env, -EINVAL);
	for (size_t i = 0; i < nfds; i++)
		if (fds[i] >= 0 && (size_t)fds[i] < nfds) return ret(env, -EINVAL); /* would be overwritten before its dup2 */
	size_t argc = 0;
	for (size_t i = 0; i < arglen; i++) argc += ((char *)argbuf)[i] == '\0';
	char *strs = malloc(arglen);
	char **argv = calloc(argc + 1, sizeof *argv);
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	int rc = ENOMEM, have_fa = 0, have_at = 0;
	if (!strs || !argv) goto out;
	memcpy(strs, argbuf, arglen);
	for (size_t i = 0, k = 0; i < arglen; k++) {
		argv[k] = strs + i;
		i += strlen(strs + i) + 1;
	}
	if ((rc = posix_spawn_file_actions_init(&fa))) goto out;
	have_fa = 1;
	for (size_t i = 0; i < nfds && !rc; i++)
		rc = fds[i] < 0 ? posix_spawn_file_actions_addopen(&fa, (int)i, "/dev/null", O_RDWR, 0)
				: posix_spawn_file_actions_adddup2(&fa, fds[i], (int)i);
	if (rc) goto out;
	if ((rc = posix_spawnattr_init(&at))) goto out;
	have_at = 1;
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	if ((rc = posix_spawnattr_setsigmask(&at, &none)) || (rc = posix_spawnattr_setsigdefault(&at, &all)) ||
	    (rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)))
		goto out;
	pid_t pid;
	rc = posix_spawn(&pid, path, &fa, &at, argv, environ);
	if (!rc) rc = -(int)pid; /* success: -rc below is the pid; failure: -rc is -errno */
out:
	if (have_at) posix_spawnattr_destroy(&at);
	if (have_fa) posix_spawn_file_actions_destroy(&fa);
	free(argv);
	free(strs);
	return ret(env, -rc);
}

/* Keep in step with hash64() in runtime/oci/seccomp.ts: same lanes, same constants. */
static napi_value js_hash64(napi_env env, napi_callback_info info)
{
	struct args a;
	void *data;
	size_t len, n;
	int32_t *out;
	if (get_args(env, info, &a, 2) || arg_buf(&a, 0, &data, &len) || arg_i32s(&a, 1, &out, &n) || n < 2) return ret(env, -EINVAL);
	const uint8_t *p = data;
	uint32_t x = 0x811c9dc5u, y = 0x9e3779b9u ^ (uint32_t)len;
	for (size_t i = 0; i < len; i++) {
		x = (x ^ p[i]) * 0x01000193u;
		y = (y ^ p[i]) * 0x5bd1e995u;
		y ^= y >> 13;
	}
	x = (x ^ (x >> 16)) * 0x85ebca6bu;
	y = (y ^ (y >> 15)) * 0xc2b2ae35u;
	out[0] = (int32_t)x;
	out[1] = (int32_t)(y ^ (y >> 16));
	return ret(env, 0);
}

static const struct { const char *name; napi_callback fn; } FUNCS[] = {
	{ "spawn", js_spawn }, { "syncSend", js_sync_send }, { "sendFd", js_send_fd }, { "recvFd", js_recv_fd },
	{ "socketpair", js_socketpair }, { "unixConnectSendFd", js_unix_connect_send_fd }, { "mknod", js_mknod },
	{ "close", js_close }, { "pidfdOpen", js_pidfd_open }, { "pidfdSendSignal", js_pidfd_send_signal },
	{ "waitpid", js_waitpid }, { "zygoteSocketpair", js_zygote_socketpair }, { "zygoteSpawn", js_zygote_spawn },
	{ "zygoteSend", js_zygote_send }, { "zygoteRecv", js_zygote_recv }, { "mount", js_mount }, { "umount2", js_umount2 },
	{ "lsetxattr", js_lsetxattr }, { "fsFlags", js_fs_flags }, { "unshare", js_unshare }, { "setns", js_setns },
	{ "loopbackUp", js_loopback_up }, { "spawnDetached", js_spawn_detached }, { "hash64", js_hash64 },
};

__attribute__((visibility("default"))) int32_t node_api_module_get_api_version_v1(void) { return 1; }

__attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env, napi_value exports)
{
	for (size_t i = 0; i < sizeof FUNCS / sizeof FUNCS[0]; i++) {
		napi_value f;
		if (napi_create_function(env, FUNCS[i].name, (size_t)-1, FUNCS[i].fn, NULL, &f) != 0 ||
		    napi_set_named_property(env, exports, FUNCS[i].name, f) != 0)
			return NULL;
	}
	return exports;
}
