/** Add videos to a list: a CSV file, pasted CSV text (`url,title`), or video files. */
import { useRef, useState, type FormEvent, type KeyboardEvent } from "react";

import { api, ApiError, type ImportAccepted, type UploadProgress } from "../api";
import { describeError } from "../jobView";

const MODES = [
  ["paste", "Paste CSV"],
  ["csv", "CSV file"],
  ["upload", "Upload videos"],
] as const;

type Mode = (typeof MODES)[number][0];

/** "3.2 MB" */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

interface RowError {
  row?: number;
  field?: string;
  error?: string;
  message?: string;
}

export function ImportPanel({ listId, onStarted }: { listId: string; onStarted: (accepted: ImportAccepted) => void }) {
  const [mode, setMode] = useState<Mode>("paste");
  const [sent, setSent] = useState<UploadProgress | null>(null);
  const tabRefs = useRef(new Map<Mode, HTMLButtonElement>());
  const [text, setText] = useState("url,title\n");
  const [csvFile, setCsvFile] = useState<File | null>(null);
  const [videoFiles, setVideoFiles] = useState<File[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [rows, setRows] = useState<RowError[]>([]);
  const [done, setDone] = useState<string | null>(null);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setRows([]);
    setDone(null);
    setSent(null);
    try {
      let accepted: ImportAccepted;
      if (mode === "paste") accepted = await api.importCsvText(listId, text);
      else if (mode === "csv") {
        if (!csvFile) throw new Error("Choose a CSV file");
        accepted = await api.importCsvFile(listId, csvFile);
      } else {
        if (videoFiles.length === 0) throw new Error("Choose video files");
        accepted = await api.uploadVideos(listId, videoFiles, setSent);
      }
      setDone(`Started a job for ${accepted.total_videos} video${accepted.total_videos === 1 ? "" : "s"}.`);
      onStarted(accepted);
    } catch (e) {
      setError(describeError(e));
      if (e instanceof ApiError && Array.isArray(e.details.rows)) setRows(e.details.rows as RowError[]);
    } finally {
      setBusy(false);
      setSent(null);
    }
  };

  // Arrow keys, Home and End move between the tabs (and select), as a tablist should.
  const onTabKey = (event: KeyboardEvent) => {
    const index = MODES.findIndex(([key]) => key === mode);
    const next =
      event.key === "ArrowRight"
        ? (index + 1) % MODES.length
        : event.key === "ArrowLeft"
          ? (index + MODES.length - 1) % MODES.length
          : event.key === "Home"
            ? 0
            : event.key === "End"
              ? MODES.length - 1
              : -1;
    if (next < 0) return;
    event.preventDefault();
    const key = MODES[next][0];
    setMode(key);
    tabRefs.current.get(key)?.focus();
  };

  return (
    <section className="import" aria-label="Add videos">
      <div className="tabs" role="tablist" aria-label="How to add videos" onKeyDown={onTabKey}>
        {MODES.map(([key, label]) => (
          <button
            key={key}
            ref={(el) => {
              if (el) tabRefs.current.set(key, el);
              else tabRefs.current.delete(key);
            }}
            id={`import-tab-${key}`}
            type="button"
            role="tab"
            aria-selected={mode === key}
            aria-controls="import-panel"
            tabIndex={mode === key ? 0 : -1}
            className={mode === key ? "tab active" : "tab"}
            onClick={() => setMode(key)}
          >
            {label}
          </button>
        ))}
      </div>
      <form id="import-panel" role="tabpanel" aria-labelledby={`import-tab-${mode}`} onSubmit={(e) => void submit(e)}>
        {mode === "paste" && (
          <label className="block">
            CSV with a <code>url,title</code> header (web addresses, or paths inside the server's import folder)
            <textarea
              name="csv"
              aria-label="CSV text"
              rows={6}
              value={text}
              onChange={(e) => setText(e.target.value)}
              spellCheck={false}
            />
          </label>
        )}
        {mode === "csv" && (
          <label className="block">
            Choose a CSV file
            <input name="csvfile" type="file" accept=".csv,text/csv" onChange={(e) => setCsvFile(e.target.files?.[0] ?? null)} />
          </label>
        )}
        {mode === "upload" && (
          <label className="block">
            Video files
            <input
              name="videos"
              type="file"
              accept="video/*"
              multiple
              onChange={(e) => setVideoFiles(e.target.files ? [...e.target.files] : [])}
            />
          </label>
        )}
        <button type="submit" disabled={busy}>
          {mode === "upload" ? "Upload" : "Import"}
        </button>
        {sent && (
          <span className="upload-progress" data-testid="upload-progress">
            {" "}
            <progress max={sent.total} value={sent.loaded} aria-label="Upload progress" />{" "}
            {formatBytes(sent.loaded)} of {formatBytes(sent.total)} sent
          </span>
        )}
        {done && (
          <span className="ok-text" role="status">
            {" "}
            {done}
          </span>
        )}
        {error && (
          <div className="error-text" data-testid="import-error">
            {error}
            {rows.length > 0 && (
              <ul>
                {rows.map((r, i) => (
                  <li key={i}>
                    row {r.row ?? "?"}
                    {r.field ? ` (${r.field})` : ""}: {r.error ?? r.message ?? "invalid"}
                  </li>
                ))}
              </ul>
            )}
          </div>
        )}
      </form>
    </section>
  );
}
