// The engineer's assignments: every assignment they can do with its due
// date and their state, and one assignment's page (open my copy, validate,
// submit, my submissions and their feedback). Course staff reach the
// trainer's page (`manage`) from here.

import { api, contentsUrl } from "./api";
import { releasedFiles, type DataFile } from "./datafiles";
import { h, toast } from "./dom";
import { feedbackView, followSubmission, stateText, when, type Feedback, type Submission } from "./feedback";

export interface Policy {
  dates: { open: string | null; due: string | null; lock: string | null };
  late: { kind: "none" | "zero" | "percent"; percent?: number; per?: "day" | "hour"; cap?: number };
  counts: "latest" | "best" | "first";
  hidden: "never" | "after_due" | "when_published";
  cell_timeout_s: number;
  total_timeout_s: number;
  output_limit_bytes: number;
  memory_mb?: number;
  submissions_per_day?: number | null;
  max_submissions?: number | null;
  [more: string]: unknown;
}

export interface Assignment {
  course: string;
  name: string;
  max_score: number;
  policy: Policy;
  released: string | null;
  published: string | null;
  staff: boolean;
  /// The engineer's copy, in their folder.
  path: string;
  language?: string;
  cells?: { grade_id: string; kind: string; points: number; hidden: boolean }[];
  /// Its data files (released ones only, for engineers).
  files?: DataFile[];
  mine?: {
    window: { kind: "not_open" | "open" | "late" | "locked"; opens?: string; due?: string; locked?: string };
    extension_s: number | null;
    submissions: number;
    latest: Submission | null;
  };
}

export function assignmentUrl(course: string, name: string): string {
  return `/api/courses/${encodeURIComponent(course)}/assignments/${encodeURIComponent(name)}`;
}

function windowText(a: Assignment): string {
  const w = a.mine?.window;
  switch (w?.kind) {
    case "not_open":
      return `opens ${when(w.opens)}`;
    case "late":
      return "past the due date: submissions are late";
    case "locked":
      return "closed";
    default:
      return a.policy.dates.due ? `due ${when(a.policy.dates.due)}` : "open, no due date";
  }
}

/// Opens the engineer's copy, taking the released notebook first if they
/// have none (or when asked for a fresh one).
export async function openCopy(a: Assignment, fresh = false): Promise<void> {
  if (!fresh && (await exists(a.path))) {
    // Data files the trainer added since the copy was taken; the copy
    // opens even if they cannot come.
    try {
      await api(assignmentUrl(a.course, a.name) + "/fetch", { method: "POST", body: { data_only: true } });
    } catch (e) {
      toast(`Data files: ${(e as Error).message}`, "error");
    }
    location.hash = `#/nb/${a.path}`;
    return;
  }
  const r = await api<{ path: string }>(assignmentUrl(a.course, a.name) + "/fetch", {
    method: "POST",
    body: { overwrite: fresh },
  });
  location.hash = `#/nb/${r.path}`;
}

/// Whether a file is in the caller's folder, found by listing its parent
/// (a 404 would be a console error in the page).
export async function exists(path: string): Promise<boolean> {
  const parts = path.split("/");
  const name = parts.pop()!;
  let dir = "";
  for (const part of parts) {
    const listing = await api<{ content: { name: string; type: string }[] }>(contentsUrl(dir) + "?content=1");
    if (!listing.content.some((i) => i.name === part && i.type === "directory")) return false;
    dir = dir ? `${dir}/${part}` : part;
  }
  const listing = await api<{ content: { name: string }[] }>(contentsUrl(dir) + "?content=1");
  return listing.content.some((i) => i.name === name);
}

