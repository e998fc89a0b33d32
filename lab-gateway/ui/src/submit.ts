// The Submit tab: a prediction file uploaded from this computer or picked
// from the caller's folder, or (in a code competition) a notebook from
// their folder to run; with the team's caps left, and the server's answer
// in place: the public score, the queue position, or every problem of a
// refused file by line and column. The server checks everything; this
// only sends and shows.

import { api, contentsUrl } from "./api";
import { at, failed, joinFirst, limitText, send, type Answer, type Competition, type Tab } from "./compete";
import { h, toast } from "./dom";
import { problemsList, type Entry } from "./entries";

/// The caps: made today and in all, and when the day's count resets.
function capsText(c: Competition): string {
  const s = c.submissions;
  if (!s) return "";
  return (
    `Today (UTC): ${s.today} of ${s.daily_cap} submissions, ${Math.max(0, s.daily_cap - s.today)} left; the count resets ${at(s.resets_at)}.` +
    (s.total_cap != null ? ` In all: ${s.total} of ${s.total_cap}.` : ` In all: ${s.total}.`)
  );
}

/// The server's answer to a submission, where it was sent from.
function answerView(a: Answer, t: Tab): HTMLElement {
  const b = a.body ?? {};
  if (a.status === 201) {
    const e = b as Entry;
    toast(`Scored: ${e.public_shown} on the public board`);
    return h(
      "div",
      { class: "submit-result", "data-state": "scored" },
      h("p", {}, "Scored. Public score: ", h("strong", { class: "score" }, e.public_shown ?? "–"), "."),
      h("a", { href: `#/competition/${t.c.slug}/submissions` }, "My submissions"),
      " · ",
      h("a", { href: `#/competition/${t.c.slug}/leaderboard` }, "Leaderboard"),
    );
  }
  if (a.status === 202) {
    const e = b as Entry;
    toast(`Queued: position ${e.position ?? "?"}`);
    return h(
      "div",
      { class: "submit-result", "data-state": "queued" },
      h("p", {}, `Queued for its run: position ${e.position ?? "?"}. `, h("a", { href: `#/competition/${t.c.slug}/submissions` }, "Follow it in My submissions")),
    );
  }
  const message = b.message ?? `${a.status}`;
  toast(message, "error");
  return h(
    "div",
    { class: "submit-result", "data-state": a.status === 422 ? "rejected" : "refused" },
    h("p", { class: "error" }, a.status === 422 ? "The file is refused (it costs nothing):" : message),
    problemsList(b.problems, b.more) ?? (a.status === 422 ? h("p", { class: "error" }, message) : null),
  );
}

/// The caller's folder, one directory at a time: its subfolders to open
/// and its files of `ext`, each with a button that sends it.
function folderPicker(ext: string, label: string, pick: (path: string) => Promise<void>): HTMLElement {
  const list = h("div", { class: "picker-list" });
  const el = h("div", { class: "folder-picker", "data-ext": ext }, list);
  const open = async (dir: string) => {
    try {
      const listing = await api<{ content: { name: string; path: string; type: string }[] }>(contentsUrl(dir) + "?content=1");
      const items = listing.content.slice().sort((a, b) => Number(b.type === "directory") - Number(a.type === "directory") || a.name.localeCompare(b.name));
      const dirs = items.filter((i) => i.type === "directory" && !i.name.startsWith("."));
      const files = items.filter((i) => i.type !== "directory" && i.name.toLowerCase().endsWith(ext));
      const up = dir.includes("/") ? dir.slice(0, dir.lastIndexOf("/")) : "";
      list.replaceChildren(
        h("p", { class: "crumbs muted" }, `My folder/${dir}`),
        h(
          "table",
          { class: "listing" },
          h(
            "tbody",
            {},
            dir ? h("tr", {}, h("td", {}, h("button", { class: "link", onclick: () => void open(up) }, "⬑ up")), h("td", {})) : null,
            ...dirs.map((d) => h("tr", { "data-dir": d.path }, h("td", {}, h("button", { class: "link", onclick: () => void open(d.path) }, `📁 ${d.name}`)), h("td", {}))),
            ...files.map((f) =>
              h(
                "tr",
                { "data-path": f.path },
                h("td", {}, f.name),
                h("td", { class: "actions" }, h("button", { class: "submit-path", onclick: () => void pick(f.path) }, label)),
              ),
            ),
            !dirs.length && !files.length ? h("tr", {}, h("td", { class: "empty" }, `No folders or ${ext} files here.`)) : null,
          ),
        ),
      );
    } catch (e) {
      failed(e, list);
    }
  };
  void open("");
  return el;
}

