/**
 * Image references, parsed and normalised exactly as Docker does (distribution/reference):
 * `alpine` → docker.io/library/alpine:latest, `user/app` → docker.io/user/app:latest,
 * `host:port/a/b:tag`, `localhost/x`, `name@sha256:<hex>`, `name:tag@sha256:<hex>`.
 * A bad reference throws ReferenceError (code EINVALIDREF) saying which part is wrong.
 */
import { BerthError } from '../runtime/errors.js';

export class ReferenceError extends BerthError {
  readonly input: string;
  constructor(input: string, why: string) {
    super('EINVALIDREF', `invalid image reference "${input}": ${why}`);
    this.input = input;
  }
}

export const DEFAULT_DOMAIN = 'docker.io';
export const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
export const DOCKER_HUB_REGISTRY = 'registry-1.docker.io';
export const DEFAULT_TAG = 'latest';
const OFFICIAL_PREFIX = 'library/';
const NAME_TOTAL_MAX = 255;

const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const SHA256_DIGEST = /^sha256:[0-9a-f]{64}$/;

export interface ImageReference {
  /** Registry domain as the user names it (docker.io for Docker Hub), may include :port. */
  readonly domain: string;
  /** Repository path inside the registry, e.g. library/alpine. */
  readonly path: string;
  /** Tag; defaults to latest only when there is neither tag nor digest. */
  readonly tag?: string;
  /** Content digest (sha256:<64 hex>) when pinned. */
  readonly digest?: string;
  /** Host to connect to: docker.io → registry-1.docker.io. */
  readonly registryHost: string;
  /** domain/path. */
  readonly repository: string;
  /** Canonical form: docker.io/library/alpine:latest, host/x@sha256:… */
  string(): string;
  /** Docker's short form: alpine:latest, user/app:1, host:5000/x:y. */
  familiar(): string;
  /** The tag or digest to ask the registry for (digest wins). */
  readonly ref: string;
}

class Ref implements ImageReference {
  constructor(readonly domain: string, readonly path: string, readonly tag: string | undefined, readonly digest: string | undefined) {}
  get registryHost(): string { return registryHostFor(this.domain); }
  get repository(): string { return `${this.domain}/${this.path}`; }
  get ref(): string { return this.digest ?? this.tag ?? DEFAULT_TAG; }
  private suffix(): string {
    return `${this.tag ? `:${this.tag}` : ''}${this.digest ? `@${this.digest}` : ''}`;
  }
  string(): string { return `${this.repository}${this.suffix()}`; }
  familiar(): string {
    let name = this.repository;
    if (this.domain === DEFAULT_DOMAIN) {
      name = this.path.startsWith(OFFICIAL_PREFIX) && this.path.indexOf('/', OFFICIAL_PREFIX.length) === -1
        ? this.path.slice(OFFICIAL_PREFIX.length) : this.path;
    }
    return `${name}${this.suffix()}`;
  }
  toString(): string { return this.string(); }
  toJSON(): string { return this.string(); }
}

/** docker.io (and index.docker.io) are served by registry-1.docker.io. */
export function registryHostFor(domain: string): string {
  return domain === DEFAULT_DOMAIN || domain === LEGACY_DEFAULT_DOMAIN ? DOCKER_HUB_REGISTRY : domain;
}

function validDomain(domain: string): string | null {
  let host = domain;
  let port: string | undefined;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    if (end < 0) return 'unterminated IPv6 address';
    const ip = host.slice(1, end);
    if (!/^[0-9a-fA-F:.]+$/.test(ip) || !ip.includes(':')) return `"${ip}" is not an IPv6 address`;
    const rest = host.slice(end + 1);
    if (rest && !rest.startsWith(':')) return 'junk after IPv6 address';
    port = rest ? rest.slice(1) : undefined;
  } else {
    const c = host.lastIndexOf(':');
    if (c >= 0) { port = host.slice(c + 1); host = host.slice(0, c); }
    for (const comp of host.split('.')) {
      if (!DOMAIN_COMPONENT.test(comp)) return `registry host "${domain}" is not a valid host name`;
    }
  }
  if (port !== undefined && !/^[0-9]+$/.test(port)) return `registry port "${port}" is not a number`;
  return null;
}

