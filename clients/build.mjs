// Builds the browser client (js/dist), the demo page (demo/dist) and the grading page
// (grading/dist) with esbuild.
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

mkdirSync("grading/dist", { recursive: true })
await build({
  entryPoints: ["grading/src/app.ts"],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  outfile: "grading/dist/app.js",
  minify: true,
  sourcemap: true,
  logLevel: "warning",
})
for (const file of ["index.html", "styles.css"]) copyFileSync(`grading/src/${file}`, `grading/dist/${file}`)
console.log("built js/dist/agentwire.js, demo/dist/ and grading/dist/")
