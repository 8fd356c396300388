/**
 * `useJobProgress()`: the live progress of the user's jobs for React components. A thin
 * layer over {@link ProgressHub} (cross-tab election + the one socket + the store): all
 * the logic lives in plain modules, this file only subscribes.
 */
import { createContext, useCallback, useContext, useEffect, useState, useSyncExternalStore, type ReactNode } from "react";

import { createBrowserHub, type BrowserHubOptions } from "./browserHub";
import type { ConnectionStatus } from "./connection";
import type { ProgressHub, TabRole } from "./progressHub";
import type { RefusalReason } from "./protocol";
import type { JobProgress } from "./store";

const ProgressContext = createContext<ProgressHub | null>(null);

export interface ProgressProviderProps extends BrowserHubOptions {
  children?: ReactNode;
  /** Build the hub some other way (tests); default {@link createBrowserHub}. */
  createHub?: (options: BrowserHubOptions) => ProgressHub;
}

/** Owns one hub for the logged-in user: started on mount, stopped on unmount. */
export function ProgressProvider({ children, createHub, ...options }: ProgressProviderProps) {
  const [hub] = useState(() => (createHub ?? createBrowserHub)(options));
  useEffect(() => {
    hub.start();
    return () => hub.stop();
  }, [hub]);
  return <ProgressContext.Provider value={hub}>{children}</ProgressContext.Provider>;
}

/** The hub of the surrounding {@link ProgressProvider}. */
export function useProgressHub(): ProgressHub {
  const hub = useContext(ProgressContext);
  if (!hub) throw new Error("useJobProgress() needs a <ProgressProvider> above it");
  return hub;
}

export interface JobProgressResult {
  /** Latest state of each job on the dashboard (a new Map after every change). */
  jobProgress: ReadonlyMap<string, JobProgress>;
  isConnected: boolean;
  reconnecting: boolean;
  /** "polling" / "websocket" while connected, else null. */
  transport: string | null;
  status: ConnectionStatus;
  refusal: RefusalReason | null;
  /** Local time (ms) of the last update this tab saw. */
  lastUpdateAt: number | null;
  /** Whether this tab holds the browser's connection or follows the tab that does. */
  role: TabRole;
  requestResume: () => void;
}

export function useJobProgress(): JobProgressResult {
  const hub = useProgressHub();
  const subscribe = useCallback((listener: () => void) => hub.subscribe(listener), [hub]);
  const getState = useCallback(() => hub.getState(), [hub]);
  const state = useSyncExternalStore(subscribe, getState, getState);
  const requestResume = useCallback(() => hub.requestResume(), [hub]);
  return {
    jobProgress: state.jobs,
    isConnected: state.isConnected,
    reconnecting: state.reconnecting,
    transport: state.transport,
    status: state.status,
    refusal: state.refusal,
    lastUpdateAt: state.lastUpdateAt,
    role: state.role,
    requestResume,
  };
}
