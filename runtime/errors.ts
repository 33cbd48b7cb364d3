/**
 * Error classes shared by every layer. Each carries a stable `code` a script can match on,
 * and a message that says what was wrong and what to do.
 */
export class BerthError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A syscall failed: carries errno and the operation's context. */
export class SyscallError extends BerthError {
  readonly errno: number;
  readonly syscall: string;
  constructor(syscall: string, errno: number, context: string) {
    super('ESYSCALL', `${context}: ${syscall}: ${errnoName(errno)} (errno ${errno})`);
    this.errno = errno;
    this.syscall = syscall;
  }
}

/** The container's init failed before execve; stage names the step (see native/spawn.c). */
export class SpawnError extends BerthError {
  readonly stage: string;
  readonly errno: number;
  constructor(stage: string, errno: number, detail: string) {
    super('ESPAWN', `container init failed at ${stage}: ${detail}${errno ? ` (${errnoName(errno)})` : ''}`);
    this.stage = stage;
    this.errno = errno;
  }
}

/** A user-supplied configuration is invalid; path is the JSON path of the bad field. */
export class ConfigError extends BerthError {
  readonly path: string;
  constructor(path: string, message: string) {
    super('EINVALIDCONFIG', `${path}: ${message}`);
    this.path = path;
  }
}

export class NotFoundError extends BerthError {
  constructor(message: string) {
    super('ENOTFOUND', message);
  }
}

const ERRNO: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 3: 'ESRCH', 4: 'EINTR', 5: 'EIO', 9: 'EBADF', 10: 'ECHILD', 11: 'EAGAIN',
  12: 'ENOMEM', 13: 'EACCES', 16: 'EBUSY', 17: 'EEXIST', 18: 'EXDEV', 19: 'ENODEV', 20: 'ENOTDIR',
  21: 'EISDIR', 22: 'EINVAL', 24: 'EMFILE', 28: 'ENOSPC', 30: 'EROFS', 36: 'ENAMETOOLONG',
  38: 'ENOSYS', 39: 'ENOTEMPTY', 40: 'ELOOP', 95: 'EOPNOTSUPP', 110: 'ETIMEDOUT',
};

export function errnoName(errno: number): string {
  return ERRNO[errno] ?? `errno ${errno}`;
}
