/** An image from an endpoint that needs the bearer token (thumbnails). */
import { useEffect, useState } from "react";

import { api } from "../api";

export function AuthImage({ src, alt, className }: { src: string | null; alt: string; className?: string }) {
  const [url, setUrl] = useState<string | null>(null);
  useEffect(() => {
    if (!src) return undefined;
    let objectUrl: string | null = null;
    let cancelled = false;
    api.thumbnail(src).then(
      (u) => {
        if (cancelled) URL.revokeObjectURL(u);
        else {
          objectUrl = u;
          setUrl(u);
        }
      },
      () => setUrl(null),
    );
    return () => {
      cancelled = true;
      if (objectUrl) URL.revokeObjectURL(objectUrl);
    };
  }, [src]);
  if (!src || !url) return <div className={`thumb-placeholder ${className ?? ""}`} aria-label={alt} />;
  return <img src={url} alt={alt} className={className} />;
}
