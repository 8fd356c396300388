/** Add videos to a list: a CSV file, pasted CSV text (`url,title`), or video files. */
import { useState, type FormEvent } from "react";

import { api, ApiError, type ImportAccepted } from "../api";

interface RowError {
  row?: number;
  field?: string;
  error?: string;
  message?: string;
}

export function ImportPanel({ listId, onStarted }: { listId: string; onStarted: (accepted: ImportAccepted) => void }) {
  const [mode, setMode] = useState<"paste" | "csv" | "upload">("paste");
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
    try {
      let accepted: ImportAccepted;
      if (mode === "paste") accepted = await api.importCsvText(listId, text);
      else if (mode === "csv") {
        if (!csvFile) throw new Error("Choose a CSV file");
        accepted = await api.importCsvFile(listId, csvFile);
      } else {
        if (videoFiles.length === 0) throw new Error("Choose video files");
        accepted = await api.uploadVideos(listId, videoFiles);
      }
      setDone(`Started a job for ${accepted.total_videos} video${accepted.total_videos === 1 ? "" : "s"}.`);
      onStarted(accepted);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
      if (e instanceof ApiError && Array.isArray(e.details.rows)) setRows(e.details.rows as RowError[]);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="import" aria-label="Add videos">
      <div className="tabs" role="tablist">
        {(
          [
            ["paste", "Paste CSV"],
            ["csv", "CSV file"],
            ["upload", "Upload videos"],
          ] as const
        ).map(([key, label]) => (
          <button
            key={key}
            type="button"
            role="tab"
            aria-selected={mode === key}
            className={mode === key ? "tab active" : "tab"}
            onClick={() => setMode(key)}
          >
            {label}
          </button>
        ))}
      </div>
      <form onSubmit={(e) => void submit(e)}>
        {mode === "paste" && (
          <label className="block">
            CSV with a <code>url,title</code> header (URLs, or paths inside the server's import folder)
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
            CSV file
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
        {done && (
          <span className="ok-text" role="status">
            {" "}
            {done}
          </span>
        )}
        {error && (
          <div className="error-text" role="alert">
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
