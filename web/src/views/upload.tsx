import { useState } from 'preact/hooks';
import { errorText, type Api, type Application, type VersionMetadata } from '../api.ts';
import { filesFromEntry, filesFromInput, isArchiveName, packTarGz, PackError, type SourceFile } from '../pack.ts';
import { nextPatch } from '../forms.ts';
import { href, navigate } from '../route.ts';

/** What will be uploaded: an archive as it is, or a folder's files to pack. */
type Chosen = { kind: 'archive'; file: File } | { kind: 'folder'; name: string; files: SourceFile[] };

export function Upload({ api, application, latestVersion }: { api: Api; application: Application; latestVersion?: string }) {
  const [chosen, setChosen] = useState<Chosen>();
  const [version, setVersion] = useState(() => nextPatch(latestVersion));
  const [language, setLanguage] = useState('');
  const [kind, setKind] = useState('');
  const [progress, setProgress] = useState<{ sent: number; total: number; phase: string }>();
  const [error, setError] = useState<string>();
  const [dragging, setDragging] = useState(false);

  const choose = (next: Chosen) => {
    setChosen(next);
    setError(undefined);
  };

  const onDrop = async (event: DragEvent) => {
    event.preventDefault();
    setDragging(false);
    const item = event.dataTransfer?.items[0];
    const entry = item?.webkitGetAsEntry();
    try {
      if (entry?.isDirectory) choose({ kind: 'folder', name: entry.name, files: await filesFromEntry(entry as FileSystemDirectoryEntry) });
      else {
        const file = event.dataTransfer?.files[0];
        if (!file) return;
        if (!isArchiveName(file.name)) throw new PackError(`${file.name} is not a .tar.gz, .tgz or .zip archive; drop the project folder or an archive`);
        choose({ kind: 'archive', file });
      }
    } catch (failure) {
      setError(errorText(failure));
    }
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    if (!chosen) {
      setError('Choose or drop a project folder or an archive first.');
      return;
    }
    setError(undefined);
    try {
      let archive: Blob;
      let filename: string;
      if (chosen.kind === 'archive') {
        archive = chosen.file;
        filename = chosen.file.name;
      } else {
        setProgress({ sent: 0, total: 1, phase: 'Packing' });
        archive = await packTarGz(chosen.files);
        filename = `${chosen.name || 'source'}.tar.gz`;
      }
      const metadata: VersionMetadata = { version: version.trim() };
      if (language) metadata.language = language as NonNullable<VersionMetadata['language']>;
      if (kind) metadata.kind = kind as NonNullable<VersionMetadata['kind']>;
      setProgress({ sent: 0, total: archive.size, phase: 'Uploading' });
      const created = await api.uploadVersion(application.id, metadata, archive, filename, (sent, total) => setProgress({ sent, total, phase: 'Uploading' }));
      navigate(href.build(created.build.id));
    } catch (failure) {
      setError(errorText(failure));
      setProgress(undefined);
    }
  };

  const percent = progress && progress.total > 0 ? Math.round((progress.sent / progress.total) * 100) : 0;
  return (
    <section aria-labelledby="upload-title">
      <h2 id="upload-title">Upload a new version</h2>
      <form onSubmit={submit} class="upload">
        <div
          class={`dropzone${dragging ? ' dragging' : ''}`}
          onDragOver={(event) => {
            event.preventDefault();
            setDragging(true);
          }}
          onDragLeave={() => setDragging(false)}
          onDrop={onDrop}
        >
          <p>Drop a project folder or a .tar.gz / .zip archive here, or choose one:</p>
          <label for="upload-folder">Project folder</label>
          <input
            id="upload-folder"
            type="file"
            // @ts-expect-error -- webkitdirectory is a standard-track attribute Preact's types do not list
            webkitdirectory={true}
            onChange={(event) => {
              const list = event.currentTarget.files;
              if (!list || list.length === 0) return;
              try {
                choose({ kind: 'folder', name: list[0]?.webkitRelativePath.split('/')[0] ?? 'source', files: filesFromInput(list) });
              } catch (failure) {
                setError(errorText(failure));
              }
            }}
          />
          <label for="upload-archive">Archive</label>
          <input
            id="upload-archive"
            type="file"
            accept=".tar.gz,.tgz,.zip,application/gzip,application/zip"
            onChange={(event) => {
              const file = event.currentTarget.files?.[0];
              if (file) choose({ kind: 'archive', file });
            }}
          />
          <p role="status">{chosen ? (chosen.kind === 'archive' ? `Archive: ${chosen.file.name}` : `Folder: ${chosen.name} (${chosen.files.length} files, packed as .tar.gz)`) : 'Nothing chosen yet.'}</p>
        </div>
        <div class="fields">
          <label for="upload-version">Version</label>
          <input id="upload-version" required value={version} onInput={(event) => setVersion(event.currentTarget.value)} />
          <label for="upload-language">Language</label>
          <select id="upload-language" value={language} onChange={(event) => setLanguage(event.currentTarget.value)}>
            <option value="">detect</option>
            <option value="c">C</option>
            <option value="rust">Rust</option>
            <option value="assemblyscript">AssemblyScript</option>
          </select>
          <label for="upload-kind">Kind</label>
          <select id="upload-kind" value={kind} onChange={(event) => setKind(event.currentTarget.value)}>
            <option value="">detect</option>
            <option value="wasi-command">function (WASI command)</option>
            <option value="proxy-wasm">filter (Proxy-Wasm)</option>
          </select>
        </div>
        <button type="submit" class="primary" disabled={progress !== undefined}>
          Upload and build
        </button>
        {progress && (
          <p>
            <label for="upload-progress">{progress.phase}</label> <progress id="upload-progress" max={100} value={percent} /> {percent}%
          </p>
        )}
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}
