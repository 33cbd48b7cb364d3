/**
 * The contract between TypeScript and native/spawn.c: everything the container's init needs,
 * already resolved to numbers and absolute paths so the C child does no parsing or allocation.
 * runtime/oci/plan.ts builds it from an OCI config.json; runtime/linux/spawn.ts encodes it and
 * calls the C entry point through koffi.
 */

/** Namespace kinds, named as in the runtime-spec. */
export type NsKind = 'pid' | 'network' | 'mount' | 'ipc' | 'uts' | 'user' | 'cgroup' | 'time';

export interface SpawnNamespace {
  kind: NsKind;
  /** Join this existing namespace (a /proc/<pid>/ns/* file or a bind-mounted nsfs file). Absent: create a new one. */
  path?: string;
}

export interface SpawnMount {
  /** Source: a host path for binds, else the fs source string ("proc", "tmpfs", ...). */
  source: string;
  /** Absolute destination inside the container (resolved under the rootfs by C, never following symlinks out of it). */
  destination: string;
  /** Filesystem type; "" or "bind" for bind mounts. */
  fstype: string;
  /** MS_* flags for the mount(2) call (MS_BIND, MS_REC, MS_RDONLY, MS_NOSUID, ...), without propagation flags. */
  flags: number;
  /** Propagation changes applied after the mount, in order (MS_SHARED|MS_REC, MS_PRIVATE, MS_SLAVE, MS_UNBINDABLE ...). */
  propagation: number[];
  /** fs-specific data string ("mode=755,size=65536k"). */
  data: string;
  /**
   * For binds whose flags include any of MS_RDONLY/MS_NOSUID/MS_NODEV/MS_NOEXEC/atime flags: C performs
   * the bind first, then a MS_BIND|MS_REMOUNT with these flags (the kernel ignores them on the first call).
   */
}

export interface SpawnDevice {
  /** Absolute path inside the container, e.g. /dev/null. */
  path: string;
  type: 'c' | 'b' | 'p';
  major: number;
  minor: number;
  /** Permission bits (e.g. 0o666). */
  mode: number;
  uid: number;
  gid: number;
}

export interface SpawnRlimit { resource: number; soft: bigint; hard: bigint }

export interface SpawnCapabilities {
  /** Bit masks over capability numbers (bit n = CAP number n). */
  bounding: bigint;
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
  ambient: bigint;
}

export interface SpawnConfig {
  /** Namespaces to create or join. Order does not matter; C joins user first, then the rest, as runc does. */
  namespaces: SpawnNamespace[];
  /** Absolute host path of the rootfs. Empty string: no rootfs change (the process stays in the host's fs view). */
  rootfs: string;
  rootfsReadonly: boolean;
  /** MS_* propagation for "/" inside the container after pivot (0 = leave as MS_SLAVE|MS_REC default). */
  rootfsPropagation: number;
  /** Use MS_MOVE + chroot instead of pivot_root (runc --no-pivot). */
  noPivot: boolean;
  mounts: SpawnMount[];
  /** True when /dev is a tmpfs the runtime populates (default devices + symlinks /dev/fd, stdin, stdout, stderr, ptmx). */
  setupDev: boolean;
  /** Device nodes to create (mknod; bind-mounted from the host path when in a user namespace). */
  devices: SpawnDevice[];
  maskedPaths: string[];
  readonlyPaths: string[];
  /** Empty string: leave unchanged. */
  hostname: string;
  domainname: string;
  /** Written to /proc/sys/<key with dots as slashes> inside the container. */
  sysctls: { key: string; value: string }[];
  rlimits: SpawnRlimit[];
  /** null: leave unchanged. */
  oomScoreAdj: number | null;
  /** null: leave capabilities unchanged (the caller's). */
  capabilities: SpawnCapabilities | null;
  noNewPrivileges: boolean;
  /** A compiled classic-BPF seccomp program: an array of struct sock_filter (8 bytes each). null: none. */
  seccomp: { program: Buffer; flags: number } | null;
  uid: number;
  gid: number;
  additionalGids: number[];
  /** null: leave unchanged. */
  umask: number | null;
  cwd: string;
  /** argv; args[0] is resolved against PATH from env when it contains no slash (execvpe semantics). */
  args: string[];
  env: string[];
  /**
   * Allocate a pty inside the container (devpts newinstance must be mounted at /dev/pts): the slave
   * becomes fds 0,1,2 and the controlling tty; the master is sent back to the parent (SCM_RIGHTS
   * over the sync socket) and returned by spawn().
   */
  terminal: boolean;
  /** Parent-side fds that become the child's 0, 1, 2 (ignored for those slots when terminal). -1: leave as inherited. */
  stdio: [number, number, number];
  /** Parent-side fds that become the child's 3, 4, ... (runc --preserve-fds / LISTEN_FDS). All others are closed on exec. */
  extraFds: number[];
  /**
   * Host path of a FIFO. When set, init opens it (O_PATH) before pivot_root, reports "ready" to the parent, then
   * blocks opening it for write until someone opens it for read (OCI `start`), writes one byte, and execs.
   */
  execFifo: string;
  /** Clone with CLONE_PARENT: init becomes a child of our parent (runc semantics for berth-oci). */
  cloneParent: boolean;
  /** Set PR_SET_PDEATHSIG to this signal in the child (0: none). */
  parentDeathSignal: number;
  /**
   * Stop after mounts and before pivot_root and report "hooks" to the parent, which runs createRuntime /
   * createContainer hooks and then continues the child.
   */
  hookPause: boolean;
  /**
   * Create execFifo (a new FIFO, mode 0622 whatever the umask) instead of expecting it to exist:
   * the child makes it before GO, while the caller does its own setup (or the spawner before
   * clone when the child gets a new user namespace, which has no rights on the host directory).
   */
  createExecFifo?: boolean;
}

/** What the parent side gets back from spawn(). */
export interface SpawnedProcess {
  pid: number;
  /** pidfd for race-free signalling (CLONE_PIDFD). Owned by the caller: close it. */
  pidfd: number;
  /** pty master when config.terminal, else -1. Owned by the caller. */
  ptyMaster: number;
}
