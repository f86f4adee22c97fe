// Files in the chat (issue 24): uploads with progress and cancel, chips before sending, image thumbnails and
// a document's extracted text, for the composer and for sent messages.
import { useEffect, useRef, useState } from 'react';
import { errorText } from '../App';
import { ApiError, api, type FileMeta } from '../api/client';
import './attachments.css';

/** One file the user attached in the composer: uploading, uploaded (`file`), or failed (`error`). */
export interface Pending {
  key: string;
  name: string;
  bytes: number;
  /** 0..1 of the upload sent. */
  progress: number;
  file: FileMeta | null;
  error: string | null;
  abort: () => void;
}

const size = (n: number) =>
  n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : n >= 1024 ? `${Math.round(n / 1024)} KB` : `${n} B`;

/** What the server's refusal means for the user, naming the file. */
export function uploadErrorText(name: string, err: unknown): string {
  if (err instanceof ApiError) {
    switch (err.code) {
      case 'file_too_large':
        return `“${name}” is too large: ${err.message}.`;
      case 'file_quota_exceeded':
        return `“${name}” does not fit in your storage quota: delete files you no longer need. (${err.message})`;
      case 'unsupported_file_type':
        return `“${name}” is not a file type the server accepts: ${err.message}.`;
      case 'unreadable_file':
        return `“${name}” could not be read: ${err.message}.`;
    }
    return `“${name}” was not uploaded: ${err.message}`;
  }
  return `“${name}” was not uploaded: ${errorText(err)}`;
}

/**
 * Uploads one file by XMLHttpRequest (fetch reports no upload progress). Resolves with the stored file,
 * rejects with an ApiError carrying the server's code; `abort` cancels it (rejects with code `cancelled`).
 */
export function uploadFile(
  file: File,
  onProgress: (fraction: number) => void,
): { done: Promise<FileMeta>; abort: () => void } {
  const xhr = new XMLHttpRequest();
  let aborted = false;
  const done = (async () => {
    const token = await api.bearer();
    if (aborted) throw new ApiError(0, 'cancelled', 'cancelled');
    return new Promise<FileMeta>((resolve, reject) => {
      xhr.open('POST', '/api/files');
      if (token) xhr.setRequestHeader('authorization', `Bearer ${token}`);
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
      xhr.onabort = () => reject(new ApiError(0, 'cancelled', 'cancelled'));
      xhr.onerror = () => reject(new ApiError(0, 'network_error', 'the connection failed'));
      xhr.onload = () => {
        let body: { error?: { code?: string; message?: string } } & Partial<FileMeta> = {};
        try {
          body = JSON.parse(xhr.responseText);
        } catch {}
        if (xhr.status === 201) resolve(body as FileMeta);
        else
          reject(
            new ApiError(
              xhr.status,
              body.error?.code ?? 'http_error',
              body.error?.message ?? `${xhr.status} ${xhr.statusText}`,
            ),
          );
      };
      const form = new FormData();
      form.append('file', file, file.name);
      xhr.send(form);
    });
  })();
  return {
    done,
    abort: () => {
      aborted = true;
      xhr.abort();
    },
  };
}

// Metadata by id, shared by every message showing the same file (a file never changes once uploaded).
const metaCache = new Map<string, Promise<FileMeta>>();
const metaOf = (id: string) => {
  let p = metaCache.get(id);
  if (!p) {
    p = api.file(id);
    p.catch(() => metaCache.delete(id));
    metaCache.set(id, p);
  }
  return p;
};

/** An image's thumbnail: its bytes fetched with the bearer token, shown through an object URL. */
export function Thumb({ file }: { file: FileMeta }) {
  const [url, setUrl] = useState<string | null>(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let made: string | null = null;
    let live = true;
    api
      .fileBlob(file.id)
      .then((blob) => {
        made = URL.createObjectURL(blob);
        if (live) setUrl(made);
        else URL.revokeObjectURL(made);
      })
      .catch(() => live && setFailed(true));
    return () => {
      live = false;
      if (made) URL.revokeObjectURL(made);
    };
  }, [file.id]);
  if (failed) return <span className="thumb thumb-missing">{file.filename}</span>;
  return url ? (
    <img className="thumb" src={url} alt={file.filename} data-testid="attachment-thumb" />
  ) : (
    <span className="thumb thumb-loading" aria-hidden="true" />
  );
}

