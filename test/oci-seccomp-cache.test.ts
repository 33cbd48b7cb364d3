/**
 * The seccomp disk cache (runtime/oci/seccomp.ts, setSeccompCacheDir): a compiled program is
 * written once and read back by later processes without loading koffi or libseccomp; a cache
 * file that is truncated, altered or garbage is ignored and rewritten; and containers started by
 * `berth run` (which points the cache at <root>/cache/seccomp) are filtered the same with a cold
 * cache, a warm one and a corrupted one.
 */
import t from 'tap';
import { spawnSync, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { baseImage, pushTestImage } from './fixtures/images.js';
import { compileSeccomp, hash64, hash64js } from '../runtime/oci/seccomp.js';
import { defaultSeccompProfile } from '../runtime/oci/seccomp-default.js';
import { runBerthCli, type CliResult } from './helpers/engine-cli.js';

t.setTimeout(300000);

const rand = randomBytes(3).toString('hex');
const dir = mkdtempSync(join(tmpdir(), 'berth-seccomp-cache-'));
const cgParent = `berth-sccache-${rand}`;
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const DEFAULT_CAPS = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE'];
const profile = defaultSeccompProfile(DEFAULT_CAPS);
const fresh = compileSeccomp(profile); // no cache dir set in this process: compiled by libseccomp

/** In a new process: point the cache at cacheDir, compile the profile, report what happened. */
const CHILD = `
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { compileSeccomp, setSeccompCacheDir, seccompCacheFile } from '${join(process.cwd(), 'runtime/oci/seccomp.ts')}';
const [cacheDir, profileFile] = process.argv.slice(-2);
const profile = JSON.parse(readFileSync(profileFile, 'utf8'));
setSeccompCacheDir(cacheDir);
const c = compileSeccomp(profile);
const req = createRequire(import.meta.url);
const koffiLoaded = Object.keys(req.cache).some((k) => k.includes('/node_modules/koffi/'));
process.stdout.write(JSON.stringify({ program: c.program.toString('hex'), flags: c.flags, koffiLoaded, file: seccompCacheFile(JSON.stringify(profile)) }));
`;
const childFile = join(dir, 'child.mts');
writeFileSync(childFile, CHILD);
const profileFile = join(dir, 'profile.json');
writeFileSync(profileFile, JSON.stringify(profile));

interface ChildOut { program: string; flags: number; koffiLoaded: boolean; file: string | null }
function compileInChild(cacheDir: string): ChildOut {
  const r = spawnSync(process.execPath, ['--import', 'tsx', childFile, cacheDir, profileFile], { encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as ChildOut;
}

t.test('a second process reads the program from the cache, without koffi', async (t) => {
  const cacheDir = join(dir, 'c1');
  const first = compileInChild(cacheDir);
  t.equal(first.program, fresh.program.toString('hex'), 'first compile: the same program as without a cache');
  t.ok(first.koffiLoaded, 'the first compile loaded koffi (libseccomp)');
  t.ok(first.file && existsSync(first.file), 'cache file written');
  const st = statSync(first.file!);
  t.equal(st.mode & 0o777, 0o600, 'cache file is private');
  const buf = readFileSync(first.file!);
  t.ok(buf.subarray(0, 10).equals(Buffer.from('berthbpf2\n')), 'magic');
  t.equal(buf.readUInt32LE(18), fresh.program.length, 'program length recorded');
  t.equal(buf.length, 22 + buf.readUInt32LE(10) + buf.readUInt32LE(14) + fresh.program.length, 'header + key + meta + program, nothing else');
  t.ok(buf.subarray(22, 22 + buf.readUInt32LE(10)).toString('utf8').endsWith(`\0${JSON.stringify(profile)}`), 'the key ends with the profile');
  t.ok(buf.subarray(buf.length - fresh.program.length).equals(fresh.program), 'the program last');
  t.same(readdirSync(cacheDir), [first.file!.split('/').pop()], 'no temp files left');

  const second = compileInChild(cacheDir);
  t.equal(second.program, fresh.program.toString('hex'), 'cache hit: same program');
  t.equal(second.flags, fresh.flags);
  t.notOk(second.koffiLoaded, 'a cache hit loads neither koffi nor libseccomp');
  t.equal(statSync(first.file!).mtimeMs, st.mtimeMs, 'a hit does not rewrite the file');
});

t.test('a corrupt cache file is ignored and rewritten', async (t) => {
  const cacheDir = join(dir, 'c2');
  const file = compileInChild(cacheDir).file!;
  const good = readFileSync(file);
  const corruptions: [string, Buffer][] = [
    ['truncated', good.subarray(0, good.length - 8)],
    ['one program byte changed', Buffer.concat([good.subarray(0, good.length - 3), Buffer.from([good[good.length - 3] ^ 0xff]), good.subarray(good.length - 2)])],
    ['garbage', randomBytes(good.length)],
    ['empty', Buffer.alloc(0)],
    ['program length not whole instructions', (() => { const b = Buffer.from(good); b.writeUInt32LE(b.readUInt32LE(18) - 4, 18); return b; })()],
    // Same file name, another key (a hash collision, or another libseccomp): never used.
    ['one key byte changed', (() => { const b = Buffer.from(good); b[22 + 2] ^= 0x01; return b; })()],
    ['one meta byte changed', (() => { const b = Buffer.from(good); const at = 22 + b.readUInt32LE(10) + 2; b[at] ^= 0x20; return b; })()],
  ];
  for (const [what, bad] of corruptions) {
    writeFileSync(file, bad);
    const r = compileInChild(cacheDir);
    t.equal(r.program, fresh.program.toString('hex'), `${what}: the right program anyway`);
    t.ok(r.koffiLoaded, `${what}: compiled again`);
    t.ok(readFileSync(file).equals(good), `${what}: cache file rewritten`);
  }
});

t.test('an unwritable cache dir only means no cache', async (t) => {
  const blocker = join(dir, 'not-a-dir');
  writeFileSync(blocker, 'x');
  const r = compileInChild(join(blocker, 'seccomp'));
  t.equal(r.program, fresh.program.toString('hex'));
  const again = compileInChild(join(blocker, 'seccomp'));
  t.ok(again.koffiLoaded, 'still compiling every time');
});

// ---------- containers: the cached program filters as the compiled one does ----------

let reg: TestRegistry | undefined;
const root = join(dir, 'root');
const state = join(dir, 's');
const env = { ...process.env, BERTH_CGROUP_PARENT: cgParent };

const berth = (args: string[]): Promise<CliResult> => runBerthCli(root, state, env, args);

t.test('berth run: unshare(CLONE_NEWUSER) is refused with a cold, warm and corrupt cache', async (t) => {
  t.teardown(async () => {
    try {
      const ids = (await berth(['ps', '-a', '-q', '--no-trunc'])).stdout.split('\n').filter(Boolean);
      if (ids.length) await berth(['rm', '-f', ...ids]);
    } finally {
      for (const l of readFileSync('/proc/self/mountinfo', 'utf8').split('\n').reverse()) {
        const mp = l.split(' ')[4];
        if (mp && mp.startsWith(dir)) { try { execFileSync('umount', ['-l', mp]); } catch { /* gone */ } }
      }
      for (const c of readdirSync('/sys/fs/cgroup')) { try { rmdirSync(join('/sys/fs/cgroup', c, cgParent)); } catch { /* absent */ } }
      await reg?.stop();
    }
  });
  reg = await startRegistry();
  const img = (await pushTestImage(reg.host, 'berth/busybox', 'latest', await baseImage())).ref;
  const pull = await berth(['pull', img]);
  t.equal(pull.code, 0, pull.stderr);
  const cacheDir = join(root, 'cache', 'seccomp');
  const unshare = ['run', '--rm', '--network', 'none', img, 'unshare', '-U', 'true'];

  const cold = await berth(unshare);
  t.equal(cold.code, 1, 'cold cache: unshare -U fails');
  t.match(cold.stderr, /Operation not permitted/);
  const files = readdirSync(cacheDir).filter((f) => f.endsWith('.bpf'));
  t.equal(files.length, 1, 'the default profile was cached under <root>/cache/seccomp');
  const file = join(cacheDir, files[0]);
  const good = readFileSync(file);

  const warm = await berth(unshare);
  t.equal(warm.code, 1, 'warm cache: unshare -U fails');
  t.match(warm.stderr, /Operation not permitted/);

  writeFileSync(file, good.subarray(0, 40));
  const corrupt = await berth(unshare);
  t.equal(corrupt.code, 1, 'corrupt cache: unshare -U still fails');
  t.ok(readFileSync(file).equals(good), 'and the cache file was rewritten');

  const unconfined = await berth(['run', '--rm', '--network', 'none', '--security-opt', 'seccomp=unconfined', img, 'unshare', '-U', 'true']);
  t.equal(unconfined.code, 0, `without seccomp the same command works (so the filter is what refused it): ${unconfined.stderr}`);

  const ok = await berth(['run', '--rm', '--network', 'none', img, 'sh', '-c', 'echo fine']);
  t.equal(ok.code, 0, ok.stderr);
  t.equal(ok.stdout, 'fine\n', 'ordinary syscalls still allowed under the cached program');
});

t.test('the cache name hash: berth.node and the JavaScript fallback agree, so either finds the other\'s files', async (t) => {
  for (const n of [0, 1, 3, 4, 7, 64, 1000, 40_003]) {
    const b = randomBytes(n);
    t.equal(hash64(b), hash64js(b), `${n} bytes`);
    t.match(hash64(b), /^[0-9a-f]{16}$/);
  }
  t.not(hash64(Buffer.from('a')), hash64(Buffer.from('b')), 'different input, different hash');
});
