// The Leaderboard tab: the public board for everyone who may see the
// competition; the private board and the shake-up (each team's public
// rank, private rank and the move between them) for staff, and for
// everyone once the server says the private board is visible. The
// caller's team is marked; each board exports as CSV where the server
// makes one.

import { api } from "./api";
import { at, failed, type Tab } from "./compete";
import { h } from "./dom";

type Board = "public" | "private" | "shakeup";

interface Standing {
  rank: number;
  team: string;
  team_id: number;
  score: string;
  entries: number;
  submitted: string;
}

interface Move {
  team: string;
  team_id: number;
  public_rank: number | null;
  private_rank: number;
  change: number | null;
}

/// Places gained or lost, as an arrow and a number.
function moveText(change: number | null): string {
  if (change == null) return "new";
  if (change > 0) return `▲ ${change}`;
  if (change < 0) return `▼ ${-change}`;
  return "–";
}

function table(board: Board, head: string[], rows: HTMLElement[]): HTMLElement {
  return h(
    "table",
    { class: "board", "data-board": board },
    h("thead", {}, h("tr", {}, ...head.map((x) => h("th", {}, x)))),
    h("tbody", {}, ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: String(head.length), class: "empty" }, "No scored submissions yet."))])),
  );
}

/// The Leaderboard tab.
export function leaderboardTab(t: Tab): HTMLElement {
  const { c, url } = t;
  const mine = c.team?.id;
  const privateShown = c.private_visible || c.staff;
  const view = h("div", { class: "board-view", "aria-live": "polite" });
  const get = <T>(b: Board) => api<{ rows: T[] }>(`${url}/leaderboard?board=${b}`).then((r) => r.rows);
  const row = (teamId: number, team: string, rank: number, ...cells: (string | HTMLElement)[]) =>
    h("tr", { "data-team": team, "data-rank": String(rank), class: teamId === mine ? "mine" : undefined }, ...cells.map((x) => h("td", {}, x)));
  const csv = (b: Board) =>
    h("a", { class: "button export-csv", href: `${url}/leaderboard?board=${b}&format=csv`, download: `${c.slug}-${b}.csv` }, "Download CSV");
  const show = async (b: Board) => {
    for (const btn of buttons) btn.setAttribute("aria-pressed", String(btn.dataset.board === b));
    try {
      if (b === "public") {
        const rows = await get<Standing>("public");
        view.replaceChildren(
          table(
            b,
            ["Rank", "Team", "Score", "Entries", "Last"],
            rows.map((r) => row(r.team_id, r.team, r.rank, String(r.rank), r.team, r.score, String(r.entries), at(r.submitted))),
          ),
          h("p", { class: "muted" }, `Scored on the public part of the test set; ${c.higher_is_better ? "higher" : "lower"} is better.`),
          csv(b),
        );
      } else if (b === "private") {
        const [rows, moves] = await Promise.all([get<Standing>("private"), get<Move>("shakeup")]);
        const moved = new Map(moves.map((m) => [m.team_id, m]));
        view.replaceChildren(
          table(
            b,
            ["Rank", "Team", "Score", "Public rank", "Move"],
            rows.map((r) => {
              const m = moved.get(r.team_id);
              return row(r.team_id, r.team, r.rank, String(r.rank), r.team, r.score, m?.public_rank != null ? String(m.public_rank) : "–", moveText(m?.change ?? null));
            }),
          ),
          h("p", { class: "muted" }, "Scored on the rest of the test set, from each team's final selections (or its best public ones)."),
          csv(b),
        );
      } else {
        const moves = await get<Move>("shakeup");
        view.replaceChildren(
          table(
            b,
            ["Team", "Public rank", "Private rank", "Move"],
            moves.map((m) => row(m.team_id, m.team, m.private_rank, m.team, m.public_rank != null ? String(m.public_rank) : "–", String(m.private_rank), moveText(m.change))),
          ),
        );
      }
    } catch (e) {
      failed(e, view);
    }
  };
  const tabs: [Board, string][] = [["public", "Public"]];
  if (privateShown) tabs.push(["private", "Private"], ["shakeup", "Shake-up"]);
  const buttons = tabs.map(([b, label]) => h("button", { class: "board-tab", "data-board": b, onclick: () => void show(b) }, label));
  void show(c.private_visible ? "private" : "public");
  return h(
    "div",
    { class: "leaderboard" },
    h("div", { class: "toolbar board-tabs", role: "group", "aria-label": "board" }, ...buttons),
    c.staff && !c.private_visible ? h("p", { class: "muted" }, "The private board and the shake-up show to staff only, until they are revealed.") : null,
    view,
  );
}
