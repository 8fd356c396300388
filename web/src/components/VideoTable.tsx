/** The videos of a list: thumbnail, title, duration, resolution, codec, status, error. */
import { formatDuration, formatResolution } from "../format";
import type { Video } from "../types";
import { Thumbnail } from "./Thumbnail";

export function VideoTable({ videos }: { videos: readonly Video[] }) {
  if (videos.length === 0) return <p className="muted">No videos yet: import a CSV or upload files.</p>;
  return (
    <table className="videos responsive" data-testid="video-table">
      <thead>
        <tr>
          <th scope="col">Thumbnail</th>
          <th scope="col">Title</th>
          <th scope="col">Duration</th>
          <th scope="col">Resolution</th>
          <th scope="col">Codec</th>
          <th scope="col">Status</th>
          <th scope="col">Error</th>
        </tr>
      </thead>
      <tbody>
        {videos.map((v) => (
          <tr key={v.id} data-testid="video-row" data-video-id={v.id} data-status={v.status}>
            <td data-label="Thumbnail">
              <Thumbnail videoId={v.id} url={v.thumbnail_url} alt={`Thumbnail of ${v.title ?? v.id}`} />
            </td>
            <td data-label="Title" className="title-cell">{v.title || v.source || v.id}</td>
            <td data-label="Duration">{formatDuration(v.duration_s)}</td>
            <td data-label="Resolution">{formatResolution(v.width, v.height)}</td>
            <td data-label="Codec">{[v.video_codec, v.audio_codec].filter(Boolean).join(" / ") || "—"}</td>
            <td data-label="Status">
              <span className={`badge badge-video-${v.status}`}>{v.status}</span>
            </td>
            <td data-label="Error" className="error-text" data-testid="video-error">
              {v.error ?? ""}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
