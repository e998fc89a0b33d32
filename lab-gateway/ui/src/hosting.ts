// A competition's staff (its creator, and admins): the rules form (also
// the "New competition" form's), and the Host tab: the state, publish,
// rescore against the current solution, reveal the private board, the
// boards' CSV exports, editing the texts and rules, and the queue of every
// team's submissions, refreshed while the tab is open. The data files and
// the solution are on the Data tab (`compdata`).

import { api } from "./api";
import { at, failed, Poll, type Competition, type Rules, type Tab } from "./compete";
import { h, toast } from "./dom";
import { entryRows, type Entry } from "./entries";
import { field, fromLocalInput, toLocalInput } from "./forms";

const METRICS: [string, string][] = [
  ["accuracy", "accuracy"],
  ["balanced_accuracy", "balanced accuracy"],
  ["f1", "F1"],
  ["precision", "precision"],
  ["recall", "recall"],
  ["roc_auc", "ROC AUC"],
  ["log_loss", "log loss"],
  ["mae", "mean absolute error"],
  ["rmse", "root mean squared error"],
  ["rmsle", "root mean squared log error"],
  ["r2", "R²"],
  ["map_at_k", "MAP@k"],
  ["quadratic_weighted_kappa", "quadratic weighted kappa"],
];

/// Which of the metric's settings each metric takes.
const SETTINGS: Record<string, ("average" | "positive" | "k" | "classes")[]> = {
  f1: ["average", "positive"],
  precision: ["average", "positive"],
  recall: ["average", "positive"],
  roc_auc: ["positive"],
  log_loss: ["positive", "classes"],
  map_at_k: ["k"],
};

/// A required date: `what` names it when it is missing or wrong.
function requiredDate(v: string, what: string): string {
  const iso = v ? fromLocalInput(v) : null;
  if (!iso) throw new Error(`${what}: give a date and time`);
  return iso;
}

