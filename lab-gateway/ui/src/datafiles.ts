// An assignment's data files: on the trainer's Manage page, what is there
// (released to engineers, or hidden: only gradings get it), upload,
// download and remove; on the engineer's page, the released ones to
// download. Files land beside the notebook at their path, in an engineer's
// folder and in every grading alike.

import { ApiError, api } from "./api";
import { h, toast } from "./dom";

export interface DataFile {
  path: string;
  size: number;
  hidden?: boolean;
}

export function fileUrl(assignment: string, path: string): string {
  return `${assignment}/files/` + path.split("/").map(encodeURIComponent).join("/");
}

export function sizeText(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/// PUTs the file's bytes as they are (not JSON, which `api` sends).
async function upload(assignment: string, path: string, file: Blob, hidden: boolean): Promise<void> {
  const r = await fetch(fileUrl(assignment, path) + (hidden ? "?hidden=true" : ""), {
    method: "PUT",
    credentials: "same-origin",
    headers: { "Content-Type": "application/octet-stream" },
    body: file,
  });
  if (!r.ok) {
    let message = `${r.status} ${r.statusText}`;
    try {
      message = (await r.json()).message ?? message;
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(r.status, "", message);
  }
}

/// The released files as download links (the engineer's page).
export function releasedFiles(assignment: string, files: DataFile[]): HTMLElement | null {
  if (!files.length) return null;
  return h(
    "div",
    { class: "data-files" },
    h("h3", {}, "Data files"),
    h("p", { class: "muted" }, "They come with your copy, beside the notebook; your notebook reads them by these paths."),
    h(
      "ul",
      {},
      ...files.map((f) =>
        h("li", {}, h("a", { href: fileUrl(assignment, f.path), download: f.path.split("/").pop() ?? f.path }, f.path), ` (${sizeText(f.size)})`),
      ),
    ),
  );
}

/// The Manage page's section: the list, and a form to add or replace one.
export function dataFilesSection(assignment: string): HTMLElement {
  const body = h("tbody", {});
  const refresh = async () => {
    const files = await api<DataFile[]>(`${assignment}/files`);
    body.replaceChildren(
      ...(files.length
        ? files.map((f) =>
            h(
              "tr",
              { "data-path": f.path },
              h("td", {}, h("a", { href: fileUrl(assignment, f.path), download: f.path.split("/").pop() ?? f.path }, f.path)),
              h("td", {}, sizeText(f.size)),
              h("td", { class: "visibility" }, f.hidden ? "hidden: gradings only" : "released"),
              h(
                "td",
                {},
                h(
                  "button",
                  {
                    class: "remove-file",
                    onclick: async () => {
                      if (!confirm(`Remove ${f.path}? Engineers who have it keep their copy.`)) return;
                      try {
                        await api(fileUrl(assignment, f.path), { method: "DELETE" });
                        toast(`${f.path} removed`);
                        await refresh();
                      } catch (e) {
                        toast((e as Error).message, "error");
                      }
                    },
                  },
                  "Remove",
                ),
              ),
            ),
          )
        : [h("tr", {}, h("td", { colspan: "4", class: "muted" }, "No data files."))]),
    );
  };
  const picker = h("input", { type: "file", name: "data-file" }) as HTMLInputElement;
  const pathIn = h("input", { name: "data-path", placeholder: "path beside the notebook, e.g. data/train.csv" }) as HTMLInputElement;
  const hiddenIn = h("input", { type: "checkbox", name: "data-hidden" }) as HTMLInputElement;
  picker.addEventListener("change", () => {
    const f = picker.files?.[0];
    if (f && !pathIn.value.trim()) pathIn.value = f.name;
  });
  const add = async (e: Event) => {
    e.preventDefault();
    const f = picker.files?.[0];
    const path = pathIn.value.trim() || f?.name || "";
    try {
      if (!f) throw new Error("Choose a file first");
      await upload(assignment, path, f, hiddenIn.checked);
      toast(`${path} uploaded${hiddenIn.checked ? " (hidden)" : ""}`);
      picker.value = "";
      pathIn.value = "";
      hiddenIn.checked = false;
      await refresh();
    } catch (err) {
      toast((err as Error).message, "error");
    }
  };
  const section = h(
    "fieldset",
    { class: "data-files-manage" },
    h("legend", {}, "Data files"),
    h(
      "p",
      { class: "muted" },
      "Released files go to engineers with their copy and to every grading; hidden ones (held-out data, expected answers) only to gradings. Each lands at its path beside the notebook.",
    ),
    h("table", { class: "listing" }, h("thead", {}, h("tr", {}, ...["Path", "Size", "Who gets it", ""].map((t) => h("th", {}, t)))), body),
    h(
      "form",
      { class: "data-upload", onsubmit: (e: Event) => void add(e) },
      picker,
      pathIn,
      h("label", {}, hiddenIn, " hidden"),
      h("button", { type: "submit" }, "Upload"),
    ),
  );
  void refresh().catch((e) => toast((e as Error).message, "error"));
  return section;
}