/** A document's extracted text (GET /api/files/{id}/text) in a modal dialog. */
export function ViewText({ file }: { file: FileMeta }) {
  const ref = useRef<HTMLDialogElement>(null);
  const [text, setText] = useState<string | null>(null);
  const [note, setNote] = useState('');
  const open = async () => {
    ref.current?.showModal();
    if (text !== null) return;
    try {
      const t = await api.fileText(file.id);
      setText(t.text);
      setNote(t.text_truncated ? `Cut at ${t.text.length.toLocaleString()} characters.` : '');
    } catch (err) {
      setText('');
      setNote(errorText(err));
    }
  };
  const titleId = `text-title-${file.id}`;
  return (
    <>
      <button type="button" className="link-button" onClick={open}>
        View text<span className="sr-only"> of {file.filename}</span>
      </button>
      <dialog ref={ref} className="text-dialog" aria-labelledby={titleId}>
        <div className="text-dialog-head">
          <h2 id={titleId}>{file.filename}</h2>
          <button type="button" onClick={() => ref.current?.close()}>
            Close
          </button>
        </div>
        {note && <p className="muted">{note}</p>}
        <pre data-testid="document-text">{text ?? 'Loading…'}</pre>
      </dialog>
    </>
  );
}

/** One uploaded file, shown as a thumbnail (images) or its name with its text (documents). */
function FileView({ file }: { file: FileMeta }) {
  return file.kind === 'image' ? (
    <Thumb file={file} />
  ) : (
    <>
      <span className="file-name">📄 {file.filename}</span>
      <ViewText file={file} />
    </>
  );
}

/** The composer's chips: progress with Cancel while uploading, then a preview with Remove. */
export function PendingChips({ items, onRemove }: { items: Pending[]; onRemove: (key: string) => void }) {
  if (items.length === 0) return null;
  return (
    <ul className="attach-list" aria-label="Attached files">
      {items.map((p) => (
        <li key={p.key} className={p.error ? 'chip chip-error' : 'chip'} data-testid="attachment-chip">
          {p.file ? (
            <FileView file={p.file} />
          ) : (
            <span className="file-name">
              {p.name} <span className="muted">({size(p.bytes)})</span>
            </span>
          )}
          {!p.file && !p.error && (
            <progress
              value={p.progress}
              max={1}
              aria-label={`Uploading ${p.name}`}
              data-testid="upload-progress"
            />
          )}
          {p.error && (
            <span className="msg-error" role="alert">
              {p.error}
            </span>
          )}
          <button type="button" className="link-button" onClick={() => onRemove(p.key)}>
            {p.file || p.error ? 'Remove' : 'Cancel'}
            <span className="sr-only"> {p.name}</span>
          </button>
        </li>
      ))}
    </ul>
  );
}

/** A sent message's files, by id (the message lists ids; the metadata says image or document). */
export function MessageAttachments({ ids }: { ids: string[] }) {
  const [files, setFiles] = useState<(FileMeta | null)[]>([]);
  const key = ids.join();
  // biome-ignore lint/correctness/useExhaustiveDependencies: the ids, by value
  useEffect(() => {
    let live = true;
    Promise.all(ids.map((id) => metaOf(id).catch(() => null))).then((f) => live && setFiles(f));
    return () => {
      live = false;
    };
  }, [key]);
  if (ids.length === 0) return null;
  return (
    <ul className="attach-list sent" aria-label="Attachments">
      {ids.map((id, i) => {
        const f = files[i];
        return (
          <li key={id} className="chip" data-testid="message-attachment">
            {f ? <FileView file={f} /> : <span className="muted">{files.length ? 'file deleted' : '…'}</span>}
          </li>
        );
      })}
    </ul>
  );
}
