// Builds the UI into dist/: one minified ES module, the stylesheet and the
// page, each also gzipped (the gateway serves those when the browser takes
// gzip). Output is deterministic, so CI can check dist/ is up to date.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  outfile: "dist/app.js",
  legalComments: "none",
  logLevel: "warning",
  loader: { ".txt": "text" },
});
// The one script an output frame runs: the gateway's CSP allows it by this hash.
const frameScript = readFileSync("src/frame-script.txt", "utf8");
writeFileSync("dist/frame-script.csp", `'sha256-${createHash("sha256").update(frameScript).digest("base64")}'`);
copyFileSync("index.html", "dist/index.html");
copyFileSync("style.css", "dist/app.css");
for (const f of ["app.js", "app.css", "index.html"]) {
  const raw = readFileSync(`dist/${f}`);
  writeFileSync(`dist/${f}.gz`, gzipSync(raw, { level: 9 }));
  console.log(`dist/${f}: ${raw.length} bytes, ${gzipSync(raw, { level: 9 }).length} gzipped`);
}
