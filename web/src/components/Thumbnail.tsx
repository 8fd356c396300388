/**
 * A video's thumbnail. `thumbnail_url` is a signed URL an <img> can load without the
 * bearer header; its signature carries a timestamp, so every listing returns a new URL.
 * The first URL seen for a video is kept (and so cached by the browser) until it stops
 * working, instead of re-downloading every thumbnail on every table refresh.
 */
import { useState } from "react";

const firstUrl = new Map<string, string>();

export function Thumbnail({ videoId, url, alt }: { videoId: string; url: string | null; alt: string }) {
  const [broken, setBroken] = useState<string | null>(null);
  if (!url) return <div className="thumb-placeholder" aria-label={alt} />;
  let src = firstUrl.get(videoId);
  if (!src || src === broken) {
    src = url;
    firstUrl.set(videoId, url);
  }
  if (src === broken) return <div className="thumb-placeholder" aria-label={alt} />;
  return (
    <img
      className="thumb"
      src={src}
      alt={alt}
      loading="lazy"
      onError={() => {
        // expired signature (or not written yet): forget it, the next listing's URL is used
        firstUrl.delete(videoId);
        setBroken(src);
      }}
    />
  );
}
