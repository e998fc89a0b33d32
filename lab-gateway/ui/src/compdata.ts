// The Data tab: the participant files to download (train, test, the sample
// submission); for staff also the hidden files only code submissions'
// runs get, uploading and removing files, and uploading the solution
// (id, target, Usage), whose targets never come back to the page.

import { api } from "./api";
import { failed, sendOrThrow, type DataFile, type Tab } from "./compete";
import { sizeText } from "./datafiles";
import { h, toast } from "./dom";

function fileUrl(url: string, name: string, hidden = false): string {
  return `${url}/data/${encodeURIComponent(name)}${hidden ? "?hidden=true" : ""}`;
}

/// The Data tab.
export function dataTab(t: Tab): HTMLElement {
  const { c, url } = t;
  const out = h("div", { class: "data-result", "aria-live": "polite" });
  const remove = async (f: DataFile, hidden: boolean) => {
    if (!confirm(`Remove ${f.name}${hidden ? " (hidden)" : ""}?`)) return;
    try {
      await api(fileUrl(url, f.name, hidden), { method: "DELETE" });
      toast(`${f.name} removed`);
      t.reload();
    } catch (e) {
      failed(e, out);
    }
  };
  const rows = (files: DataFile[], hidden: boolean) =>
    files.map((f) =>
      h(
        "tr",
        { "data-name": f.name, "data-hidden": String(hidden) },
        h("td", {}, hidden ? f.name : h("a", { href: fileUrl(url, f.name), download: f.name }, f.name)),
        h("td", {}, sizeText(f.size)),
        h("td", { class: "visibility" }, hidden ? "hidden: code runs only" : "participants"),
        c.staff && h("td", { class: "actions" }, h("button", { class: "remove-file", onclick: () => void remove(f, hidden) }, "Remove")),
      ),
    );
  const files = [...rows(c.data ?? [], false), ...rows(c.hidden_data ?? [], true)];
  const page = h(
    "div",
    { class: "data" },
    h(
      "p",
      { class: "muted" },
      `Joined participants also find these files in their folder, under competitions/${c.slug}/, where their notebooks read them.`,
    ),
    h(
      "table",
      { class: "listing data-files" },
      h("thead", {}, h("tr", {}, ...["File", "Size", "Who gets it", c.staff ? "" : null].filter((x) => x !== null).map((x) => h("th", {}, x)))),
      h("tbody", {}, ...(files.length ? files : [h("tr", {}, h("td", { colspan: "4", class: "empty" }, "No data files yet."))])),
    ),
  );
  if (c.staff) page.append(uploadForm(t, out), solutionForm(t, out));
  page.append(out);
  return page;
}

function uploadForm(t: Tab, out: HTMLElement): HTMLElement {
  const picker = h("input", { type: "file", name: "data-file", "aria-label": "data file" }) as HTMLInputElement;
  const name = h("input", { name: "data-name", placeholder: "file name, e.g. train.csv", "aria-label": "data file name" }) as HTMLInputElement;
  const hidden = h("input", { type: "checkbox", name: "data-hidden" }) as HTMLInputElement;
  picker.addEventListener("change", () => {
    const f = picker.files?.[0];
    if (f && !name.value.trim()) name.value = f.name;
  });
  const upload = async (e: Event) => {
    e.preventDefault();
    try {
      const f = picker.files?.[0];
      if (!f) throw new Error("Choose a file first");
      const n = name.value.trim() || f.name;
      await sendOrThrow(fileUrl(t.url, n, hidden.checked), "PUT", f, "application/octet-stream");
      toast(`${n} uploaded${hidden.checked ? " (hidden)" : ""}`);
      t.reload();
    } catch (err) {
      failed(err, out);
    }
  };
  return h(
    "form",
    { class: "data-upload", onsubmit: (e: Event) => void upload(e) },
    h("h3", {}, "Add or replace a file"),
    picker,
    name,
    h("label", { title: "the hidden test features a code submission's run reads instead of the public sample" }, hidden, " hidden (code runs only)"),
    h("button", { type: "submit" }, "Upload"),
  );
}

function solutionForm(t: Tab, out: HTMLElement): HTMLElement {
  const { c } = t;
  const picker = h("input", { type: "file", name: "solution-file", accept: ".csv,text/csv", "aria-label": "solution file" }) as HTMLInputElement;
  const upload = async (e: Event) => {
    e.preventDefault();
    try {
      const f = picker.files?.[0];
      if (!f) throw new Error("Choose the solution file first");
      const r = await sendOrThrow(t.url + "/solution", "PUT", f, "application/octet-stream");
      const rescored = r.rescored?.rescored ? `; ${r.rescored.rescored} submission(s) rescored` : "";
      toast(`Solution stored: ${r.rows} rows, ${r.public} public, ${r.private} private${rescored}`);
      t.reload();
    } catch (err) {
      failed(err, out);
    }
  };
  return h(
    "form",
    { class: "solution-upload", onsubmit: (e: Event) => void upload(e) },
    h("h3", {}, "Solution"),
    h(
      "p",
      { class: "muted" },
      `${c.has_solution ? "Uploaded. A new one replaces it and rescores every submission." : "None yet: publishing needs one."} ` +
        `A CSV with ${c.rules.columns.id}, ${c.rules.columns.target} and Usage (Public, Private or Ignored) for every test row.`,
    ),
    picker,
    h("button", { type: "submit" }, "Upload solution"),
  );
}
