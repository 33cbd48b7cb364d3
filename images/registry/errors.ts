/** Errors the registry client throws; each says what failed and what to do. */
import { BerthError, NotFoundError } from '../../runtime/errors.js';

export interface RegistryErrorDetail { code: string; message?: string; detail?: unknown }

export class RegistryError extends BerthError {
  readonly status: number;
  readonly errors: RegistryErrorDetail[];
  constructor(message: string, status = 0, errors: RegistryErrorDetail[] = [], code = 'EREGISTRY', cause?: unknown) {
    super(code, message, cause === undefined ? undefined : { cause });
    this.status = status;
    this.errors = errors;
  }
}

/** Manifest, tag, repository or blob not found. */
export class ImageNotFoundError extends NotFoundError {
  readonly status = 404;
  constructor(message: string) { super(message); }
}

/** 401/403 after trying the credentials we have. */
export class AuthError extends RegistryError {
  constructor(message: string, status: number, errors: RegistryErrorDetail[] = []) {
    super(message, status, errors, 'EAUTH');
  }
}

/** Still rate limited (429) after waiting as the registry asked. */
export class RateLimitError extends RegistryError {
  readonly retryAfterMs?: number;
  constructor(message: string, retryAfterMs?: number) {
    super(message, 429, [], 'ERATELIMIT');
    this.retryAfterMs = retryAfterMs;
  }
}

/** A plain-http registry the user did not mark insecure. */
export class InsecureRegistryError extends RegistryError {
  constructor(host: string) {
    super(`registry ${host} does not speak https; pass --insecure ${host} if you trust it over plain http`, 0, [], 'EINSECURE');
  }
}

/** Parse a registry's JSON error body ({"errors":[{code,message,detail}]}), tolerating junk. */
export function parseErrorBody(text: string): RegistryErrorDetail[] {
  try {
    const doc = JSON.parse(text) as { errors?: unknown };
    if (Array.isArray(doc.errors)) {
      return doc.errors.filter((e): e is RegistryErrorDetail => typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string');
    }
  } catch {}
  return [];
}
