// The trainer's page for one assignment: dates and policies, release and
// publish, data files, grading progress, the gradebook (CSV too), one submission's
// feedback with manual grading, regrades and extensions. Everything here
// is a call to the assignment routes a course's staff may use.

import { api } from "./api";
import { assignmentUrl, type Assignment, type Policy } from "./assignments";
import { dataFilesSection } from "./datafiles";
import { h, toast } from "./dom";
import { feedbackView, pts, stateText, type Submission } from "./feedback";
import { field, fromLocalInput, toLocalInput } from "./forms";

interface Gradebook {
  max_score: number;
  cells: { grade_id: string; points: number; kind: string }[];
  rows: {
    user: string;
    submission: string;
    submitted: string;
    submissions: number;
    state: string | null;
    late: boolean;
    cells: Record<string, number | null>;
    score: number | null;
    penalty: number;
    total: number | null;
  }[];
  progress: Record<"queued" | "grading" | "graded" | "failed", number>;
}

function select(name: string, value: string, options: [string, string][]): HTMLSelectElement {
  return h("select", { name }, ...options.map(([v, t]) => h("option", { value: v, selected: v === value }, t))) as HTMLSelectElement;
}

/// The policy form; `read()` gives the policy it shows (or throws with what
/// is wrong).
function policyForm(p: Policy): { el: HTMLElement; read: () => Policy } {
  const open = h("input", { type: "datetime-local", step: "1", name: "open", value: toLocalInput(p.dates.open) }) as HTMLInputElement;
  const due = h("input", { type: "datetime-local", step: "1", name: "due", value: toLocalInput(p.dates.due) }) as HTMLInputElement;
  const lock = h("input", { type: "datetime-local", step: "1", name: "lock", value: toLocalInput(p.dates.lock) }) as HTMLInputElement;
  const late = select("late", p.late.kind, [
    ["none", "no penalty"],
    ["zero", "late work scores zero"],
    ["percent", "a percentage off per day or hour"],
  ]);
  const percent = h("input", { type: "number", name: "percent", min: "0", max: "100", step: "any", value: String(p.late.percent ?? 10) }) as HTMLInputElement;
  const per = select("per", p.late.per ?? "day", [
    ["day", "per started day"],
    ["hour", "per started hour"],
  ]);
  const cap = h("input", { type: "number", name: "cap", min: "0", max: "100", step: "any", value: String(p.late.cap ?? 100) }) as HTMLInputElement;
  const percentBox = h("span", { class: "inline" }, percent, "% ", per, " up to ", cap, "%");
  const showPercent = () => (percentBox.hidden = late.value !== "percent");
  late.addEventListener("change", showPercent);
  showPercent();
  const counts = select("counts", p.counts, [
    ["latest", "the latest submission"],
    ["best", "the best submission"],
    ["first", "the first submission"],
  ]);
  const hidden = select("hidden", p.hidden, [
    ["never", "never"],
    ["after_due", "after the due date"],
    ["when_published", "when I publish grades"],
  ]);
  const num = (name: string, v: number) => h("input", { type: "number", name, min: "1", step: "1", value: String(v) }) as HTMLInputElement;
  const cellTimeout = num("cell_timeout_s", p.cell_timeout_s);
  const totalTimeout = num("total_timeout_s", p.total_timeout_s);
  const outputKb = num("output_limit_kb", Math.round(p.output_limit_bytes / 1024));
  const memory = num("memory_mb", p.memory_mb ?? 2048);
  const optional = (name: string, v: number | null | undefined) =>
    h("input", { type: "number", name, min: "1", step: "1", placeholder: "no cap", value: v == null ? "" : String(v) }) as HTMLInputElement;
  const perDay = optional("submissions_per_day", p.submissions_per_day);
  const total = optional("max_submissions", p.max_submissions);
  const el = h(
    "fieldset",
    { class: "policy" },
    h("legend", {}, "Dates and policies"),
    field("Opens", open, "empty: open at release"),
    field("Due", due, "later submissions are late"),
    field("Locks", lock, "no submissions after"),
    field("Late penalty", h("span", { class: "inline" }, late, percentBox)),
    field("Which submission counts", counts),
    field("Hidden test results shown", hidden),
    field("Time per cell (s)", cellTimeout),
    field("Time in all (s)", totalTimeout),
    field("Output kept per cell (KiB)", outputKb),
    field("Memory per grading (MiB)", memory),
    field("Submissions a day (UTC)", perDay, "so hidden tests are no oracle"),
    field("Submissions in all", total),
  );
  const read = (): Policy => {
    const whole = (i: HTMLInputElement, what: string) => {
      const n = Number(i.value);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${what} must be a whole number above 0`);
      return n;
    };
    return {
      ...p,
      dates: { open: fromLocalInput(open.value), due: fromLocalInput(due.value), lock: fromLocalInput(lock.value) },
      late:
        late.value === "percent"
          ? { kind: "percent", percent: Number(percent.value), per: per.value as "day" | "hour", cap: Number(cap.value) }
          : { kind: late.value as "none" | "zero" },
      counts: counts.value as Policy["counts"],
      hidden: hidden.value as Policy["hidden"],
      cell_timeout_s: whole(cellTimeout, "Time per cell"),
      total_timeout_s: whole(totalTimeout, "Time in all"),
      output_limit_bytes: whole(outputKb, "Output kept") * 1024,
      memory_mb: whole(memory, "Memory"),
      submissions_per_day: perDay.value ? whole(perDay, "Submissions a day") : null,
      max_submissions: total.value ? whole(total, "Submissions in all") : null,
    };
  };
  return { el, read };
}

export async function managePage(course: string, name: string): Promise<HTMLElement> {
  const url = assignmentUrl(course, name);
  let a = await api<Assignment>(url);
  const page = h("div", { class: "manage" });
  const state = h("p", { class: "assignment-state" });
  const progress = h("p", { class: "grading-progress", "aria-live": "polite" });
  const bookEl = h("div", { class: "gradebook" });
  const detail = h("div", { class: "submission-detail" });
  const releaseBtn = h("button", { class: "release" }) as HTMLButtonElement;
  const publishBtn = h("button", { class: "publish-grades" }) as HTMLButtonElement;
  const form = policyForm(a.policy);

  const showState = () => {
    state.textContent =
      (a.released ? `Released ${new Date(a.released).toLocaleString()}` : "Draft: engineers cannot see it") +
      (a.published ? ` · grades published ${new Date(a.published).toLocaleString()}` : "") +
      ` · ${pts(a.max_score)} points in ${a.cells?.length ?? 0} graded cells (${a.language ?? "?"})`;
    releaseBtn.textContent = a.released ? "Unrelease" : "Release";
    publishBtn.textContent = a.published ? "Unpublish grades" : "Publish grades";
  };
  const change = async (body: object, done: string) => {
    try {
      a = { ...a, ...(await api<Assignment>(url, { method: "PATCH", body })) };
      showState();
      toast(done);
    } catch (e) {
      toast((e as Error).message, "error");
    }
  };
  releaseBtn.addEventListener("click", () => void change({ released: !a.released }, a.released ? "Unreleased" : "Released"));
  publishBtn.addEventListener("click", () => void change({ published: !a.published }, a.published ? "Grades unpublished" : "Grades published"));

  let book: Gradebook | null = null;
  const refresh = async (): Promise<void> => {
    book = await api<Gradebook>(url + "/gradebook");
    const p = book.progress;
    const all = p.queued + p.grading + p.graded + p.failed;
    progress.replaceChildren(
      `Grading: ${p.graded} graded, ${p.grading} running, ${p.queued} queued, ${p.failed} failed (${all} submissions)`,
      all ? h("meter", { min: "0", max: String(all), value: String(p.graded + p.failed) }) : "",
    );
    progress.dataset.busy = String(p.queued + p.grading > 0);
    bookEl.replaceChildren(gradebookTable(book, (id) => void openSubmission(id)));
  };
  /// The submission shown below the gradebook, while its grading runs.
  let pending: string | null = null;
  const openSubmission = async (id: string, scroll = true) => {
    try {
      // A grade given or a regrade queued shows here and in the gradebook.
      const changed = async () => {
        await refresh();
        await openSubmission(id, false);
      };
      const panel = await submissionPanel(id, url, changed);
      detail.replaceChildren(panel);
      pending = panel.dataset.state === "queued" || panel.dataset.state === "grading" ? id : null;
      if (scroll) detail.scrollIntoView({ block: "nearest" });
    } catch (e) {
      toast((e as Error).message, "error");
    }
  };

  const extUser = h("input", { name: "ext-user", placeholder: "user name" }) as HTMLInputElement;
  const extHours = h("input", { name: "ext-hours", type: "number", min: "0", step: "any", placeholder: "hours" }) as HTMLInputElement;
  const grantExtension = async () => {
    try {
      const who = extUser.value.trim();
      const hours = Number(extHours.value);
      if (!who) throw new Error("Name the engineer the extension is for");
      if (extHours.value.trim() === "" || !Number.isFinite(hours) || hours < 0) throw new Error("Give the extra time in hours (0 takes an extension back)");
      await api(`${url}/extensions/${encodeURIComponent(who)}`, { method: "PUT", body: { hours } });
      toast(hours ? `${who} has ${hours} h more` : `${who}'s extension is taken back`);
      await refresh();
    } catch (e) {
      toast((e as Error).message, "error");
    }
  };

  page.append(
    h("h2", {}, `${course} / ${name}`),
    state,
    h(
      "div",
      { class: "toolbar" },
      releaseBtn,
      publishBtn,
      h(
        "button",
        {
          class: "regrade-all",
          onclick: async () => {
            if (!confirm("Grade every submission again? Earlier grades are kept beside the new ones.")) return;
            try {
              const r = await api<{ queued: number }>(url + "/grade", { method: "POST", body: {} });
              toast(`${r.queued} submission(s) queued`);
              await refresh();
            } catch (e) {
              toast((e as Error).message, "error");
            }
          },
        },
        "Regrade all",
      ),
      h("a", { class: "button export-csv", href: url + "/gradebook?format=csv", download: `${course}-${name}-grades.csv` }, "Export CSV"),
      h("a", { class: "button", href: `#/assignment/${course}/${name}` }, "As an engineer sees it"),
    ),
    h(
      "form",
      {
        class: "policy-form",
        onsubmit: (e: Event) => {
          e.preventDefault();
          try {
            void change({ policy: form.read() }, "Policy saved");
          } catch (err) {
            toast((err as Error).message, "error");
          }
        },
      },
      form.el,
      h("button", { type: "submit", class: "save-policy" }, "Save policy"),
    ),
    dataFilesSection(url),
    h("h3", {}, "Gradebook"),
    progress,
    bookEl,
    detail,
    h(
      "fieldset",
      { class: "extensions" },
      h("legend", {}, "Extension for one engineer"),
      extUser,
      extHours,
      h("button", { onclick: () => void grantExtension() }, "Grant"),
    ),
  );
  showState();
  await refresh();
  // Live: new submissions and grading progress show as they happen, every
  // 1.5 s while anything is queued or grading and every 10 s otherwise; one
  // request at a time.
  const tick = async () => {
    if (!page.isConnected) return;
    try {
      await refresh();
      if (pending) await openSubmission(pending, false);
    } catch {
      // the next tick tries again
    }
    window.setTimeout(() => void tick(), progress.dataset.busy === "true" || pending ? 1500 : 10_000);
  };
  window.setTimeout(() => void tick(), 1500);
  return page;
}

