// The ops page's Users section: everyone, searched as you type and paged
// as JupyterHub's REST API pages (`Accept: application/jupyterhub-
// pagination+json`), with their last request, running kernels and
// GPU-hours this week; per user, deactivate or reactivate, and end their
// browser sessions. What the server refuses is shown in its own words.

import { api } from "./api";
import { h, toast } from "./dom";

export interface Person {
  name: string;
  email: string | null;
  role: string;
  group: string | null;
  active: boolean;
  last_seen: string | null;
  kernels: number;
  gpu_hours: number;
}

interface Page {
  items: Person[];
  _pagination: { offset: number; limit: number; total: number; next: { offset: number; limit: number } | null };
}

const PAGE = 50;
/// How long typing pauses before the list is asked again.
const DEBOUNCE_MS = 250;

/// The section, and `reload()` to show the current page afresh (after an import).
export function usersSection(): { el: HTMLElement; reload: () => Promise<void> } {
  const search = h("input", { type: "search", name: "user-search", "aria-label": "search users", placeholder: "Name, e-mail or group" });
  const body = h("tbody", {});
  const range = h("span", { class: "page-range" });
  const prev = h("button", { type: "button", class: "prev-page" }, "Prev");
  const next = h("button", { type: "button", class: "next-page" }, "Next");
  let offset = 0;
  // Each ask gets a number; only the latest one's answer is shown, so a
  // slow answer to an older search never replaces a newer one.
  let asked = 0;

  const load = async () => {
    const mine = ++asked;
    const q = new URLSearchParams({ search: search.value.trim(), offset: String(offset), limit: String(PAGE) });
    let page: Page;
    try {
      page = await api<Page>(`/api/admin/users?${q}`, { headers: { Accept: "application/jupyterhub-pagination+json" } });
    } catch (e) {
      if (mine === asked) toast((e as Error).message, "error");
      return;
    }
    if (mine !== asked) return;
    const { total } = page._pagination;
    body.replaceChildren(
      ...(page.items.length ? page.items.map(row) : [h("tr", {}, h("td", { class: "empty", colspan: "9" }, "No one matches."))]),
    );
    range.textContent = total ? `${offset + 1}–${offset + page.items.length} of ${total}` : "0 of 0";
    prev.disabled = offset === 0;
    next.disabled = !page._pagination.next;
    section.dataset.offset = String(offset);
    section.dataset.total = String(total);
    section.dataset.search = search.value.trim();
  };

  const act = async (what: () => Promise<void>) => {
    try {
      await what();
    } catch (e) {
      toast((e as Error).message, "error");
    }
    await load();
  };
  const setActive = (p: Person, active: boolean) =>
    act(async () => {
      if (
        !active &&
        !confirm(
          `Deactivate ${p.name}? Their kernels stop, their queued starts are cancelled, and their tokens and browser sessions end. Their files, submissions and scores stay.`,
        )
      )
        return;
      await api(`/api/admin/users/${encodeURIComponent(p.name)}`, { method: "PATCH", body: { active } });
      toast(active ? `${p.name} reactivated: they need a new token or login URL` : `${p.name} deactivated`);
    });
  const endSessions = (p: Person) =>
    act(async () => {
      const r = await api<{ ended: number }>(`/api/admin/users/${encodeURIComponent(p.name)}/sessions`, { method: "DELETE" });
      toast(`Ended ${r.ended} browser session(s) of ${p.name}`);
    });

  const row = (p: Person) =>
    h(
      "tr",
      { "data-user": p.name, "data-active": String(p.active) },
      h("td", { class: "name" }, p.name),
      h("td", { class: "email" }, p.email ?? ""),
      h("td", { class: "role" }, p.role),
      h("td", { class: "group" }, p.group ?? ""),
      h("td", { class: "active" }, p.active ? "yes" : "deactivated"),
      h("td", { class: "last-seen" }, p.last_seen ? new Date(p.last_seen).toLocaleString() : "never"),
      h("td", { class: "kernels" }, String(p.kernels)),
      h("td", { class: "gpu-hours" }, p.gpu_hours.toFixed(2)),
      h(
        "td",
        { class: "actions" },
        p.active
          ? h("button", { class: "danger deactivate", onclick: () => void setActive(p, false) }, "Deactivate")
          : h("button", { class: "reactivate", onclick: () => void setActive(p, true) }, "Reactivate"),
        " ",
        h("button", { class: "end-sessions", onclick: () => void endSessions(p) }, "End sessions"),
      ),
    );

  let timer = 0;
  search.addEventListener("input", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => {
      offset = 0;
      void load();
    }, DEBOUNCE_MS);
  });
  prev.addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE);
    void load();
  });
  next.addEventListener("click", () => {
    offset += PAGE;
    void load();
  });

  const section = h(
    "section",
    { class: "users" },
    h("h2", {}, "Users"),
    h("div", { class: "toolbar" }, search),
    h(
      "table",
      { class: "users-table" },
      h(
        "thead",
        {},
        h("tr", {}, ...["Name", "E-mail", "Role", "Group", "Active", "Last seen", "Kernels running", "GPU-hours (this week)", ""].map((t) => h("th", {}, t))),
      ),
      body,
    ),
    h("div", { class: "pager inline" }, prev, range, next),
  );
  void load();
  return { el: section, reload: load };
}
