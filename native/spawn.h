/*
 * spawn.h: C API of native/spawn.c (the container init: clone -> namespaces -> mounts -> execve).
 * Exported from native/build/libberth.so (called through koffi by runtime/linux/spawn.ts) and
 * linkable into executables via native/build/spawn.o. The config encoding and the sync protocol
 * are documented at the top of spawn.c.
 */
#ifndef BERTH_SPAWN_H
#define BERTH_SPAWN_H

#include <stddef.h>
#include <stdint.h>

/* Sync-socket message types (see the protocol table in spawn.c). */
enum berth_sync_type {
	BERTH_SYNC_GO = 1,       /* parent -> child: parent-side setup done, continue */
	BERTH_SYNC_HOOKS = 2,    /* child -> parent: mounts done, paused before pivot_root */
	BERTH_SYNC_CONTINUE = 3, /* parent -> child: hooks ran, continue */
	BERTH_SYNC_READY = 4,    /* child -> parent: about to block on the exec fifo */
	BERTH_SYNC_PTY = 5,      /* child -> parent: pty master was sent on the fd socket */
	BERTH_SYNC_ERROR = 6,    /* child -> parent: {errno, stage, message}; child then _exit(127) */
};

/* Outcome kinds returned by berth_spawn_next(). */
enum berth_outcome {
	BERTH_OUT_EXEC = 0,  /* EOF on the sync socket: execve succeeded */
	BERTH_OUT_HOOKS = 2,
	BERTH_OUT_READY = 4,
	BERTH_OUT_ERROR = 6,
};

/*
 * Clone the container init described by the encoded config (cfg, cfglen).
 * On success returns 0 and fills out[0]=pid, out[1]=pidfd, out[2]=sync socket (parent end),
 * out[3]=fd socket (parent end; the pty master arrives here). All fds are O_CLOEXEC and owned by
 * the caller. On failure returns -errno and writes a message naming what failed into err.
 */
int berth_spawn(const uint8_t *cfg, size_t cfglen, int32_t *out, char *err, size_t errlen);

/* Send a bare sync message (GO, CONTINUE) on the parent's sync socket. 0 or -errno. */
int berth_sync_send(int syncfd, int type);

/*
 * Blocking helper for C callers (berth-monitor): reads the next outcome from the sync socket.
 * out[0]=kind (enum berth_outcome), out[1]=errno (ERROR), out[2]=pty master fd or -1 (received
 * from fdsock when a PTY message came first). stage/msg receive the error record. 0 or -errno.
 */
int berth_spawn_next(int syncfd, int fdsock, int32_t *out, char *stage, size_t stagelen, char *msg, size_t msglen);

/* SCM_RIGHTS helpers Node lacks. */
int berth_send_fd(int sock, int fd);            /* 0 or -errno */
int berth_recv_fd(int sock);                    /* fd (O_CLOEXEC) or -errno */
int berth_socketpair(int32_t *fds);             /* AF_UNIX SOCK_STREAM|SOCK_CLOEXEC; 0 or -errno */
int berth_unix_connect_send_fd(const char *path, int fd); /* runc --console-socket; 0 or -errno */

/*
 * Zygote (native/zygote.c, started once by runtime/linux/zygote.ts): a small process that clones
 * container inits for a big parent (Node), so clone() copies its page tables instead of Node's.
 * Over an AF_UNIX SOCK_SEQPACKET pair (berth_zygote_socketpair):
 *   request  parent -> zygote  payload: an encoded config; SCM_RIGHTS: the fds that replace the
 *                              config's stdio/extra fds >= 0, in order (at most BERTH_ZYGOTE_MAX_FDS)
 *   reply    zygote -> parent  payload: i32 rc (0 or -errno), i32 pid, char err[1024];
 *                              SCM_RIGHTS when rc == 0: pidfd, sync socket, fd socket
 * The zygote clones with CLONE_PARENT: the init is the parent's child (waitpid, SIGCHLD).
 * berth_zygote_spawn does one exchange (blocking; the zygote answers right after clone) and fills
 * out[0..3] as berth_spawn does; out[4] is 1 when the zygote could not be reached (the caller
 * should spawn directly) and 0 when rc is the zygote's answer. berth_zygote_send and
 * berth_zygote_recv are its two halves (0 or -errno; recv fills out[0..4] the same way), so a
 * caller can do other work while the zygote clones; one request may be in flight per socket.
 * berth_zygote_serve runs the loop; it returns 0 when the parent closes its end.
 */
#define BERTH_ZYGOTE_MAX_FDS 250
int berth_zygote_socketpair(int32_t *fds);     /* AF_UNIX SOCK_SEQPACKET|SOCK_CLOEXEC, fds[0] with a 10 s SO_RCVTIMEO; 0 or -errno */
int berth_zygote_serve(int sock);
/* BERTH_ZYGOTE_SPARE_NETNS: keep a fresh network namespace ready for the next init (spawn.c). */
#define BERTH_ZYGOTE_SPARE_NETNS 1u
int berth_zygote_serve_flags(int sock, unsigned flags);
int berth_zygote_spawn(int sock, const uint8_t *cfg, size_t cfglen, const int32_t *fds, uint32_t nfds, int32_t *out, char *err, size_t errlen);
int berth_zygote_send(int sock, const uint8_t *cfg, size_t cfglen, const int32_t *fds, uint32_t nfds);
int berth_zygote_recv(int sock, int32_t *out, char *err, size_t errlen);

#endif
