// The courses page: notebooks trainers published, each opened as the
// engineer's own copy (published notebooks themselves stay read-only).

import { api, contentsUrl } from "./api";
import { h, toast } from "./dom";

interface Course {
  name: string;
  notebooks: { name: string; last_modified: string }[];
}

export async function coursesPage(): Promise<HTMLElement> {
  const courses = await api<Course[]>("/api/courses");
  /// Opens the copy taken before, if there is one; else (or when asked for
  /// a fresh one) takes a new copy.
  const open = async (course: string, notebook: string, fresh: boolean) => {
    try {
      const mine = `${course}/${notebook}`;
      if (!fresh && (await ownCopyExists(course, notebook))) {
        location.hash = `#/nb/${mine}`;
        return;
      }
      const copy = await api<{ path: string }>(
        `/api/courses/${encodeURIComponent(course)}/${encodeURIComponent(notebook)}/copy`,
        { method: "POST" },
      );
      location.hash = `#/nb/${copy.path}`;
    } catch (e) {
      toast((e as Error).message, "error");
    }
  };
  if (!courses.length) {
    return h("div", { class: "courses" }, h("h2", {}, "Courses"), h("p", { class: "empty" }, "No course has notebooks yet."));
  }
  return h(
    "div",
    { class: "courses" },
    h("h2", {}, "Courses"),
    ...courses.map((c) =>
      h(
        "section",
        { class: "course", "data-course": c.name },
        h("h3", {}, c.name),
        h(
          "table",
          { class: "listing" },
          h(
            "tbody",
            {},
            ...c.notebooks.map((n) =>
              h(
                "tr",
                { "data-name": n.name },
                h("td", {}, "📓 " + n.name),
                h("td", { class: "modified" }, new Date(n.last_modified).toLocaleString()),
                h(
                  "td",
                  { class: "actions" },
                  h("button", { onclick: () => void open(c.name, n.name, false) }, "Open my copy"),
                  h("button", { onclick: () => void open(c.name, n.name, true), title: "Start again from the published notebook" }, "Fresh copy"),
                ),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

/// Whether the caller's own folder holds `course/notebook`, found by
/// listing folders that exist (a 404 would be a console error).
async function ownCopyExists(course: string, notebook: string): Promise<boolean> {
  const root = await api<{ content: { name: string; type: string }[] }>(contentsUrl("") + "?content=1");
  if (!root.content.some((i) => i.name === course && i.type === "directory")) return false;
  const dir = await api<{ content: { name: string }[] }>(contentsUrl(course) + "?content=1");
  return dir.content.some((i) => i.name === notebook);
}
