// One competition's page (`#/competition/SLUG/TAB`): its title, phase and
// Join button, the tabs (Overview, Data, Rules, Submit, My submissions,
// Leaderboard, Team, and Host for its staff) and the Overview and Rules
// tabs themselves. The page owns its tabs' polls and disposes them when
// the router leaves it, so no refresh runs for a page nobody sees.

import { api, type Identity } from "./api";
import { at, compUrl, failed, limitText, markdown, metricText, phaseText, type Competition, type Poll, type Tab } from "./compete";
import { dataTab } from "./compdata";
import { h, toast } from "./dom";
import { leaderboardTab } from "./boards";
import { hostTab } from "./hosting";
import { submissionsTab } from "./entries";
import { submitTab } from "./submit";
import { teamTab } from "./teams";

const TABS: [string, string][] = [
  ["overview", "Overview"],
  ["data", "Data"],
  ["rules", "Rules"],
  ["submit", "Submit"],
  ["submissions", "My submissions"],
  ["leaderboard", "Leaderboard"],
  ["team", "Team"],
  ["host", "Host"],
];

function facts(c: Competition): HTMLElement {
  const r = c.rules;
  const row = (k: string, v: string) => h("tr", {}, h("th", {}, k), h("td", {}, v));
  return h(
    "table",
    { class: "facts" },
    h(
      "tbody",
      {},
      row("Start", at(r.start)),
      row("Merger deadline", at(r.merger_deadline)),
      row("End", at(r.end)),
      row("Metric", metricText(c)),
      row("Submission columns", [r.columns.id, ...c.prediction_columns.map((p) => p.name)].join(", ")),
      row("Takes", [r.csv && "prediction files (CSV)", r.code && "notebooks, run offline on the hidden test set"].filter(Boolean).join("; ")),
      row("Submissions", `${r.daily_cap} a day (UTC)` + (r.total_cap != null ? `, ${r.total_cap} in all` : "")),
      row("Teams", `up to ${r.team_size} members`),
      row("Final selections", `${r.selections}`),
      row("Private board", r.reveal === "by_staff" ? "revealed by staff after the end" : "shown at the end"),
    ),
  );
}

function overviewTab(t: Tab): HTMLElement {
  const { c } = t;
  return h(
    "div",
    { class: "overview" },
    c.overview.trim() ? markdown(c.overview, "overview-text") : h("p", { class: "empty" }, "No overview yet."),
    facts(c),
  );
}

function rulesTab(t: Tab): HTMLElement {
  const { c } = t;
  const r = c.rules;
  return h(
    "div",
    { class: "rules" },
    c.rules_text.trim() ? markdown(c.rules_text, "rules-text") : h("p", { class: "empty" }, "No rules text."),
    h("h3", {}, "What the platform enforces"),
    h(
      "ul",
      { class: "caps-list" },
      h("li", {}, `Each team makes at most ${r.daily_cap} submissions a UTC day` + (r.total_cap != null ? ` and ${r.total_cap} in all` : "") + ". Refused files cost nothing."),
      h("li", {}, `Teams have at most ${r.team_size} members and merge until ${at(r.merger_deadline)}; a merged team may have made no more submissions than the daily cap times the days so far.`),
      h("li", {}, `Each team picks up to ${r.selections} final submissions for the private board; with none picked, its best public ones count.`),
      h("li", {}, `A submission file has at most ${(r.max_bytes / (1 << 20)).toFixed(1)} MiB.`),
      r.code && h("li", {}, `A notebook runs offline for at most ${limitText(r.code.time_limit_s)} with ${r.code.memory_mb} MiB of memory.`),
    ),
  );
}

/// The page; `load()` fills it, `dispose()` stops what it refreshes.
export class CompetitionView {
  readonly el = h("div", { class: "competition" });
  private polls: Poll[] = [];

  constructor(
    private slug: string,
    private tab: string,
    private me: Identity,
  ) {}

  dispose(): void {
    for (const p of this.polls) p.dispose();
    this.polls = [];
  }

  async load(): Promise<void> {
    this.dispose();
    const url = compUrl(this.slug);
    const c = await api<Competition>(url);
    const tabs = TABS.filter(([id]) => id !== "host" || c.staff);
    const tab = tabs.some(([id]) => id === this.tab) ? this.tab : "overview";
    const t: Tab = {
      c,
      me: this.me,
      url,
      track: (p) => (this.polls.push(p), p),
      reload: () => void this.load().catch((e) => failed(e)),
    };
    const join = async () => {
      try {
        await api(url + "/join", { method: "POST" });
        toast(`You joined ${c.title}`);
        await this.load();
      } catch (e) {
        failed(e);
      }
    };
    const body = { overview: overviewTab, data: dataTab, rules: rulesTab, submit: submitTab, submissions: submissionsTab, leaderboard: leaderboardTab, team: teamTab, host: hostTab }[
      tab as "overview"
    ](t);
    this.el.replaceChildren(
      h(
        "div",
        { class: "competition-head" },
        h("h2", {}, c.title),
        h("span", { class: "tag phase", "data-phase": c.phase }, c.phase),
        c.staff && h("span", { class: "tag staff" }, "staff"),
        c.team && h("span", { class: "tag joined" }, `team ${c.team.name}`),
        h("span", { class: "muted" }, phaseText(c)),
        !c.team && c.phase !== "ended" && h("button", { class: "join", onclick: () => void join(), title: "You accept the rules (Rules tab)" }, "Join competition"),
      ),
      h(
        "nav",
        { class: "tabs", "aria-label": "competition" },
        ...tabs.map(([id, label]) => h("a", { href: `#/competition/${this.slug}/${id}`, class: id === tab ? "active" : undefined, "aria-current": id === tab ? "page" : undefined }, label)),
      ),
      h("section", { class: `tab-body tab-${tab}` }, body),
    );
  }
}
