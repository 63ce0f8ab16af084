// Build the widget bundle into pdum/rfb/static/ (committed; shipped in the wheel).
//   node build.mjs            write the bundle
//   node build.mjs --check    exit 1 if the committed bundle differs from a fresh build
import { build } from "esbuild";
import { readFileSync, writeFileSync, copyFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, "..", "pdum", "rfb", "static");
const outFile = join(outDir, "viewer.js");

const result = await build({
  entryPoints: [join(here, "src", "widget.js")],
  bundle: true,
  format: "esm",
  target: "es2022", // noVNC uses top-level await
  minify: true,
  legalComments: "none",
  write: false,
  logLevel: "warning",
});
const banner =
  "/* pdum.rfb viewer. Bundles noVNC (https://github.com/novnc/noVNC), MPL-2.0: see noVNC-LICENSE.txt */\n";
const code = banner + result.outputFiles[0].text;

if (process.argv.includes("--check")) {
  let committed = "";
  try { committed = readFileSync(outFile, "utf8"); } catch { /* missing */ }
  if (committed !== code) {
    console.error("pdum/rfb/static/viewer.js is stale: run scripts/build_viewer.sh and commit it");
    process.exit(1);
  }
  console.log("viewer bundle is up to date");
} else {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(outFile, code);
  const novnc = join(here, "node_modules", "@novnc", "novnc");
  copyFileSync(join(novnc, "LICENSE.txt"), join(outDir, "noVNC-LICENSE.txt"));
  copyFileSync(join(novnc, "docs", "LICENSE.MPL-2.0"), join(outDir, "noVNC-LICENSE.MPL-2.0.txt"));
  console.log(`wrote ${outFile} (${code.length} bytes)`);
}
