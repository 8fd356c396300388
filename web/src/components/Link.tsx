import type { ReactNode } from "react";

import { linkHandler } from "../router";

export function Link({
  to,
  children,
  className,
  current,
}: {
  to: string;
  children: ReactNode;
  className?: string;
  /** Marks the link of the section being shown (aria-current="page"). */
  current?: boolean;
}) {
  return (
    <a href={to} onClick={linkHandler(to)} className={className} aria-current={current ? "page" : undefined}>
      {children}
    </a>
  );
}