export async function assignmentsPage(): Promise<HTMLElement> {
  const all = await api<Assignment[]>("/api/assignments");
  const page = h("div", { class: "assignments" }, h("h2", {}, "Assignments"));
  if (all.some((a) => a.staff)) {
    page.append(
      h(
        "p",
        { class: "muted" },
        "To make an assignment: open a notebook, mark its cells with “Assignment tools”, then “Create assignment”.",
      ),
    );
  }
  if (!all.length) {
    page.append(h("p", { class: "empty" }, "No assignments yet."));
    return page;
  }
  page.append(
    h(
      "table",
      { class: "listing" },
      h("thead", {}, h("tr", {}, ...["Course", "Assignment", "When", "My latest submission", ""].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        ...all.map((a) =>
          h(
            "tr",
            { "data-course": a.course, "data-assignment": a.name },
            h("td", {}, a.course),
            h("td", {}, h("a", { href: `#/assignment/${a.course}/${a.name}` }, a.name), !a.released && h("span", { class: "tag" }, "draft")),
            h("td", { class: "window" }, windowText(a)),
            h("td", { class: "state" }, a.mine?.latest ? stateText(a.mine.latest) : "not submitted"),
            h(
              "td",
              { class: "actions" },
              h("button", { onclick: () => void openCopy(a).catch((e) => toast((e as Error).message, "error")) }, "Open"),
              a.staff && h("a", { class: "button manage", href: `#/manage/${a.course}/${a.name}` }, "Manage"),
            ),
          ),
        ),
      ),
    ),
  );
  return page;
}

/// One assignment, for the engineer doing it.
export async function assignmentPage(course: string, name: string): Promise<HTMLElement> {
  const a = await api<Assignment>(assignmentUrl(course, name));
  const subsBody = h("tbody", {});
  const detail = h("div", { class: "submission-detail" });
  const page = h("div", { class: "assignment" });
  const showSubmission = (s: Submission) => {
    detail.replaceChildren(
      h("h3", {}, `Submission of ${new Date(s.submitted).toLocaleString()}`),
      h("p", { class: "submission-state", "data-state": s.state ?? "" }, stateText(s)),
      ...(s.feedback ? [feedbackView(s.feedback)] : []),
    );
  };
  const refresh = async () => {
    const subs = await api<Submission[]>(assignmentUrl(course, name) + "/submissions");
    subsBody.replaceChildren(
      ...subs
        .slice()
        .reverse()
        .map((s) =>
          h(
            "tr",
            { "data-submission": s.id },
            h("td", {}, new Date(s.submitted).toLocaleString()),
            h("td", { class: "state" }, stateText(s)),
            h("td", {}, s.late_s ? `late by ${Math.ceil(s.late_s / 60)} min` : ""),
            h("td", { class: "actions" }, h("button", { onclick: () => showSubmission(s) }, "Feedback")),
          ),
        ),
    );
    const latest = subs[subs.length - 1];
    if (latest) showSubmission(latest);
    return latest;
  };
  const validateOut = h("div", { class: "validation" });
  const actions = h("div", { class: "toolbar" });
  /// One request at a time: a double click submits once.
  const once = (work: () => Promise<void>) => async () => {
    if (actions.classList.contains("busy")) return;
    actions.classList.add("busy");
    try {
      await work();
    } finally {
      actions.classList.remove("busy");
    }
  };
  const validate = once(async () => {
    validateOut.replaceChildren(h("p", { class: "muted" }, "Running the public tests on your copy…"));
    try {
      const f = await api<Feedback>(assignmentUrl(course, name) + "/validate", { method: "POST", body: {} });
      validateOut.replaceChildren(h("h3", {}, "Validation (public tests, nothing recorded)"), feedbackView(f));
    } catch (e) {
      validateOut.replaceChildren(h("p", { class: "error" }, (e as Error).message));
    }
  });
  const submit = once(async () => {
    try {
      const s = await api<Submission>(assignmentUrl(course, name) + "/submissions", { method: "POST", body: {} });
      toast("Submitted");
      await refresh();
      void followSubmission(s.id, showSubmission, () => page.isConnected).then(() => refresh());
    } catch (e) {
      toast((e as Error).message, "error");
    }
  });
  const cells = (a.cells ?? []).filter((c) => c.kind === "tests");
  page.append(
    h("h2", {}, `${a.course} / ${a.name}`),
    h("p", { class: "window" }, windowText(a)),
    h(
      "p",
      { class: "muted" },
      `${a.max_score} points in ${a.cells?.length ?? 0} graded cells` +
        (cells.some((c) => c.hidden) ? "; some tests are hidden and run only when you submit" : "") +
        (a.policy.dates.lock ? `; no submissions after ${new Date(a.policy.dates.lock).toLocaleString()}` : "") +
        (a.policy.submissions_per_day ? `; at most ${a.policy.submissions_per_day} submissions a day (UTC)` : "") +
        (a.policy.max_submissions ? `; at most ${a.policy.max_submissions} submissions in all` : ""),
    ),
    actions,
    validateOut,
    releasedFiles(assignmentUrl(course, name), (a.files ?? []).filter((f) => !f.hidden)) ?? "",
    h("h3", {}, "My submissions"),
    h("table", { class: "submissions" }, subsBody),
    detail,
  );
  actions.append(
    h("button", { onclick: () => void openCopy(a).catch((e) => toast((e as Error).message, "error")) }, "Open my copy"),
    h(
      "button",
      {
        onclick: () => {
          if (confirm("Start again from the released notebook? Your copy is replaced.")) {
            openCopy(a, true).catch((e) => toast((e as Error).message, "error"));
          }
        },
      },
      "Fresh copy",
    ),
    h("button", { class: "validate", onclick: () => void validate() }, "Validate"),
    h("button", { class: "submit", onclick: () => void submit() }, "Submit"),
    ...(a.staff ? [h("a", { class: "button manage", href: `#/manage/${a.course}/${a.name}` }, "Manage")] : []),
  );
  const latest = await refresh();
  if (latest && (latest.state === "queued" || latest.state === "grading")) {
    void followSubmission(latest.id, showSubmission, () => page.isConnected).then(() => refresh());
  }
  return page;
}
