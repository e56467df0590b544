import { createGzip } from 'node:zlib';
import { buffer } from 'node:stream/consumers';
import tar from 'tar-stream';

/** A .tar.gz of the given files, built in memory. */
export async function tarGz(files: Record<string, string | Buffer>): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, content] of Object.entries(files)) pack.entry({ name, mode: 0o644 }, typeof content === 'string' ? Buffer.from(content) : content);
  pack.finalize();
  return buffer(pack.pipe(createGzip()));
}

export const tinyCProject = () => tarGz({ 'src/main.c': 'int main(void) { return 0; }\n' });

/** multipart/form-data for POST /v1/applications/:id/versions. */
export function versionForm(metadata: unknown, archive: Buffer | undefined, filename = 'source.tar.gz'): FormData {
  const form = new FormData();
  if (metadata !== undefined) form.append('metadata', typeof metadata === 'string' ? metadata : JSON.stringify(metadata));
  if (archive) form.append('source', new Blob([new Uint8Array(archive)]), filename);
  return form;
}
