// CodeMirror 6 for cells: Rust highlighting for code (academy-rust, and
// academy-candle's Rhai, which reads as Rust), markdown for text cells.

import { EditorState, type Extension } from "@codemirror/state";
import { EditorView, keymap, drawSelection, highlightActiveLine } from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { bracketMatching, indentOnInput, syntaxHighlighting, defaultHighlightStyle } from "@codemirror/language";
import { rust } from "@codemirror/lang-rust";
import { markdown } from "@codemirror/lang-markdown";

export interface EditorKeys {
  /// Shift-Enter.
  runAndAdvance: () => void;
  /// Ctrl-Enter.
  run: () => void;
  /// Ctrl-S.
  save: () => void;
  /// Any edit.
  changed: () => void;
}

export function makeEditor(
  parent: HTMLElement,
  doc: string,
  kind: "code" | "markdown",
  keys: EditorKeys,
): EditorView {
  const ours = keymap.of([
    { key: "Shift-Enter", run: () => (keys.runAndAdvance(), true) },
    { key: "Mod-Enter", run: () => (keys.run(), true) },
    { key: "Mod-s", run: () => (keys.save(), true), preventDefault: true },
  ]);
  const extensions: Extension[] = [
    ours,
    history(),
    drawSelection(),
    highlightActiveLine(),
    indentOnInput(),
    bracketMatching(),
    syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
    keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
    kind === "code" ? rust() : markdown(),
    EditorView.lineWrapping,
    EditorView.updateListener.of((u) => {
      if (u.docChanged) keys.changed();
    }),
    EditorView.contentAttributes.of({ "aria-label": kind === "code" ? "code cell" : "markdown cell" }),
  ];
  return new EditorView({ state: EditorState.create({ doc, extensions }), parent });
}
