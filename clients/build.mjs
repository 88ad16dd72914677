// Builds the browser client (js/dist/agentwire.js), the server module for AI SDK routes
// (js/dist/server.js, `ai` left as the app's own import), the demo page (demo/dist), the
// AI SDK test page (ai-sdk/dist) and the grading page (grading/dist) with esbuild.
import { build } from "esbuild"
import { execFileSync } from "node:child_process"
import { copyFileSync, mkdirSync } from "node:fs"
import { createRequire } from "node:module"

// The .d.ts files next to agentwire.js and server.js, for apps that import them from TypeScript.
execFileSync(process.execPath, [createRequire(import.meta.url).resolve("typescript/bin/tsc"), "-p", "js"], { stdio: "inherit" })

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

await build({
  entryPoints: ["js/src/server.ts"],
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  outfile: "js/dist/server.js",
  external: ["ai"],
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

mkdirSync("ai-sdk/dist", { recursive: true })
await build({
  entryPoints: ["ai-sdk/src/app.ts"],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  outfile: "ai-sdk/dist/app.js",
  minify: true,
  sourcemap: true,
  logLevel: "warning",
})
copyFileSync("ai-sdk/src/index.html", "ai-sdk/dist/index.html")

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
console.log("built js/dist/agentwire.js, js/dist/server.js, demo/dist/, ai-sdk/dist/ and grading/dist/")