function gradebookTable(book: Gradebook, open: (submission: string) => void): HTMLElement {
  if (!book.rows.length) return h("p", { class: "empty" }, "No submissions yet.");
  const num = (n: number | null | undefined) => (n == null ? "–" : pts(n));
  return h(
    "table",
    { class: "gradebook-table" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, "Engineer"),
        ...book.cells.map((c) => h("th", { title: c.kind }, `${c.grade_id} (${pts(c.points)})`)),
        h("th", {}, "Score"),
        h("th", {}, "Late penalty"),
        h("th", {}, `Total (${pts(book.max_score)})`),
        h("th", {}, "State"),
        h("th", {}, "Submitted"),
        h("th", {}, ""),
      ),
    ),
    h(
      "tbody",
      {},
      ...book.rows.map((r) =>
        h(
          "tr",
          { "data-user": r.user },
          h("td", {}, r.user),
          ...book.cells.map((c) => h("td", { "data-grade-id": c.grade_id }, num(r.cells[c.grade_id]))),
          h("td", {}, num(r.score)),
          h("td", {}, r.penalty ? pts(r.penalty) : ""),
          h("td", { class: "total" }, num(r.total)),
          h("td", { class: "state" }, r.state ?? ""),
          h("td", {}, `${new Date(r.submitted).toLocaleString()}${r.late ? " (late)" : ""}, ${r.submissions} in all`),
          h("td", { class: "actions" }, h("button", { onclick: () => open(r.submission) }, "Open")),
        ),
      ),
    ),
  );
}