/// The Submit tab.
export function submitTab(t: Tab): HTMLElement {
  const { c, url } = t;
  if (!c.team) return joinFirst(t, "submit");
  const caps = h("p", { class: "caps" }, capsText(c));
  const result = h("div", { class: "submit-result-slot", "aria-live": "polite" });
  const description = h("input", { name: "description", maxlength: "500", placeholder: "a note for yourself (optional)", "aria-label": "description" }) as HTMLInputElement;
  let busy = false;
  const submit = async (work: () => Promise<Answer>) => {
    if (busy) return;
    busy = true;
    result.replaceChildren(h("p", { class: "muted" }, "Sending…"));
    try {
      result.replaceChildren(answerView(await work(), t));
      // The counts after this one.
      const fresh = await api<Competition>(url);
      c.submissions = fresh.submissions;
      caps.textContent = capsText(c);
    } catch (e) {
      failed(e, result);
    } finally {
      busy = false;
    }
  };
  const q = () => (description.value.trim() ? `?description=${encodeURIComponent(description.value.trim())}` : "");
  const page = h("div", { class: "submit" }, caps);
  if (c.phase !== "open") {
    page.append(h("p", { class: "notice" }, c.phase === "upcoming" ? `Submissions open ${at(c.rules.start)}.` : "The competition has ended: it takes no more submissions."));
    return page;
  }
  const columns = [c.rules.columns.id, ...c.prediction_columns.map((p) => p.name)].join(",");
  page.append(h("label", { class: "field" }, h("span", {}, "Description"), description));
  if (c.rules.csv) {
    const file = h("input", { type: "file", name: "submission-file", accept: ".csv,text/csv", "aria-label": "prediction file" }) as HTMLInputElement;
    page.append(
      h(
        "fieldset",
        { class: "upload-submission" },
        h("legend", {}, "Upload a prediction file"),
        h("p", { class: "muted" }, `A CSV with the header ${columns} and one row per test id (see the sample submission on the Data tab).`),
        h(
          "form",
          {
            onsubmit: (e: Event) => {
              e.preventDefault();
              const f = file.files?.[0];
              if (!f) {
                toast("Choose a file first", "error");
                return;
              }
              void submit(() => send(url + "/submissions" + q(), "POST", f, "application/octet-stream"));
            },
          },
          file,
          h("button", { type: "submit", class: "submit-file" }, "Submit file"),
        ),
      ),
      h(
        "fieldset",
        { class: "from-folder" },
        h("legend", {}, "A prediction file from my folder"),
        folderPicker(".csv", "Submit", (path) => submit(() => send(url + "/submissions", "POST", JSON.stringify({ path, description: description.value.trim() || undefined }), "application/json"))),
      ),
    );
  }
  if (c.rules.code) {
    const lim = c.rules.code;
    page.append(
      h(
        "fieldset",
        { class: "from-notebook" },
        h("legend", {}, "Run a notebook"),
        h(
          "p",
          { class: "muted" },
          `It runs offline on the hidden test set, in at most ${limitText(lim.time_limit_s)} with ${lim.memory_mb} MiB` +
            (lim.gpus ? ` and ${lim.gpus} GPU(s)` : "") +
            `, and must write submission.csv beside itself (header ${columns}).`,
        ),
        folderPicker(".ipynb", "Run and submit", (notebook) =>
          submit(() => send(url + "/submissions", "POST", JSON.stringify({ notebook, description: description.value.trim() || undefined }), "application/json")),
        ),
      ),
    );
  }
  page.append(result);
  return page;
}
