// What every competition page shares (issue 16): the competition as the
// server answers it, its URL, its markdown, its dates and metric as one
// line, and how a failed action shows. It imports no other competition
// module, so each of them can import it. Nothing here decides a rule: the
// server does, and says why it refused.

import DOMPurify from "dompurify";
import { marked } from "marked";
import { ApiError, type Identity } from "./api";
import { h, toast } from "./dom";

export interface MetricSpec {
  name: string;
  average?: string;
  positive?: string;
  k?: number;
  classes?: string[];
}

export interface Rules {
  metric: MetricSpec;
  columns: { id: string; target: string };
  start: string;
  merger_deadline: string;
  end: string;
  daily_cap: number;
  total_cap: number | null;
  team_size: number;
  selections: number;
  decimals: number;
  reveal: "at_end" | "by_staff";
  max_bytes: number;
  csv: boolean;
  code: { time_limit_s: number; memory_mb: number; gpus: number } | null;
}

export interface Team {
  id: number;
  name: string;
  members: string[];
}

export interface DataFile {
  name: string;
  size: number;
}

export interface Competition {
  slug: string;
  title: string;
  overview: string;
  rules_text: string;
  rules: Rules;
  phase: "upcoming" | "open" | "ended";
  higher_is_better: boolean;
  prediction_columns: { name: string; kind: string }[];
  private_visible: boolean;
  staff: boolean;
  /// The list's: whether the caller is on a team of it.
  joined?: boolean;
  /// Staff only.
  has_solution?: boolean;
  published?: string | null;
  revealed?: string | null;
  created_by?: string;
  /// One competition's: the caller's team and their counts, once joined.
  team?: Team;
  submissions?: { today: number; daily_cap: number; total: number; total_cap: number | null; resets_at: string };
  data?: DataFile[];
  hidden_data?: DataFile[];
}

export function compUrl(slug: string): string {
  return `/api/competitions/${encodeURIComponent(slug)}`;
}

/// Trainers, ops and admins may create competitions (and run theirs).
export function mayHost(u: Identity): boolean {
  return u.role === "trainer" || u.role === "ops" || u.role === "admin";
}

/// A competition's markdown (overview, rules), rendered in the app's page
/// as a notebook's markdown cells are: sanitised, and nothing in it may
/// post or restyle the page.
export function markdown(text: string, cls: string): HTMLElement {
  const el = h("div", { class: `markdown ${cls}` });
  el.innerHTML = DOMPurify.sanitize(marked.parse(text, { async: false }) as string, {
    FORBID_TAGS: ["form", "style", "input", "button", "textarea", "select", "link", "meta", "base"],
    FORBID_ATTR: ["style", "action", "formaction"],
  });
  return el;
}

/// A date and time on the reader's clock.
export function at(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : "–";
}

/// A code run's time limit as the server words it (in hours, minutes or
/// seconds, whichever is whole): 90 s is not "2 min", nor 20 s "0 min".
export function limitText(s: number): string {
  return s % 3600 === 0 ? `${s / 3600} h` : s % 60 === 0 ? `${s / 60} min` : `${s} s`;
}

/// Where the competition is in time, as one line.
export function phaseText(c: Competition): string {
  switch (c.phase) {
    case "upcoming":
      return `starts ${at(c.rules.start)}`;
    case "open":
      return `open until ${at(c.rules.end)}`;
    default:
      return `ended ${at(c.rules.end)}`;
  }
}

/// The metric as a reader names it, with which way is better.
export function metricText(c: Competition): string {
  const m = c.rules.metric;
  const extra = [m.average && `average ${m.average}`, m.positive && `positive “${m.positive}”`, m.k && `k = ${m.k}`, m.classes && `classes ${m.classes.join(", ")}`]
    .filter(Boolean)
    .join(", ");
  return `${m.name}${extra ? ` (${extra})` : ""}, ${c.higher_is_better ? "higher" : "lower"} is better`;
}

/// A failed action's message, as a toast and (where given) in its place.
export function failed(e: unknown, where?: HTMLElement): void {
  const message = (e as Error).message;
  toast(message, "error");
  where?.replaceChildren(h("p", { class: "error" }, message));
}


/// What a competition tab is given by the page that shows it.
export interface Tab {
  c: Competition;
  me: Identity;
  url: string;
  /// Keeps a poll until the page is left (then it is disposed).
  track(poll: Poll): Poll;
  /// Reads the competition again and shows the tab anew (after a join,
  /// a team change, a staff edit).
  reload(): void;
}

/// A refresh that runs again after each run ends (so two never overlap),
/// at the delay its last run asked for, or stops when it answers null;
/// disposed with its page, so nothing runs after the page is left.
export class Poll {
  private timer: number | null = null;
  private disposed = false;

  constructor(private tick: () => Promise<number | null>) {}

  /// Runs the tick after `ms` (again from now, if one was due).
  start(ms = 0): this {
    if (this.disposed) return this;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = window.setTimeout(() => void this.run(), ms);
    return this;
  }

  private async run(): Promise<void> {
    this.timer = null;
    const next = await this.tick();
    if (next !== null) this.start(next);
  }

  dispose(): void {
    this.disposed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

/// An answer read whole: its status and its JSON body (null when there is
/// none), for routes whose refusals carry more than a message (a refused
/// CSV's problems).
export interface Answer {
  ok: boolean;
  status: number;
  body: any;
}

/// Sends bytes as they are (a CSV, a data file), not as JSON as `api` does.
export async function send(path: string, method: string, body: Blob | string, type: string): Promise<Answer> {
  const r = await fetch(path, { method, credentials: "same-origin", headers: { "Content-Type": type }, body });
  const text = await r.text();
  let parsed: any = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { message: text };
  }
  return { ok: r.ok, status: r.status, body: parsed };
}

/// The same, for a route whose refusal is only its message: throws it.
export async function sendOrThrow(path: string, method: string, body: Blob | string, type: string): Promise<any> {
  const a = await send(path, method, body, type);
  if (!a.ok) throw new ApiError(a.status, a.body?.reason ?? "", a.body?.message ?? `${a.status}`);
  return a.body;
}

/// For a tab that needs a team: what to do first (the Join button is in
/// the page's head).
export function joinFirst(t: Tab, what: string): HTMLElement {
  return h(
    "p",
    { class: "empty join-first" },
    t.c.phase === "ended" ? "The competition has ended; it no longer takes new participants." : `Join the competition (above) to ${what}.`,
  );
}
