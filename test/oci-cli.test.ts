/**
 * berth-oci driven exactly as Docker/containerd drive runc (TEST-ENVIRONMENT.md lists the calls),
 * through the built CLI (dist/, made by `npm run build`).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync, mkdtempSync, rmSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { cgroupDirOf, makeEnv, writeSpec, type TestEnv } from './helpers/oci.js';
import { waitpidNohang } from '../runtime/linux/libc.js';

t.setTimeout(120_000);
const BIN = join(import.meta.dirname, '..', 'bin', 'berth-oci.js');
let env: TestEnv;
t.before(() => { env = makeEnv(); });
t.teardown(async () => { await env.cleanup(); });

/**
 * Run berth-oci. Its stdout/stderr are files, not pipes: a created container inherits them (as it
 * inherits a shim's FIFOs), so pipes would stay open after berth-oci exits — runc behaves the same.
 */
function oci(args: string[], input?: string) {
  const log = join(env.bundle, 'log.json');
  const outPath = join(env.bundle, 'cli-stdout');
  const errPath = join(env.bundle, 'cli-stderr');
  const out = openSync(outPath, 'w');
  const err = openSync(errPath, 'w');
  try {
    const r = spawnSync(process.execPath, [BIN, '--root', env.root, '--log', log, '--log-format', 'json', ...args], { input, stdio: [input === undefined ? 'ignore' : 'pipe', out, err], timeout: 30_000 });
    return { code: r.status, stdout: readFileSync(outPath, 'utf8'), stderr: readFileSync(errPath, 'utf8'), log };
  } finally {
    closeSync(out);
    closeSync(err);
  }
}

t.test("Docker's call sequence: create, start, exec --detach, pause, resume, update, kill, delete", async (t) => {
  const id = env.id('docker');
  writeSpec(env.bundle, env.spec(['/bin/sleep', '1000']));
  const pidFile = join(env.bundle, 'init.pid');
  let r = oci(['create', '--bundle', env.bundle, '--pid-file', pidFile, id]);
  t.equal(r.code, 0, r.stderr);
  const pid = Number(readFileSync(pidFile, 'utf8'));
  t.ok(pid > 0, 'pid file written');
  t.equal(JSON.parse(oci(['state', id]).stdout).status, 'created');
  t.equal(oci(['start', id]).code, 0);
  const st = JSON.parse(oci(['state', id]).stdout);
  t.equal(st.status, 'running');
  t.equal(st.pid, pid);
  t.equal(st.bundle, env.bundle);

  const proc = join(env.bundle, 'process.json');
  writeFileSync(proc, JSON.stringify({ args: ['/bin/sleep', '500'], cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/bin'] }));
  const execPid = join(env.bundle, 'exec.pid');
  r = oci(['exec', '--process', proc, '--detach', '--pid-file', execPid, id]);
  t.equal(r.code, 0, r.stderr);
  const ep = Number(readFileSync(execPid, 'utf8'));
  t.ok(JSON.parse(oci(['ps', '--format', 'json', id]).stdout).includes(ep), 'exec process is in the container cgroup');

  t.equal(oci(['pause', id]).code, 0);
  t.equal(JSON.parse(oci(['state', id]).stdout).status, 'paused');
  t.equal(oci(['resume', id]).code, 0);
  t.equal(JSON.parse(oci(['state', id]).stdout).status, 'running');

  r = oci(['update', '--resources', '-', id], JSON.stringify({ memory: { limit: 33554432 }, pids: { limit: 50 } }));
  t.equal(r.code, 0, r.stderr);
  const rec = JSON.parse(readFileSync(join(env.root, id, 'state.json'), 'utf8'));
  const mem = cgroupDirOf(rec, 'memory');
  t.equal(readFileSync(join(mem, rec.cgroupVersion === 1 ? 'memory.limit_in_bytes' : 'memory.max'), 'utf8').trim(), '33554432');

  const list = JSON.parse(oci(['list', '--format', 'json']).stdout);
  t.ok(list.some((c: { id: string }) => c.id === id), 'list shows it');

  t.equal(oci(['kill', id, '15']).code, 0);
  t.equal(oci(['kill', id, '9']).code, 0);
  // Like a shim, this process is the parent (CLONE_PARENT) of the init and the exec'd process: reap them.
  let initDone = false;
  let execDone = false;
  for (let i = 0; i < 300 && !(initDone && execDone); i++) {
    if (!execDone) execDone = waitpidNohang(ep) !== null;
    if (!initDone) initDone = waitpidNohang(pid) !== null;
    await new Promise((res) => setTimeout(res, 10));
  }
  t.ok(initDone && execDone, 'init and exec process exited');
  t.equal(JSON.parse(oci(['state', id]).stdout).status, 'stopped');
  t.equal(oci(['delete', id]).code, 0);
  t.notOk(existsSync(join(env.root, id)), 'state removed');
  t.notOk(existsSync(mem), 'cgroup removed');
  r = oci(['delete', '--force', id]);
  t.equal(r.code, 0, 'delete --force of a missing container is fine, as with runc');
});

t.test('errors go to the --log file as JSON lines and exit non-zero', async (t) => {
  const r = oci(['start', 'no-such-container']);
  t.equal(r.code, 1);
  const last = readFileSync(r.log, 'utf8').trim().split('\n').pop()!;
  const entry = JSON.parse(last);
  t.equal(entry.level, 'error');
  t.match(entry.msg, /container "no-such-container" does not exist/);
  t.equal(oci(['--systemd-cgroup', 'list']).code, 2);
  t.equal(oci(['frobnicate']).code, 2);
});

t.test('run in the foreground returns the exit status and removes the container', async (t) => {
  const id = env.id('run');
  writeSpec(env.bundle, env.spec(['/bin/sh', '-c', 'echo hello from $$; exit 7']));
  const r = oci(['run', '--bundle', env.bundle, id]);
  t.equal(r.code, 7, r.stderr);
  t.equal(r.stdout, 'hello from 1\n');
  t.notOk(existsSync(join(env.root, id)));
});

t.test('spec writes the runc template; features is JSON', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-spec-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = oci(['spec', '--bundle', dir]);
  t.equal(r.code, 0, r.stderr);
  const s = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  t.same(s.process.args, ['sh']);
  t.equal(oci(['spec', '--bundle', dir]).code, 1, 'refuses to overwrite');
  const f = JSON.parse(oci(['features']).stdout);
  t.ok(f.linux.namespaces.includes('pid'));
});
