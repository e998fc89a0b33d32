// A team's submissions as its members read them (the My submissions tab),
// and the rows the staff's queue shows too: each one's state (queued with
// its place, running, scored, refused, failed with why), its public score,
// its private score only where the server sends one, its run's time, the
// final selections and cancelling a queued notebook. The tab refreshes
// itself while a notebook waits or runs, and stops when the page is left.

import { api } from "./api";
import { at, failed, joinFirst, Poll, type Tab } from "./compete";
import { h, toast } from "./dom";

/// One problem of a refused file: where, and what.
export interface Problem {
  line?: number;
  column?: string;
  message: string;
}

export interface Entry {
  id: number;
  team: number;
  user: string;
  description: string;
  submitted: string;
  kind: "csv" | "code";
  state: "queued" | "running" | "scored" | "rejected" | "failed";
  counted: boolean;
  public_score: number | null;
  public_shown: string | null;
  /// Only where the caller may see it (staff; everyone once revealed).
  private_score?: number | null;
  private_shown?: string | null;
  selected: boolean;
  position?: number | null;
  runtime_minutes?: number;
  error?: { message: string; category?: string; problems?: Problem[]; more?: number; traceback?: string[] };
}

export function problemText(p: Problem): string {
  const where = [p.line != null && `Line ${p.line}`, p.column != null && `column ${p.column}`].filter(Boolean).join(", ");
  return where ? `${where}: ${p.message}` : p.message;
}

/// A refused file's problems as a list, with how many more there were.
export function problemsList(problems: Problem[] | undefined, more: number | undefined): HTMLElement | null {
  if (!problems?.length) return null;
  return h(
    "ul",
    { class: "problems" },
    ...problems.map((p) => h("li", { "data-line": p.line != null ? String(p.line) : undefined, "data-column": p.column }, problemText(p))),
    more ? h("li", { class: "muted" }, `and ${more} more problem${more === 1 ? "" : "s"}`) : null,
  );
}

// What a kernel's traceback holds for a terminal: colours, not for a table.
const ANSI = new RegExp(String.fromCharCode(27) + "\\[[0-9;]*[A-Za-z]", "g");

function stateText(e: Entry): string {
  switch (e.state) {
    case "queued":
      return e.position != null ? `queued: position ${e.position}` : "queued";
    case "running":
      return "running…";
    case "scored":
      return "scored";
    case "rejected":
      return "refused (costs nothing)";
    default:
      return e.error?.category === "cancelled" ? "cancelled" : "failed";
  }
}

function errorView(e: Entry): HTMLElement | null {
  if (!e.error) return null;
  const tb = e.error.traceback?.join("\n").replace(ANSI, "");
  return h(
    "div",
    { class: "entry-error" },
    // A refusal's message lists its problems too: the list says it better.
    problemsList(e.error.problems, e.error.more) ?? h("p", { class: "error" }, e.error.message),
    tb ? h("pre", { class: "traceback" }, tb) : null,
  );
}

/// The rows of a table of submissions: Submitted, By, What, State, Public,
/// Private, Runtime, Final, and Cancel for a queued notebook. A member
/// picks finals here; staff see which were picked.
export function entryRows(t: Tab, entries: Entry[], o: { staff: boolean; changed: () => void }): HTMLElement[] {
  const closed = t.c.phase === "ended";
  const select = async (e: Entry, box: HTMLInputElement) => {
    try {
      await api(`${t.url}/submissions/${e.id}/selected`, { method: "PUT", body: { selected: box.checked } });
      toast(box.checked ? `Submission ${e.id} is a final one` : `Submission ${e.id} is no longer a final one`);
    } catch (err) {
      box.checked = !box.checked;
      failed(err);
    }
    o.changed();
  };
  const cancel = async (e: Entry) => {
    if (!confirm(`Cancel submission ${e.id} before its run? It costs nothing.`)) return;
    try {
      await api(`${t.url}/submissions/${e.id}`, { method: "DELETE" });
      toast(`Submission ${e.id} cancelled`);
    } catch (err) {
      failed(err);
    }
    o.changed();
  };
  return entries.map((e) => {
    let final: HTMLElement | string = e.selected ? "✓" : "";
    if (!o.staff && e.state === "scored") {
      const box = h("input", { type: "checkbox", name: "final", checked: e.selected, disabled: closed, "aria-label": `final submission ${e.id}` }) as HTMLInputElement;
      box.addEventListener("change", () => void select(e, box));
      final = box;
    }
    return h(
      "tr",
      { "data-id": String(e.id), "data-state": e.state, "data-user": e.user, class: e.selected ? "selected" : undefined },
      h("td", {}, at(e.submitted)),
      h("td", {}, o.staff ? `${e.user} (team ${e.team})` : e.user),
      h("td", { class: "what" }, h("span", { class: "tag" }, e.kind === "code" ? "notebook" : "CSV"), " ", e.description),
      h("td", { class: "state" }, h("span", { class: "state-text" }, stateText(e)), errorView(e)),
      h("td", { class: "public" }, e.public_shown ?? "–"),
      h("td", { class: "private" }, "private_shown" in e ? (e.private_shown ?? "–") : "hidden"),
      h("td", { class: "runtime" }, e.runtime_minutes != null ? `${e.runtime_minutes} min` : ""),
      h("td", { class: "final" }, final),
      h("td", { class: "actions" }, e.state === "queued" && h("button", { class: "cancel", onclick: () => void cancel(e) }, "Cancel")),
    );
  });
}

/// The My submissions tab.
export function submissionsTab(t: Tab): HTMLElement {
  if (!t.c.team) return joinFirst(t, "submit and see your team's submissions");
  const { rules } = t.c;
  const body = h("tbody", {});
  const note = h("p", { class: "finals-note" });
  const status = h("div", { class: "entries-status", "aria-live": "polite" });
  const poll = t.track(
    new Poll(async () => {
      try {
        const mine = await api<Entry[]>(t.url + "/submissions");
        body.replaceChildren(...(mine.length ? entryRows(t, mine, { staff: false, changed: () => void poll.start() }) : [h("tr", {}, h("td", { colspan: "9", class: "empty" }, "No submissions yet."))]));
        const picked = mine.filter((e) => e.selected).length;
        note.textContent =
          `Final selections: ${picked} of ${rules.selections}. ` +
          (picked ? "Only these count for the private board." : `With none picked, your ${rules.selections} best public scores count for the private board.`) +
          (t.c.phase === "ended" ? " Selections closed at the end." : "");
        const busy = mine.some((e) => e.state === "queued" || e.state === "running");
        status.replaceChildren(busy ? h("span", { class: "muted" }, "A notebook waits or runs: this list refreshes by itself.") : "");
        status.dataset.busy = String(busy);
        return busy ? 2000 : null;
      } catch (e) {
        failed(e, status);
        return null;
      }
    }),
  );
  poll.start();
  return h(
    "div",
    { class: "my-submissions" },
    note,
    status,
    h(
      "table",
      { class: "entries" },
      h("thead", {}, h("tr", {}, ...["Submitted", "By", "What", "State", "Public", "Private", "Runtime", "Final", ""].map((x) => h("th", {}, x)))),
      body,
    ),
  );
}
