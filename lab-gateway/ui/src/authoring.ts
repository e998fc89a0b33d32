// Marking a notebook's cells for grading, as nbgrader's "Create
// Assignment" cell toolbar does, and making an assignment of it. Cells get
// nbgrader's own metadata (schema 3), so a notebook marked here also works
// with nbgrader, and one marked in JupyterLab with nbgrader works here.

import { api } from "./api";
import { h, toast } from "./dom";

/// nbgrader's cell types, by what its toolbar calls them.
export type Role = "" | "manual" | "task" | "solution" | "tests" | "readonly";

const ROLES: [Role, string][] = [
  ["", "–"],
  ["manual", "Manually graded answer"],
  ["task", "Manually graded task"],
  ["solution", "Autograded answer"],
  ["tests", "Autograder tests"],
  ["readonly", "Read-only"],
];

interface Nbgrader {
  solution?: boolean;
  grade?: boolean;
  locked?: boolean;
  task?: boolean;
  points?: number;
  grade_id?: string;
  schema_version?: number;
}

/// A cell's role from its metadata (nbgrader's `get_role` rules).
export function roleOf(meta: Record<string, unknown>): Role {
  const n = meta.nbgrader as Nbgrader | undefined;
  if (!n) return "";
  if (n.task) return "task";
  if (n.solution && n.grade) return "manual";
  if (n.solution) return "solution";
  if (n.grade) return "tests";
  if (n.locked) return "readonly";
  return "";
}

function hasPoints(role: Role): boolean {
  return role === "manual" || role === "task" || role === "tests";
}

/// Writes `role` into a cell's metadata the way nbgrader does.
export function setRole(meta: Record<string, unknown>, role: Role, gradeId: string, points: number): void {
  if (!role) {
    delete meta.nbgrader;
    return;
  }
  const n: Nbgrader = {
    grade: role === "manual" || role === "tests",
    grade_id: gradeId,
    locked: role === "task" || role === "tests" || role === "readonly",
    schema_version: 3,
    solution: role === "manual" || role === "solution",
    task: role === "task",
  };
  if (hasPoints(role)) n.points = points;
  meta.nbgrader = n;
}

/// The toolbar above one cell: role, id and points.
export function gradingTools(
  cell: { type: string; metadata: Record<string, unknown> },
  changed: () => void,
): HTMLElement {
  const n = (cell.metadata.nbgrader ?? {}) as Nbgrader;
  const role = h(
    "select",
    { class: "grading-role", "aria-label": "grading role" },
    ...ROLES.filter(([r]) => (cell.type === "code" ? r !== "task" : r !== "solution" && r !== "tests")).map(([r, t]) =>
      h("option", { value: r, selected: r === roleOf(cell.metadata) }, t),
    ),
  ) as HTMLSelectElement;
  const id = h("input", {
    class: "grade-id",
    "aria-label": "cell id",
    placeholder: "id",
    value: n.grade_id ?? `cell-${crypto.randomUUID().slice(0, 8)}`,
  }) as HTMLInputElement;
  const points = h("input", {
    class: "grade-points",
    type: "number",
    min: "0",
    step: "any",
    "aria-label": "points",
    value: String(n.points ?? 1),
  }) as HTMLInputElement;
  const pointsLabel = h("label", {}, "Points ", points);
  const idLabel = h("label", {}, "ID ", id);
  const update = () => {
    const r = role.value as Role;
    idLabel.hidden = !r;
    pointsLabel.hidden = !hasPoints(r);
    setRole(cell.metadata, r, id.value.trim(), Math.max(0, Number(points.value) || 0));
    changed();
  };
  role.addEventListener("change", update);
  id.addEventListener("change", update);
  points.addEventListener("change", update);
  idLabel.hidden = !roleOf(cell.metadata);
  pointsLabel.hidden = !hasPoints(roleOf(cell.metadata));
  return h("div", { class: "grading-tools" }, role, idLabel, pointsLabel);
}

/// Asks for the course and the assignment's name, then imports the (saved)
/// notebook at `path` as that assignment, a draft until released.
export function createAssignmentDialog(path: string, course: string, save: () => Promise<void>): void {
  const base = (path.split("/").pop() ?? "assignment").replace(/\.ipynb$/, "").replace(/[^A-Za-z0-9_.-]+/g, "-");
  const courseIn = h("input", { name: "course", required: true, value: course, placeholder: "course" }) as HTMLInputElement;
  const nameIn = h("input", { name: "assignment", required: true, value: base, placeholder: "assignment" }) as HTMLInputElement;
  const error = h("p", { class: "error" });
  const dialog = h(
    "dialog",
    { class: "create-assignment" },
    h(
      "form",
      {
        method: "dialog",
        onsubmit: async (e: Event) => {
          e.preventDefault();
          try {
            const c = courseIn.value.trim();
            const a = nameIn.value.trim();
            // Importing over an assignment replaces its tests and its
            // released copy: only when the trainer says so.
            const existing = (await api<{ course: string; name: string; released: string | null }[]>("/api/assignments")).find(
              (x) => x.course === c && x.name === a,
            );
            if (
              existing &&
              !confirm(
                `${c}/${a} exists${existing.released ? " and is released" : ""}. Replace its notebook with this one? ` +
                  "Its dates, policy and submissions stay; regrade them afterwards.",
              )
            ) {
              return;
            }
            await save();
            const made = await api<{ released: string | null }>(`/api/courses/${encodeURIComponent(c)}/assignments/${encodeURIComponent(a)}`, {
              method: "PUT",
              body: { path },
            });
            dialog.close();
            dialog.remove();
            toast(existing ? `Assignment ${c}/${a} replaced${made.released ? " (still released)" : ""}` : `Assignment ${c}/${a} saved as a draft`);
            location.hash = `#/manage/${c}/${a}`;
          } catch (err) {
            error.textContent = (err as Error).message;
          }
        },
      },
      h("h3", {}, "Create an assignment from this notebook"),
      h(
        "p",
        { class: "muted" },
        "Engineers get a copy without solutions and hidden tests once you release it. Importing again replaces the draft's notebook.",
      ),
      h("label", { class: "field" }, h("span", {}, "Course"), courseIn),
      h("label", { class: "field" }, h("span", {}, "Assignment"), nameIn),
      error,
      h(
        "div",
        { class: "toolbar" },
        h("button", { type: "submit", class: "create" }, "Create"),
        h(
          "button",
          {
            type: "button",
            onclick: () => {
              dialog.close();
              dialog.remove();
            },
          },
          "Cancel",
        ),
      ),
    ),
  ) as HTMLDialogElement;
  document.body.append(dialog);
  dialog.showModal();
}
