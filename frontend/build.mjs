// Copies the browser bundles the pages load into static/dist/ (git-ignored; rebuilt by `make`).
import { copyFileSync, mkdirSync } from "node:fs";

const files = [
  ["node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.js", "lightweight-charts.js"],
];
mkdirSync("static/dist", { recursive: true });
for (const [from, to] of files) {
  copyFileSync(from, `static/dist/${to}`);
  console.log(`static/dist/${to}`);
}
