// Copies the browser files Inopsio serves from node_modules into core/src/inopsio/static/vendor/.
// Run by `npm ci` / `npm install` (postinstall); the target folder is generated, never committed.
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const target = join(root, "core", "src", "inopsio", "static", "vendor");

// [package file, name under static/vendor/]
const ASSETS = [
  // The OpenAPI viewer at /schema (RapidocRenderPlugin in inopsio/app.py).
  ["rapidoc/dist/rapidoc-min.js", "rapidoc-min.js"],
  // The web shell: partial page updates.
  ["htmx.org/dist/htmx.min.js", "htmx.min.js"],
  // Drag and drop (the CRM's kanban board, sortable lists).
  ["sortablejs/Sortable.min.js", "Sortable.min.js"],
  // Charts (dashboards, usage, pipeline metrics).
  ["uplot/dist/uPlot.iife.min.js", "uPlot.iife.min.js"],
  ["uplot/dist/uPlot.min.css", "uPlot.min.css"],
];

mkdirSync(target, { recursive: true });
let failed = false;
for (const [source, name] of ASSETS) {
  const from = join(root, "node_modules", source);
  if (!existsSync(from)) {
    console.error(`vendor-assets: ${from} is missing (is the package installed?)`);
    failed = true;
    continue;
  }
  copyFileSync(from, join(target, name));
  console.log(`vendor-assets: ${source} -> ${join("core/src/inopsio/static/vendor", name)}`);
}
if (failed) process.exit(1);
