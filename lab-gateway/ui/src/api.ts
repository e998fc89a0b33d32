// The gateway's REST API, as the UI calls it: same-origin, authenticated by
// the HttpOnly cookie `POST /api/login` sets. Errors carry the server's
// `{reason, message}`.

export class ApiError extends Error {
  constructor(
    public status: number,
    public reason: string,
    message: string,
  ) {
    super(message);
  }
}

export async function api<T = any>(
  path: string,
  init: { method?: string; body?: unknown; raw?: boolean; headers?: Record<string, string> } = {},
): Promise<T> {
  const r = await fetch(path, {
    method: init.method ?? "GET",
    credentials: "same-origin",
    headers: { ...init.headers, ...(init.body === undefined ? {} : { "Content-Type": "application/json" }) },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  if (!r.ok) {
    let reason = r.statusText;
    let message = `${r.status} ${r.statusText}`;
    try {
      const e = await r.json();
      reason = e.reason ?? reason;
      message = e.message ?? message;
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(r.status, reason, message);
  }
  if (init.raw) return (await r.text()) as T;
  if (r.status === 204) return undefined as T;
  const text = await r.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export interface Identity {
  username: string;
  name: string;
  role: string;
  group: string | null;
}

/// Who is logged in, or null (a 200 either way: no console error).
export async function me(): Promise<Identity | null> {
  const r = await api<{ identity: { username: string; role: string; group: string | null } | null }>("/api/login");
  return r.identity ? { ...r.identity, name: r.identity.username } : null;
}

export interface ContentModel {
  name: string;
  path: string;
  type: "directory" | "notebook" | "file";
  last_modified: string;
  content: any;
  writable: boolean;
}

/// A path as the contents API takes it: each segment escaped.
export function contentsUrl(path: string): string {
  const parts = path.split("/").filter(Boolean).map(encodeURIComponent);
  return parts.length ? "/api/contents/" + parts.join("/") : "/api/contents";
}