/// The rules, as a form; `read()` gives the rules it shows, or throws with
/// what is wrong. A new competition starts now, merges close a week before
/// its end, 30 days on.
export function rulesForm(r: Rules | null): { el: HTMLElement; read: () => Rules } {
  const now = Date.now();
  const iso = (ms: number) => new Date(Math.floor(ms / 60_000) * 60_000).toISOString();
  const dateIn = (name: string, v: string) => h("input", { type: "datetime-local", step: "1", name, value: toLocalInput(v) }) as HTMLInputElement;
  const start = dateIn("start", r?.start ?? iso(now));
  const merger = dateIn("merger_deadline", r?.merger_deadline ?? iso(now + 23 * 86_400_000));
  const end = dateIn("end", r?.end ?? iso(now + 30 * 86_400_000));
  const metric = h("select", { name: "metric" }, ...METRICS.map(([v, t]) => h("option", { value: v, selected: v === (r?.metric.name ?? "accuracy") }, t))) as HTMLSelectElement;
  const average = h(
    "select",
    { name: "average" },
    ...["binary", "macro", "micro"].map((v) => h("option", { value: v, selected: v === (r?.metric.average ?? "macro") }, v)),
  ) as HTMLSelectElement;
  const positive = h("input", { name: "positive", value: r?.metric.positive ?? "", placeholder: "the positive class's label" }) as HTMLInputElement;
  const k = h("input", { type: "number", name: "k", min: "1", step: "1", value: String(r?.metric.k ?? 5) }) as HTMLInputElement;
  const classes = h("input", { name: "classes", value: r?.metric.classes?.join(", ") ?? "", placeholder: "multiclass: every class, in column order" }) as HTMLInputElement;
  const idCol = h("input", { name: "id_column", value: r?.columns.id ?? "id" }) as HTMLInputElement;
  const targetCol = h("input", { name: "target_column", value: r?.columns.target ?? "target" }) as HTMLInputElement;
  const num = (name: string, v: number | null | undefined, min = "1") =>
    h("input", { type: "number", name, min, step: "1", value: v == null ? "" : String(v), placeholder: "no cap" }) as HTMLInputElement;
  const daily = num("daily_cap", r?.daily_cap ?? 5);
  const total = num("total_cap", r?.total_cap ?? null);
  const teamSize = num("team_size", r?.team_size ?? 5);
  const selections = num("selections", r?.selections ?? 2);
  const decimals = num("decimals", r?.decimals ?? 5, "0");
  const reveal = h(
    "select",
    { name: "reveal" },
    h("option", { value: "at_end", selected: (r?.reveal ?? "at_end") === "at_end" }, "when it ends"),
    h("option", { value: "by_staff", selected: r?.reveal === "by_staff" }, "when staff reveal it"),
  ) as HTMLSelectElement;
  const maxMb = h("input", { type: "number", name: "max_mb", min: "0.001", step: "any", value: String((r?.max_bytes ?? 100 << 20) / (1 << 20)) }) as HTMLInputElement;
  const csv = h("input", { type: "checkbox", name: "csv", checked: r?.csv ?? true }) as HTMLInputElement;
  const code = h("input", { type: "checkbox", name: "code", checked: !!r?.code }) as HTMLInputElement;
  const timeLimit = num("time_limit_s", r?.code?.time_limit_s ?? 3600);
  const memory = num("memory_mb", r?.code?.memory_mb ?? 4096, "64");
  const gpus = num("gpus", r?.code?.gpus ?? 0, "0");
  const settings = { average: field("Average", average), positive: field("Positive class", positive), k: field("k", k), classes: field("Classes", classes) };
  const codeBox = h("span", { class: "inline" }, "time (s) ", timeLimit, " memory (MiB) ", memory, " GPUs ", gpus);
  const show = () => {
    const takes = SETTINGS[metric.value] ?? [];
    for (const [name, el] of Object.entries(settings)) el.hidden = !takes.includes(name as keyof typeof settings);
    codeBox.hidden = !code.checked;
  };
  metric.addEventListener("change", show);
  code.addEventListener("change", show);
  show();
  const el = h(
    "fieldset",
    { class: "rules-form" },
    h("legend", {}, "Rules"),
    field("Metric", metric),
    settings.average,
    settings.positive,
    settings.k,
    settings.classes,
    field("Id column", idCol),
    field("Target column", targetCol, "in the solution; also the prediction column"),
    field("Start", start),
    field("Merger deadline", merger, "teams merge and members leave until then"),
    field("End", end),
    field("Submissions a day (UTC)", daily),
    field("Submissions in all", total),
    field("Team size", teamSize),
    field("Final selections", selections),
    field("Decimals shown", decimals),
    field("Private board shows", reveal),
    field("Largest file (MiB)", maxMb),
    field("Takes", h("span", { class: "inline" }, h("label", {}, csv, " prediction files"), h("label", {}, code, " notebooks to run"), codeBox)),
  );
  const whole = (i: HTMLInputElement, what: string, min = 1) => {
    const n = Number(i.value);
    if (i.value.trim() === "" || !Number.isInteger(n) || n < min) throw new Error(`${what} must be a whole number of at least ${min}`);
    return n;
  };
  const read = (): Rules => {
    const takes = SETTINGS[metric.value] ?? [];
    const spec: Rules["metric"] = { name: metric.value };
    if (takes.includes("average")) spec.average = average.value;
    if (takes.includes("positive") && positive.value.trim()) spec.positive = positive.value.trim();
    if (takes.includes("k")) spec.k = whole(k, "k");
    if (takes.includes("classes") && classes.value.trim()) spec.classes = classes.value.split(",").map((c) => c.trim());
    const mb = Number(maxMb.value);
    if (!(mb > 0)) throw new Error("The largest file must be above 0 MiB");
    return {
      metric: spec,
      columns: { id: idCol.value.trim(), target: targetCol.value.trim() },
      start: requiredDate(start.value, "Start"),
      merger_deadline: requiredDate(merger.value, "Merger deadline"),
      end: requiredDate(end.value, "End"),
      daily_cap: whole(daily, "Submissions a day"),
      total_cap: total.value.trim() ? whole(total, "Submissions in all") : null,
      team_size: whole(teamSize, "Team size"),
      selections: whole(selections, "Final selections"),
      decimals: whole(decimals, "Decimals", 0),
      reveal: reveal.value as Rules["reveal"],
      max_bytes: Math.round(mb * (1 << 20)),
      csv: csv.checked,
      code: code.checked ? { time_limit_s: whole(timeLimit, "Time"), memory_mb: whole(memory, "Memory", 64), gpus: whole(gpus, "GPUs", 0) } : null,
    };
  };
  return { el, read };
}

