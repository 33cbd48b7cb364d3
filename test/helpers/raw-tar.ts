/**
 * A tar built from raw tar-stream headers (any type, mode, owner, pax record: hostile layers
 * included), for the unpack tests. mtime defaults to 2020-09-13, owner to 0:0.
 */
import tar from 'tar-stream';

export type RawEntry = Partial<tar.Header> & { name: string; body?: string | Buffer; pax?: Record<string, string> };

export async function makeRawTar(entries: RawEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => { for await (const c of pack) chunks.push(c as Buffer); })();
  for (const e of entries) {
    const { body, ...h } = e;
    await new Promise<void>((res, rej) => {
      pack.entry({ mtime: new Date(1_600_000_000_000), uid: 0, gid: 0, ...h }, body ?? Buffer.alloc(0), (err) => (err ? rej(err) : res()));
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}
