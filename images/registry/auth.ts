/**
 * Registry authentication pieces: WWW-Authenticate parsing (RFC 7235 challenges, Bearer and
 * Basic), scope sets (`repository:<name>:pull,push`) with union/cover, and a token cache keyed
 * by host + realm + service + scope, valid until expires_in (minus a small margin).
 */

export interface Challenge {
  scheme: string; // lowercase: bearer, basic
  params: Record<string, string>; // lowercase keys: realm, service, scope, error
}

/** Parse a WWW-Authenticate header value into challenges. */
export function parseWWWAuthenticate(header: string | null | undefined): Challenge[] {
  if (!header) return [];
  const out: Challenge[] = [];
  let i = 0;
  const s = header;
  const skipWs = () => { while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++; };
  const token = () => {
    const m = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/.exec(s.slice(i));
    if (!m) return '';
    i += m[0].length;
    return m[0];
  };
  while (i < s.length) {
    skipWs();
    while (s[i] === ',') { i++; skipWs(); }
    const scheme = token();
    if (!scheme) { i++; continue; }
    const ch: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(ch);
    skipWs();
    // params: k=v or k="v", comma separated, until the next scheme (a token not followed by =)
    for (;;) {
      skipWs();
      const save = i;
      const k = token();
      skipWs();
      if (!k || s[i] !== '=') { i = save; break; }
      i++;
      skipWs();
      let v = '';
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i++;
          v += s[i++];
        }
        i++;
      } else {
        v = token();
      }
      ch.params[k.toLowerCase()] = v;
      skipWs();
      if (s[i] === ',') { i++; continue; }
      break;
    }
  }
  return out;
}

/** resource ("repository:library/alpine") → actions. */
export type ScopeSet = Map<string, Set<string>>;

/** Parse "repository:a/b:pull,push repository:c:pull" (space-separated scopes). */
export function parseScopes(...scopes: (string | undefined)[]): ScopeSet {
  const out: ScopeSet = new Map();
  for (const group of scopes) {
    if (!group) continue;
    for (const sc of group.split(' ')) {
      if (!sc) continue;
      const last = sc.lastIndexOf(':');
      if (last <= 0) continue;
      const res = sc.slice(0, last);
      const actions = sc.slice(last + 1).split(',').filter(Boolean);
      let set = out.get(res);
      if (!set) { set = new Set(); out.set(res, set); }
      for (const a of actions) set.add(a);
    }
  }
  return out;
}

export function unionScopes(a: ScopeSet, b: ScopeSet): ScopeSet {
  const out: ScopeSet = new Map();
  for (const src of [a, b]) {
    for (const [r, acts] of src) {
      let set = out.get(r);
      if (!set) { set = new Set(); out.set(r, set); }
      for (const x of acts) set.add(x);
    }
  }
  return out;
}

/** Does `have` grant everything in `want`? ("*" grants all actions.) */
export function coversScopes(have: ScopeSet, want: ScopeSet): boolean {
  for (const [r, acts] of want) {
    const h = have.get(r);
    if (!h) return false;
    if (h.has('*')) continue;
    for (const a of acts) if (!h.has(a)) return false;
  }
  return true;
}

/** Canonical scope strings (sorted resources; pull before push). */
export function formatScopes(s: ScopeSet): string[] {
  const order = (a: string) => (a === 'pull' ? 0 : a === 'push' ? 1 : 2);
  return [...s.entries()].sort(([a], [b]) => a.localeCompare(b))
    .map(([r, acts]) => `${r}:${[...acts].sort((x, y) => order(x) - order(y) || x.localeCompare(y)).join(',')}`);
}

export function repoScope(path: string, actions: string): string {
  return `repository:${path}:${actions}`;
}

interface CachedToken { scopes: ScopeSet; token: string; expiresAt: number }

/** Bearer tokens per (host, realm, service), each remembered with the scopes it was issued for. */
export class TokenCache {
  private readonly entries = new Map<string, CachedToken[]>();
  constructor(private readonly now: () => number = Date.now) {}

  private key(host: string, realm: string, service: string): string { return `${host}\n${realm}\n${service}`; }

  get(host: string, realm: string, service: string, want: ScopeSet): string | undefined {
    const list = this.entries.get(this.key(host, realm, service));
    if (!list) return undefined;
    const t = this.now();
    for (const e of list) if (e.expiresAt > t && coversScopes(e.scopes, want)) return e.token;
    return undefined;
  }

  put(host: string, realm: string, service: string, scopes: ScopeSet, token: string, expiresInS: number, issuedAt?: string): void {
    const k = this.key(host, realm, service);
    const t = this.now();
    let start = t;
    if (issuedAt) {
      const iss = Date.parse(issuedAt);
      // trust the issuer's clock only when it is close to ours
      if (!Number.isNaN(iss) && Math.abs(iss - t) < 60_000) start = Math.min(t, iss);
    }
    const life = Math.max(expiresInS, 60) * 1000;
    const expiresAt = start + life - Math.min(10_000, life / 10);
    const list = (this.entries.get(k) ?? []).filter((e) => e.expiresAt > t && !coversScopes(scopes, e.scopes));
    list.unshift({ scopes, token, expiresAt });
    this.entries.set(k, list);
  }

  /** Forget tokens for host (e.g. after a 401 with a token we thought was valid). */
  invalidate(host: string, token?: string): void {
    for (const [k, list] of this.entries) {
      if (!k.startsWith(`${host}\n`)) continue;
      this.entries.set(k, token ? list.filter((e) => e.token !== token) : []);
    }
  }
}
