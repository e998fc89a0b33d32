// The ops page: groups and their quotas as an editable table, live GPU
// allocation per pool with the queue, usage per group from the ledger, and
// the people: the user list (people.ts) and the CSV import (enrol.ts).

import DOMPurify from "dompurify";
import { api } from "./api";
import { h, toast } from "./dom";
import { importSection } from "./enrol";
import { usersSection } from "./people";

interface GroupQuota {
  name: string;
  weight: number;
  guaranteed: Record<string, number>;
  borrow_limit: Record<string, number | "unlimited">;
  user_limits: Record<string, unknown>;
}

function mapText(m: Record<string, unknown>): string {
  return Object.entries(m)
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
}

function parseMap(text: string, what: string): Record<string, number | "unlimited"> {
  const out: Record<string, number | "unlimited"> = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const [k, v] = part.split("=").map((s) => s.trim());
    if (!k || v === undefined) throw new Error(`${what}: write MODEL=N, e.g. H100-80GB=8`);
    if (v === "unlimited") out[k] = "unlimited";
    else if (/^\d+$/.test(v)) out[k] = Number(v);
    else throw new Error(`${what}: ${v} is not a number`);
  }
  return out;
}

export async function opsPage(): Promise<HTMLElement> {
  const [groups, cluster] = await Promise.all([
    api<{ quota: GroupQuota; members: string[]; using: Record<string, unknown> }[]>("/api/admin/groups"),
    api<{
      pools: {
        name: string;
        model: string;
        gpus: number;
        free: number;
        real: boolean;
        devices?: { id: string; utilisation_percent: number | null; memory_used_mb: number | null; memory_mb: number }[] | null;
      }[];
      queue: any[];
    }>("/api/admin/cluster"),
  ]);
  const rows = groups.map(({ quota, members }) => {
    const guaranteed = h("input", { value: mapText(quota.guaranteed), "aria-label": `${quota.name} guaranteed` }) as HTMLInputElement;
    const borrow = h("input", { value: mapText(quota.borrow_limit), "aria-label": `${quota.name} borrow limit` }) as HTMLInputElement;
    const weight = h("input", { type: "number", min: "0.1", step: "0.1", value: String(quota.weight), "aria-label": `${quota.name} weight` }) as HTMLInputElement;
    const save = async () => {
      try {
        const body = {
          ...quota,
          weight: Number(weight.value),
          guaranteed: parseMap(guaranteed.value, "guaranteed"),
          borrow_limit: parseMap(borrow.value, "borrow limit"),
        };
        await api(`/api/admin/groups/${encodeURIComponent(quota.name)}`, { method: "PUT", body });
        toast(`Saved ${quota.name}`);
      } catch (e) {
        toast((e as Error).message, "error");
      }
    };
    return h(
      "tr",
      { "data-group": quota.name },
      h("td", {}, quota.name),
      h("td", {}, guaranteed),
      h("td", {}, borrow),
      h("td", {}, weight),
      h("td", { class: "members" }, members.join(", ")),
      h("td", {}, h("button", { onclick: save, class: "save-group" }, "Save")),
    );
  });
  const poolsBody = h("tbody", {});
  const queueBody = h("tbody", {});
  const queueCount = h("p", { class: "queue-length" });
  const showCluster = (c: typeof cluster) => {
    poolsBody.replaceChildren(
      ...c.pools.map((p) =>
        h(
          "tr",
          {},
          h("td", {}, p.name),
          h("td", {}, p.model + (p.real ? "" : " (modelled)")),
          h("td", {}, `${p.gpus - p.free} of ${p.gpus} in use`),
          h("td", {}, h("meter", { min: "0", max: String(p.gpus), value: String(p.gpus - p.free) })),
          // Real GPUs read through NVML: how busy each one is.
          h(
            "td",
            { class: "utilisation" },
            (p.devices ?? [])
              .filter((d) => d.utilisation_percent != null)
              .map((d) => `${d.utilisation_percent}% busy, ${Math.round((d.memory_used_mb ?? 0) / 1024)} of ${Math.round(d.memory_mb / 1024)} GiB`)
              .join("; "),
          ),
        ),
      ),
    );
    queueCount.textContent = `${c.queue.length} kernel(s) queued`;
    queueBody.replaceChildren(
      ...c.queue.map((q: any) =>
        h("tr", {}, ...[q.position, q.user, q.group, `${q.gpus} × ${q.model}`, `waiting ${q.waited_seconds} s`].map((v) => h("td", {}, String(v ?? "")))),
      ),
    );
  };
  showCluster(cluster);
  const chart = h("div", { class: "usage-chart" });
  api<string>("/api/admin/usage?format=svg", { raw: true })
    .then((svg) => {
      chart.innerHTML = DOMPurify.sanitize(svg, { USE_PROFILES: { svg: true } });
    })
    .catch((e) => {
      chart.textContent = `No usage chart: ${(e as Error).message}`;
    });
  const users = usersSection();
  const page = h(
    "div",
    { class: "ops" },
    h("h2", {}, "Groups and quotas"),
    h(
      "table",
      { class: "quotas" },
      h("thead", {}, h("tr", {}, ...["Group", "Guaranteed GPUs", "Borrow limit", "Weight", "Members", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, ...rows),
    ),
    h("h2", {}, "GPUs"),
    h("table", { class: "pools" }, poolsBody),
    queueCount,
    h("table", { class: "queue" }, queueBody),
    h("h2", {}, "Usage per group (GPU hours per day)"),
    chart,
    users.el,
    importSection(() => void users.reload()),
  );
  // Live: the allocation and the queue refresh while the page is open.
  const timer = window.setInterval(async () => {
    if (!page.isConnected) return window.clearInterval(timer);
    try {
      showCluster(await api("/api/admin/cluster"));
    } catch {
      // the next tick tries again
    }
  }, 5000);
  return page;
}
