/** The session of the logged-in user, kept in localStorage (shared by the tabs). */
import type { User } from "./types";

export const TOKEN_KEY = "reeltrack.token";
export const USER_KEY = "reeltrack.user";

export interface Session {
  token: string;
  user: User;
}

/** The stored session, or null when logged out (or storage is unusable). */
export function loadSession(): Session | null {
  try {
    const token = localStorage.getItem(TOKEN_KEY);
    const user = localStorage.getItem(USER_KEY);
    if (!token || !user) return null;
    const parsed = JSON.parse(user) as User;
    if (typeof parsed?.id !== "string") return null;
    return { token, user: parsed };
  } catch {
    return null;
  }
}

export function saveSession(session: Session): void {
  localStorage.setItem(TOKEN_KEY, session.token);
  localStorage.setItem(USER_KEY, JSON.stringify(session.user));
}

export function clearSession(): void {
  try {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(USER_KEY);
  } catch {
    // nothing stored
  }
}

/** The current token (read fresh so every tab sees a new login at once). */
export function currentToken(): string | null {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}
