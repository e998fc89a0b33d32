// The courses page: notebooks trainers published, each opened as the
// engineer's own copy (published notebooks themselves stay read-only).

import { api } from "./api";
import { h, toast } from "./dom";

interface Course {
  name: string;
  notebooks: { name: string; last_modified: string }[];
}

export async function coursesPage(): Promise<HTMLElement> {
  const courses = await api<Course[]>("/api/courses");
  const open = async (course: string, notebook: string) => {
    try {
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
                h("td", { class: "actions" }, h("button", { onclick: () => void open(c.name, n.name) }, "Open my copy")),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}
