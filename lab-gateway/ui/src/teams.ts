// The Team tab: the caller's team (everyone starts as a team of one), its
// name, asking another team to merge into it by naming one of its members,
// the invitations received (accept merges the caller's team into the
// other) and sent (withdraw), and leaving for a team of one. Whether a
// merge or a leave is allowed (the deadline, the size, the submissions
// made) is the server's decision; its reason shows here.

import { api } from "./api";
import { at, failed, joinFirst, type Tab, type Team } from "./compete";
import { h, toast } from "./dom";

interface Invitation {
  id: number;
  direction: "sent" | "received";
  from: string;
  to: string;
  by: string;
  created: string;
}

/// The Team tab.
export function teamTab(t: Tab): HTMLElement {
  const { c, url } = t;
  if (!c.team) return joinFirst(t, "form a team");
  const view = h("div", { class: "team-view" });
  const out = h("div", { class: "team-result", "aria-live": "polite" });
  const act = async (work: () => Promise<unknown>, done: string) => {
    try {
      await work();
      toast(done);
      t.reload();
    } catch (e) {
      failed(e, out);
    }
  };
  const show = (team: Team & { invitations: Invitation[] }) => {
    const open = Date.now() < Date.parse(c.rules.merger_deadline) && c.phase !== "ended";
    const name = h("input", { name: "team-name", value: team.name, maxlength: "60", "aria-label": "team name" }) as HTMLInputElement;
    const who = h("input", { name: "invite-user", placeholder: "a participant's user name", "aria-label": "invite user" }) as HTMLInputElement;
    const received = team.invitations.filter((i) => i.direction === "received");
    const sent = team.invitations.filter((i) => i.direction === "sent");
    view.replaceChildren(
      h("h3", { class: "team-name" }, team.name),
      h("ul", { class: "members" }, ...team.members.map((m) => h("li", { "data-user": m }, m))),
      h(
        "p",
        { class: "muted" },
        `${team.members.length} of at most ${c.rules.team_size} members. ` +
          (open ? `Teams merge until the merger deadline, ${at(c.rules.merger_deadline)}.` : "The merger deadline has passed: teams are fixed."),
      ),
      h(
        "form",
        {
          class: "rename-team inline",
          onsubmit: (e: Event) => {
            e.preventDefault();
            void act(() => api(url + "/team", { method: "PATCH", body: { name: name.value } }), "Team renamed");
          },
        },
        name,
        h("button", { type: "submit" }, "Rename"),
      ),
      open
        ? h(
            "form",
            {
              class: "invite inline",
              onsubmit: (e: Event) => {
                e.preventDefault();
                const user = who.value.trim();
                if (!user) {
                  toast("Name a participant to invite", "error");
                  return;
                }
                void act(() => api(url + "/team/invitations", { method: "POST", body: { user } }), `${user}'s team is asked to merge into yours`);
              },
            },
            who,
            h("button", { type: "submit" }, "Invite"),
            h("small", { class: "muted" }, "Their whole team merges into yours when one of them accepts."),
          )
        : "",
      h("h4", {}, "Invitations received"),
      received.length
        ? h(
            "ul",
            { class: "invitations-received" },
            ...received.map((i) =>
              h(
                "li",
                { "data-id": String(i.id), "data-from": i.from },
                `Team ${i.from} (asked by ${i.by}, ${at(i.created)}) asks your team to merge into it. `,
                h("button", { class: "accept", onclick: () => void act(() => api(`${url}/team/invitations/${i.id}/accept`, { method: "POST" }), `You joined team ${i.from}`) }, "Accept"),
                " ",
                h("button", { class: "decline", onclick: () => void act(() => api(`${url}/team/invitations/${i.id}`, { method: "DELETE" }), "Invitation declined") }, "Decline"),
              ),
            ),
          )
        : h("p", { class: "empty" }, "None."),
      h("h4", {}, "Invitations sent"),
      sent.length
        ? h(
            "ul",
            { class: "invitations-sent" },
            ...sent.map((i) =>
              h(
                "li",
                { "data-id": String(i.id), "data-to": i.to },
                `To team ${i.to} (by ${i.by}, ${at(i.created)}). `,
                h("button", { class: "withdraw", onclick: () => void act(() => api(`${url}/team/invitations/${i.id}`, { method: "DELETE" }), "Invitation withdrawn") }, "Withdraw"),
              ),
            ),
          )
        : h("p", { class: "empty" }, "None."),
      open && team.members.length > 1
        ? h(
            "button",
            {
              class: "leave-team danger",
              onclick: () => {
                if (!confirm("Leave the team for a team of your own? Only while it has made no submission.")) return;
                void act(() => api(url + "/team/leave", { method: "POST" }), "You left the team");
              },
            },
            "Leave team",
          )
        : "",
    );
  };
  api<Team & { invitations: Invitation[] }>(url + "/team").then(show, (e) => failed(e, view));
  return h("div", { class: "team" }, view, out);
}