/// One submission for its trainer: every cell's result and output, the
/// answers of cells graded by hand with a points box and a comment each.
async function submissionPanel(id: string, url: string, changed: () => Promise<void>): Promise<HTMLElement> {
  const enc = encodeURIComponent(id);
  const s = await api<Submission>(`/api/submissions/${enc}`);
  // The answer as it was graded (from the rebuilt notebook), not a cell of
  // the submission that merely carries the same id.
  const answer = (gid: string) => s.answers?.[gid] ?? "";
  const manualBox = (c: { grade_id: string; kind: string; max_points: number; points: number | null }) => {
    if (c.kind === "tests") return null;
    const given = s.manual?.find((m) => m.grade_id === c.grade_id);
    const points = h("input", {
      type: "number",
      min: "0",
      max: String(c.max_points),
      step: "any",
      name: `points-${c.grade_id}`,
      value: given ? String(given.points) : "",
      "aria-label": `points for ${c.grade_id}`,
    }) as HTMLInputElement;
    const comment = h("textarea", { name: `comment-${c.grade_id}`, rows: "2", placeholder: "comment for the engineer", "aria-label": `comment on ${c.grade_id}` }) as HTMLTextAreaElement;
    comment.value = given?.comment ?? "";
    const save = async () => {
      try {
        if (points.value.trim() === "") throw new Error(`Give ${c.grade_id} its points (0 to ${pts(c.max_points)})`);
        await api(`/api/submissions/${enc}/grades/${encodeURIComponent(c.grade_id)}`, {
          method: "PUT",
          body: { points: Number(points.value), comment: comment.value },
        });
        toast(`Graded ${c.grade_id}`);
        await changed();
      } catch (e) {
        toast((e as Error).message, "error");
      }
    };
    return h(
      "div",
      { class: "manual-grade" },
      c.kind === "manual" ? h("pre", { class: "answer" }, answer(c.grade_id) || "(no answer)") : "",
      points,
      ` / ${pts(c.max_points)} `,
      h("button", { class: "save-grade", onclick: () => void save() }, "Save grade"),
      comment,
      given && h("small", { class: "muted" }, `by ${given.grader}, ${new Date(given.at).toLocaleString()}`),
    );
  };
  return h(
    "section",
    { class: "submission-panel", "data-submission": id, "data-state": s.state ?? "" },
    h("h3", {}, `${s.user}: submitted ${new Date(s.submitted).toLocaleString()}`),
    h("p", { class: "submission-state" }, stateText(s), s.notes?.length ? ` · ${s.notes.join("; ")}` : ""),
    s.feedback ? feedbackView(s.feedback, manualBox) : null,
    h(
      "div",
      { class: "toolbar" },
      h(
        "button",
        {
          onclick: async () => {
            try {
              await api(url + "/grade", { method: "POST", body: { submission: id } });
              toast("Queued for grading again");
              await changed();
            } catch (e) {
              toast((e as Error).message, "error");
            }
          },
        },
        "Regrade this submission",
      ),
      h("a", { class: "button", href: `/api/submissions/${enc}/notebook`, download: `${s.user}-${s.assignment}.ipynb` }, "Download notebook"),
    ),
  );
}
