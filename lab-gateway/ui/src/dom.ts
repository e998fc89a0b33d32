// A tiny element builder: the UI has no framework, so this is the one way
// elements are made, and text always goes in as text (never as HTML).

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | boolean | EventListener | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2).toLowerCase(), v);
    } else if (v === true) {
      el.setAttribute(k, "");
    } else {
      el.setAttribute(k, String(v));
    }
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

/// A short-lived message at the bottom of the page.
export function toast(message: string, kind: "info" | "error" = "info"): void {
  let stack = document.querySelector(".toasts");
  if (!stack) {
    stack = h("div", { class: "toasts" });
    document.body.append(stack);
  }
  const t = h("div", { class: `toast ${kind}`, role: "status" }, message);
  stack.append(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 3000);
}