/**
 * Parse and normalise a reference. Throws ReferenceError on anything Docker would refuse;
 * digests must be sha256 with 64 lowercase hex digits (the only algorithm we verify).
 */
export function parseReference(input: string): ImageReference {
  if (typeof input !== 'string' || input.length === 0) throw new ReferenceError(String(input), 'empty reference');
  if (/\s/.test(input)) throw new ReferenceError(input, 'contains whitespace');
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new ReferenceError(input, `"${digest}" is not a digest (want sha256:<64 hex digits>)`);
    if (!digest.startsWith('sha256:')) throw new ReferenceError(input, `digest algorithm "${digest.split(':')[0]}" is not supported (only sha256)`);
    if (!SHA256_DIGEST.test(digest)) throw new ReferenceError(input, `"${digest}" is not a sha256 digest (want 64 lowercase hex digits)`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new ReferenceError(input, `tag "${tag}" is invalid (letters, digits, _ . - only, at most 128, not starting with . or -)`);
  }
  if (rest.length === 0) throw new ReferenceError(input, 'missing repository name');
  let domain: string;
  let path: string;
  const slash = rest.indexOf('/');
  const first = slash >= 0 ? rest.slice(0, slash) : '';
  if (slash < 0 || (!first.includes('.') && !first.includes(':') && first !== 'localhost' && first.toLowerCase() === first)) {
    domain = DEFAULT_DOMAIN;
    path = rest;
  } else {
    domain = first;
    path = rest.slice(slash + 1);
  }
  const derr = validDomain(domain);
  if (derr) throw new ReferenceError(input, derr);
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = OFFICIAL_PREFIX + path;
  if (path.length === 0) throw new ReferenceError(input, 'missing repository name');
  for (const comp of path.split('/')) {
    if (comp.length === 0) throw new ReferenceError(input, 'repository name has an empty path component');
    if (comp.toLowerCase() !== comp && PATH_COMPONENT.test(comp.toLowerCase())) {
      throw new ReferenceError(input, `repository name must be lowercase ("${comp}")`);
    }
    if (!PATH_COMPONENT.test(comp)) {
      throw new ReferenceError(input, `repository path component "${comp}" is invalid (lowercase letters, digits and separators . _ __ - only, starting and ending with a letter or digit)`);
    }
  }
  const full = `${domain}/${path}`;
  if (full.length > NAME_TOTAL_MAX) throw new ReferenceError(input, `repository name is longer than ${NAME_TOTAL_MAX} characters`);
  if (!tag && !digest) tag = DEFAULT_TAG;
  return new Ref(domain, path, tag, digest);
}

/** Parse a repository name without tag/digest (e.g. for push targets or mount sources). */
export function parseRepository(input: string): ImageReference {
  const r = parseReference(input);
  if (/[:@][^/]*$/.test(input.slice(input.lastIndexOf('/') + 1))) throw new ReferenceError(input, 'expected a repository name without tag or digest');
  return r;
}

/** Same repository with exactly this tag and/or digest (tag latest when neither is given). */
export function withRef(r: ImageReference, opts: { tag?: string; digest?: string }): ImageReference {
  if (opts.tag !== undefined && !TAG.test(opts.tag)) throw new ReferenceError(opts.tag, `tag "${opts.tag}" is invalid`);
  if (opts.digest !== undefined && !SHA256_DIGEST.test(opts.digest)) throw new ReferenceError(opts.digest, 'not a sha256 digest (want sha256:<64 hex digits>)');
  return new Ref(r.domain, r.path, opts.tag ?? (opts.digest ? undefined : DEFAULT_TAG), opts.digest);
}

export function isDigest(s: string): boolean { return SHA256_DIGEST.test(s); }
