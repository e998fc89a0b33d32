// This browser's preferences, kept in localStorage: how much of one output
// the notebook shows before it cuts it to a head and a tail. The notebook
// file always keeps the whole output; only the page is bounded.

import { h, toast } from "./dom";

export interface Settings {
  /// Lines of one text output shown before the rest is cut.
  outputLines: number;
  /// Characters of one output (text, or a rich output's source) shown
  /// before it is cut (text) or replaced by a placeholder (HTML, SVG, images).
  outputChars: number;
}

export const DEFAULT_SETTINGS: Settings = { outputLines: 5000, outputChars: 1_000_000 };

const KEY = "academy.settings";

let cached: Settings | null = null;

export function settings(): Settings {
  if (cached) return cached;
  let stored: Partial<Settings> = {};
  try {
    stored = JSON.parse(localStorage.getItem(KEY) ?? "{}") ?? {};
  } catch {
    stored = {};
  }
  cached = {
    outputLines: positive(stored.outputLines, DEFAULT_SETTINGS.outputLines),
    outputChars: positive(stored.outputChars, DEFAULT_SETTINGS.outputChars),
  };
  return cached;
}

function positive(v: unknown, fallback: number): number {
  return typeof v === "number" && Number.isFinite(v) && v >= 10 ? Math.floor(v) : fallback;
}

export function saveSettings(s: Settings): void {
  cached = { outputLines: positive(s.outputLines, DEFAULT_SETTINGS.outputLines), outputChars: positive(s.outputChars, DEFAULT_SETTINGS.outputChars) };
  localStorage.setItem(KEY, JSON.stringify(cached));
}

/// The settings form in the user menu; applies to outputs shown from now on.
export function settingsForm(): HTMLElement {
  const s = settings();
  const lines = h("input", { type: "number", min: "10", step: "100", value: String(s.outputLines), "aria-label": "output lines shown" });
  const chars = h("input", { type: "number", min: "10", step: "1000", value: String(s.outputChars), "aria-label": "output characters shown" });
  return h(
    "form",
    {
      class: "settings",
      onsubmit: (e: Event) => {
        e.preventDefault();
        saveSettings({ outputLines: Number(lines.value), outputChars: Number(chars.value) });
        toast("Settings saved: they apply to outputs shown from now on");
      },
    },
    h("p", { class: "settings-title" }, "Long outputs"),
    h("label", {}, "Lines shown ", lines),
    h("label", {}, "Characters shown ", chars),
    h("button", { type: "submit" }, "Save settings"),
  );
}
