// The ops page's "Import people (CSV)": the file is read and parsed in the
// browser into `POST /api/admin/users {"users", "dry_run"}`, as `lab user
// import` reads it (a header with `name`, and any of `email`, `role`,
// `group`), and the answer is shown: what was (or would be) added and
// changed. A column the file leaves out is left out of every person, so the
// server keeps that field; an empty e-mail or group cell clears it.

import { api } from "./api";
import { h } from "./dom";

type Person = { name: string; email?: string | null; role?: string; group?: string | null };

interface Account {
  name: string;
  email: string | null;
  role: string;
  group: string | null;
}

interface Enrolment {
  added: Account[];
  changed: [string, { field: string; before: string | null; after: string | null }[]][];
  unchanged: number;
  deactivated: string[];
  dry_run: boolean;
}

const COLUMNS = ["name", "email", "role", "group"] as const;
const ROLES = ["engineer", "trainer", "ops", "admin"];

/// RFC 4180 records, each with the line it starts on: commas, quoted
/// fields (with `""` for a quote, and line breaks inside), CRLF or LF.
/// Blank lines are skipped, as the server's reader skips them.
export function csvRecords(text: string): { line: number; cells: string[] }[] {
  const out: { line: number; cells: string[] }[] = [];
  let cells: string[] = [];
  let cell = "";
  let line = 1;
  let start = 1;
  let quoted = false;
  let fresh = true; // nothing of this record read yet
  const end = () => {
    cells.push(cell);
    if (!(cells.length === 1 && cells[0].trim() === "" && fresh)) out.push({ line: start, cells });
    cells = [];
    cell = "";
    fresh = true;
  };
  text = text.replace(/^\ufeff/, "");
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') {
        quoted = false;
      } else {
        if (c === "\n") line++;
        cell += c;
      }
      continue;
    }
    if (fresh) start = line;
    if (c === '"' && cell.trim() === "") {
      quoted = true;
      cell = "";
      fresh = false;
    } else if (c === ",") {
      cells.push(cell);
      cell = "";
      fresh = false;
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      end();
      line++;
    } else {
      cell += c;
      if (c.trim()) fresh = false;
    }
  }
  if (quoted) throw new Error(`line ${start}: a quoted field is not closed`);
  end();
  return out;
}

/// The people of a CSV list, or the problems found, each named by its line.
export function readPeople(text: string): Person[] {
  const [header, ...records] = csvRecords(text);
  if (!header) throw new Error("the file is empty: it needs a header with a name column");
  const at: Partial<Record<(typeof COLUMNS)[number], number>> = {};
  header.cells.forEach((raw, i) => {
    const k = COLUMNS.find((c) => c === raw.trim().toLowerCase());
    if (!k) throw new Error(`unknown column "${raw.trim()}" in the header (name, email, role, group)`);
    if (at[k] !== undefined) throw new Error(`the column "${k}" is twice in the header`);
    at[k] = i;
  });
  if (at.name === undefined) throw new Error('the header has no "name" column');
  const problems: string[] = [];
  const people = records.map(({ line, cells }) => {
    if (cells.length !== header.cells.length) problems.push(`line ${line}: ${cells.length} fields, the header has ${header.cells.length}`);
    const cell = (k: (typeof COLUMNS)[number]) => (cells[at[k]!] ?? "").trim();
    const p: Person = { name: cell("name") };
    if (at.email !== undefined) p.email = cell("email") || null;
    if (at.role !== undefined && cell("role")) {
      p.role = cell("role").toLowerCase();
      if (!ROLES.includes(p.role)) problems.push(`line ${line}: unknown role "${cell("role")}" (engineer, trainer, ops, admin)`);
    }
    if (at.group !== undefined) p.group = cell("group") || null;
    return p;
  });
  if (problems.length) throw new Error(problems.join("; "));
  return people;
}

const shown = (v: string | null) => (v === null ? "none" : v);

function report(r: Enrolment, listed: number): HTMLElement {
  const verb = r.dry_run ? ["to add", "to change"] : ["added", "changed"];
  const lines = [
    ...r.added.map((a) =>
      h(
        "li",
        { "data-name": a.name, "data-change": "added" },
        `+ ${a.name}: ${a.role}, group ${shown(a.group)}, e-mail ${shown(a.email)}`,
      ),
    ),
    ...r.changed.map(([name, fields]) =>
      h(
        "li",
        { "data-name": name, "data-change": "changed" },
        `~ ${name}: ` + fields.map((f) => `${f.field} ${shown(f.before)} → ${shown(f.after)}`).join(", "),
      ),
    ),
  ];
  return h(
    "div",
    { class: "import-report", "data-dry-run": String(r.dry_run) },
    h(
      "p",
      { class: "import-summary" },
      (r.dry_run ? `Dry run of ${listed} people, nothing was changed: ` : `Imported ${listed} people: `) +
        `${r.added.length} ${verb[0]}, ${r.changed.length} ${verb[1]}, ${r.unchanged} unchanged.`,
    ),
    r.deactivated.length
      ? h("p", { class: "import-deactivated muted" }, `Deactivated, and they stay so: ${r.deactivated.join(", ")}.`)
      : null,
    lines.length ? h("ul", { class: "import-changes" }, ...lines) : null,
  );
}

/// The control; `imported()` runs after a list was applied.
export function importSection(imported: () => void): HTMLElement {
  const file = h("input", { type: "file", name: "people-csv", accept: ".csv,text/csv", "aria-label": "people CSV" });
  const result = h("div", { class: "import-result" });
  const send = async (dry_run: boolean) => {
    const f = file.files?.[0];
    if (!f) {
      result.replaceChildren(h("p", { class: "error import-error" }, "Choose a CSV file first."));
      return;
    }
    result.replaceChildren(h("p", { class: "muted" }, dry_run ? "Checking…" : "Importing…"));
    try {
      const users = readPeople(await f.text());
      const r = await api<Enrolment>("/api/admin/users", { method: "POST", body: { users, dry_run } });
      result.replaceChildren(report(r, users.length));
      if (!dry_run) imported();
    } catch (e) {
      // A problem of the file, or the server's (it names people by their place: "person N").
      result.replaceChildren(h("p", { class: "error import-error" }, (e as Error).message));
    }
  };
  return h(
    "section",
    { class: "import-people" },
    h("h2", {}, "Import people (CSV)"),
    h(
      "p",
      { class: "muted" },
      "A header with name, and any of email, role (engineer, trainer, ops, admin) and group. A column left out keeps what each user has; an empty e-mail or group cell clears it. A list with a problem changes nothing.",
    ),
    h(
      "div",
      { class: "inline" },
      file,
      h("button", { type: "button", class: "import-dry-run", onclick: () => void send(true) }, "Dry run"),
      h("button", { type: "button", class: "import-apply", onclick: () => void send(false) }, "Import"),
    ),
    result,
  );
}
