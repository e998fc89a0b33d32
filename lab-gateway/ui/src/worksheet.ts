// The bar on an engineer's copy of an assignment: Validate (the public
// tests on the saved copy, nothing recorded, as nbgrader's button) and
// Submit, with the grading's progress and its feedback, each test cell
// marked with its result where it is in the notebook.

import { api } from "./api";
import { assignmentUrl, type Assignment } from "./assignments";
import { h, toast } from "./dom";
import { feedbackView, followSubmission, pts, stateText, when, type Feedback, type Submission } from "./feedback";

export interface MarkableCell {
  el: HTMLElement;
  metadata: Record<string, unknown>;
}

/// The assignment whose copy is at `path` in the caller's folder, if any.
export async function assignmentAt(path: string): Promise<Assignment | null> {
  const all = await api<Assignment[]>("/api/assignments");
  return all.find((a) => a.path === path) ?? null;
}

/// Puts each graded cell's result on the cell itself.
function mark(cells: MarkableCell[], f: Feedback): void {
  for (const c of cells) {
    c.el.querySelector(":scope > .grade-badge")?.remove();
    const gid = (c.metadata.nbgrader as { grade_id?: string } | undefined)?.grade_id;
    const r = gid ? f.cells.find((x) => x.grade_id === gid) : undefined;
    if (!r) continue;
    const text =
      r.points == null
        ? r.status === "withheld"
          ? "hidden tests: result shown later"
          : "graded by a trainer later"
        : `${r.status === "passed" ? "✓" : r.status === "failed" ? "✗" : "½"} ${pts(r.points)} / ${pts(r.max_points)}`;
    c.el.append(h("div", { class: "grade-badge", "data-status": r.status, title: r.output }, text));
  }
}

export function worksheetBar(
  a: Assignment,
  path: string,
  save: () => Promise<void>,
  cells: () => MarkableCell[],
  alive: () => boolean,
): HTMLElement {
  const out = h("div", { class: "worksheet-result", "aria-live": "polite" });
  const url = assignmentUrl(a.course, a.name);
  let busy = false;
  const guard = async (what: () => Promise<void>) => {
    if (busy) return;
    busy = true;
    bar.classList.add("busy");
    try {
      await what();
    } catch (e) {
      out.replaceChildren(h("p", { class: "error" }, (e as Error).message));
      toast((e as Error).message, "error");
    } finally {
      busy = false;
      bar.classList.remove("busy");
    }
  };
  const validate = () =>
    guard(async () => {
      await save();
      out.replaceChildren(h("p", { class: "muted" }, "Running the public tests on your saved copy…"));
      const f = await api<Feedback>(url + "/validate", { method: "POST", body: { path } });
      out.replaceChildren(h("p", { class: "worksheet-title" }, "Validation: public tests only, nothing was submitted"), feedbackView(f));
      mark(cells(), f);
    });
  const show = (s: Submission) => {
    out.replaceChildren(
      h("p", { class: "submission-state", "data-state": s.state ?? "" }, `Submission of ${new Date(s.submitted).toLocaleTimeString()}: ${stateText(s)}`),
      ...(s.feedback ? [feedbackView(s.feedback)] : []),
    );
    if (s.feedback) mark(cells(), s.feedback);
  };
  /// The submission whose state is shown; an older one's news is dropped.
  let following = "";
  const submit = () =>
    guard(async () => {
      await save();
      const s = await api<Submission>(url + "/submissions", { method: "POST", body: { path } });
      following = s.id;
      show(s);
      // Followed in the background: the bar is free again (validate, or
      // submit again) while the grading waits in the queue.
      void followSubmission(s.id, (x) => following === x.id && show(x), () => alive() && following === s.id)
        .then((last) => {
          if (following === s.id && (last.state === "queued" || last.state === "grading")) {
            out.append(h("p", { class: "muted" }, "Still waiting: see My submissions for the result."));
          }
        })
        .catch((e) => out.append(h("p", { class: "error" }, (e as Error).message)));
    });
  const bar = h(
    "div",
    { class: "worksheet", "data-course": a.course, "data-assignment": a.name },
    h(
      "div",
      { class: "worksheet-head" },
      h("strong", {}, `Assignment ${a.course} / ${a.name}`),
      h("span", { class: "muted" }, a.policy.dates.due ? ` · due ${when(a.policy.dates.due)}` : ""),
      h("button", { class: "validate", onclick: () => void validate(), title: "Run the public tests on your saved copy" }, "Validate"),
      h("button", { class: "submit", onclick: () => void submit(), title: "Save and submit this notebook for grading" }, "Submit"),
      h("a", { href: `#/assignment/${a.course}/${a.name}` }, "My submissions"),
    ),
    out,
  );
  return bar;
}
