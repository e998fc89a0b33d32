// Grading results as the engineer and the trainer read them: a
// submission's state (queued with its place, grading, graded, failed with
// the reason) and its feedback, one row per graded cell. The server has
// already left out what the caller may not see (hidden tests' results
// before the policy allows them, hidden test source, solutions).

import { api } from "./api";
import { h } from "./dom";

export interface FeedbackCell {
  grade_id: string;
  kind: "tests" | "manual" | "task";
  max_points: number;
  points: number | null;
  status: "passed" | "failed" | "partial" | "pending" | "withheld";
  output: string;
  /// The trainer's comment on a cell graded by hand.
  comment?: string;
}

export interface Feedback {
  cells: FeedbackCell[];
  score: number | null;
  max_score: number;
  penalty: number;
  hidden_withheld: boolean;
}

export interface Submission {
  id: string;
  course: string;
  assignment: string;
  user: string;
  submitted: string;
  state: "queued" | "grading" | "graded" | "failed" | null;
  reason: string | null;
  queue?: number | null;
  late_s?: number;
  feedback?: Feedback;
  notes?: string[];
  score?: number;
  penalty?: number;
  max_score?: number;
  manual?: { grade_id: string; points: number; comment: string; grader: string; at: string }[];
  /// Staff only: each hand-graded answer as it was graded.
  answers?: Record<string, string>;
}

/// A number of points as people write them: 2, 1.5, 0.33.
export function pts(n: number): string {
  return String(Math.round(n * 100) / 100);
}

/// The points of the cells whose results the caller may see, and of how
/// many (cells still withheld or waiting for a person count in neither).
export function shownScore(f: Feedback): { got: number; of: number } {
  let got = 0;
  let of = 0;
  for (const c of f.cells) {
    if (c.points == null) continue;
    got += c.points;
    of += c.max_points;
  }
  return { got, of };
}

/// One line for a submission's state.
export function stateText(s: Submission): string {
  switch (s.state) {
    case "queued":
      return s.queue != null ? `queued: position ${s.queue}` : "queued";
    case "grading":
      return "grading…";
    case "failed":
      return `failed: ${s.reason ?? "no reason given"}`;
    case "graded": {
      const f = s.feedback;
      if (!f) return "graded";
      if (f.score != null) return `graded: ${pts(f.score)} / ${pts(f.max_score)}`;
      const { got, of } = shownScore(f);
      return `graded: ${pts(got)} / ${pts(of)} so far`;
    }
    default:
      return "submitted";
  }
}

const STATUS_TEXT: Record<FeedbackCell["status"], string> = {
  passed: "passed",
  failed: "failed",
  partial: "partial credit",
  pending: "waiting for a trainer",
  withheld: "hidden tests: results shown later",
};

/// The feedback as a table: cell, status, points, and what the cell printed
/// (a failed assertion's message).
export function feedbackView(f: Feedback, extra?: (c: FeedbackCell) => Node | null): HTMLElement {
  const { got, of } = shownScore(f);
  const summary =
    f.score != null
      ? `Score: ${pts(f.score)} / ${pts(f.max_score)}` + (f.penalty > 0 ? ` (after ${pts(f.penalty)} off for lateness)` : "")
      : `Shown so far: ${pts(got)} / ${pts(of)} (of ${pts(f.max_score)} in all)`;
  return h(
    "div",
    { class: "feedback" },
    h("p", { class: "feedback-score" }, summary),
    f.hidden_withheld && h("p", { class: "muted" }, "Results of hidden tests are shown when the assignment's policy allows."),
    h(
      "table",
      { class: "feedback-cells" },
      h("thead", {}, h("tr", {}, ...["Cell", "Result", "Points", ""].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        ...f.cells.map((c) =>
          h(
            "tr",
            { "data-grade-id": c.grade_id, "data-status": c.status },
            h("td", {}, c.grade_id),
            h("td", { class: `result ${c.status}` }, STATUS_TEXT[c.status]),
            h("td", { class: "points" }, c.points == null ? `– / ${pts(c.max_points)}` : `${pts(c.points)} / ${pts(c.max_points)}`),
            h(
              "td",
              { class: "output" },
              c.output ? h("pre", {}, c.output) : null,
              c.comment ? h("p", { class: "comment" }, `Trainer: ${c.comment}`) : null,
              extra?.(c) ?? null,
            ),
          ),
        ),
      ),
    ),
  );
}

/// Polls a submission until it is graded or failed, calling `progress` on
/// every change of state; gives up (returning the last state) after
/// `timeoutMs` or when `alive()` turns false (the page was left).
export async function followSubmission(
  id: string,
  progress: (s: Submission) => void,
  alive: () => boolean,
  timeoutMs = 30 * 60_000,
): Promise<Submission> {
  const until = Date.now() + timeoutMs;
  let s = await api<Submission>(`/api/submissions/${encodeURIComponent(id)}`);
  progress(s);
  let wait = 250;
  while ((s.state === "queued" || s.state === "grading" || s.state == null) && Date.now() < until && alive()) {
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, 2000);
    s = await api<Submission>(`/api/submissions/${encodeURIComponent(id)}`);
    progress(s);
  }
  return s;
}

/// A date as the reader's clock shows it, with how far away it is.
export function when(iso: string | null | undefined): string {
  if (!iso) return "none";
  const t = new Date(iso);
  const diff = t.getTime() - Date.now();
  const abs = Math.abs(diff);
  const unit =
    abs < 3_600_000 ? `${Math.max(1, Math.round(abs / 60_000))} min` : abs < 172_800_000 ? `${Math.round(abs / 3_600_000)} h` : `${Math.round(abs / 86_400_000)} days`;
  return `${t.toLocaleString()} (${diff >= 0 ? "in " + unit : unit + " ago"})`;
}