function stateText(c: Competition): string {
  return [
    c.published ? `Published ${at(c.published)}` : "Draft: only staff see it",
    c.has_solution ? "solution uploaded" : "no solution yet (Data tab)",
    c.revealed ? `private board revealed ${at(c.revealed)}` : c.private_visible ? "private board shown (it has ended)" : "private board hidden",
  ].join(" · ");
}

/// The Host tab.
export function hostTab(t: Tab): HTMLElement {
  const { c, url } = t;
  const out = h("div", { class: "host-result", "aria-live": "polite" });
  const action = (label: string, cls: string, path: string, ask: string | null, done: (r: any) => string) =>
    h(
      "button",
      {
        class: cls,
        onclick: async () => {
          if (ask && !confirm(ask)) return;
          try {
            const r = await api(url + path, { method: "POST" });
            toast(done(r));
            t.reload();
          } catch (e) {
            failed(e, out);
          }
        },
      },
      label,
    );
  const title = h("input", { name: "title", value: c.title, "aria-label": "title" }) as HTMLInputElement;
  const overview = h("textarea", { name: "overview", rows: "6", "aria-label": "overview" }) as HTMLTextAreaElement;
  overview.value = c.overview;
  const rulesText = h("textarea", { name: "rules_text", rows: "4", "aria-label": "rules text" }) as HTMLTextAreaElement;
  rulesText.value = c.rules_text;
  const rules = rulesForm(c.rules);
  const save = async (e: Event) => {
    e.preventDefault();
    try {
      await api(url, { method: "PATCH", body: { title: title.value, overview: overview.value, rules_text: rulesText.value, rules: rules.read() } });
      toast("Competition saved");
      t.reload();
    } catch (err) {
      failed(err, out);
    }
  };
  const queue = h("div", { class: "queue-view" });
  const poll = t.track(
    new Poll(async () => {
      try {
        const all = await api<Entry[]>(url + "/submissions?all=true");
        queue.replaceChildren(queueTable(t, all, () => void poll.start()));
        return all.some((e) => e.state === "queued" || e.state === "running") ? 2000 : 10_000;
      } catch (e) {
        failed(e, queue);
        return 10_000;
      }
    }),
  );
  poll.start();
  const board = (b: string) =>
    h("a", { class: `button export-${b}`, href: `${url}/leaderboard?board=${b}&format=csv`, download: `${c.slug}-${b}.csv` }, `Export ${b} board (CSV)`);
  return h(
    "div",
    { class: "host" },
    h("p", { class: "competition-state" }, stateText(c)),
    h(
      "div",
      { class: "toolbar" },
      !c.published && action("Publish", "publish", "/publish", "Publish it? Everyone signed in can then see it and join.", () => "Published"),
      !c.revealed &&
        action(
          "Rescore all",
          "rescore",
          "/rescore",
          "Score every submission again against the current solution?",
          (r: { rescored: number; refused?: number }) => `${r.rescored} submission(s) rescored` + (r.refused ? `, ${r.refused} refused by the new solution` : ""),
        ),
      !c.revealed &&
        action("Reveal private board", "reveal", "/reveal", "Reveal the private leaderboard to everyone? It cannot be hidden again.", () => "Private board revealed"),
      board("public"),
      board("private"),
    ),
    out,
    h(
      "form",
      { class: "competition-form edit-competition", onsubmit: (e: Event) => void save(e) },
      h("h3", {}, "Edit"),
      field("Title", title),
      field("Overview (markdown)", overview),
      field("Rules (markdown)", rulesText),
      rules.el,
      h("button", { type: "submit", class: "save-competition" }, "Save"),
    ),
    h("h3", {}, "Every submission"),
    h("p", { class: "muted" }, "Refreshed while this tab is open: every 2 s while a notebook waits or runs."),
    queue,
  );
}

function queueTable(t: Tab, all: Entry[], changed: () => void): HTMLElement {
  if (!all.length) return h("p", { class: "empty" }, "No submissions yet.");
  const waiting = all.filter((e) => e.state === "queued").length;
  const running = all.filter((e) => e.state === "running").length;
  return h(
    "div",
    {},
    h("p", { class: "queue-summary" }, `${all.length} submission(s); ${waiting} queued, ${running} running`),
    h(
      "table",
      { class: "entries queue-table" },
      h("thead", {}, h("tr", {}, ...["Submitted", "By", "What", "State", "Public", "Private", "Runtime", "Final", ""].map((x) => h("th", {}, x)))),
      h("tbody", {}, ...entryRows(t, all, { staff: true, changed })),
    ),
  );
}
