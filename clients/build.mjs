// Builds the browser client (js/dist) and the demo page (demo/dist) with esbuild.
import { build } from "esbuild"
import { copyFileSync, mkdirSync } from "node:fs"

await build({
  entryPoints: ["js/src/index.ts"],
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  outfile: "js/dist/agentwire.js",
  sourcemap: true,
  logLevel: "warning",
})

mkdirSync("demo/dist", { recursive: true })
await build({
  entryPoints: ["demo/src/app.ts"],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  outfile: "demo/dist/app.js",
  minify: true,
  sourcemap: true,
  logLevel: "warning",
})
for (const file of ["index.html", "styles.css"]) copyFileSync(`demo/src/${file}`, `demo/dist/${file}`)
console.log("built js/dist/agentwire.js and demo/dist/")
