import { defineConfig } from "vite";

// The console is built into dist/, which is committed and embedded into the
// berth binary (web/embed.go). The build must be reproducible: file names
// are content hashes, nothing carries a timestamp, and `just lint` rebuilds
// and fails on a difference.
export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  // `just web-dev`: the dev server forwards everything berth serves, so the
  // session cookie stays same-origin as in production.
  server: {
    host: "127.0.0.1",
    port: 5173,
    proxy: Object.fromEntries(
      ["/berth.v1.", "/auth/", "/api/", "/ws", "/health", "/ready", "/openapi."].map((p) => [p, { target: "http://127.0.0.1:8080", ws: p === "/ws" }]),
    ),
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    // No inline polyfill script: the CSP allows no inline script.
    modulePreload: { polyfill: false },
    target: "es2022",
    chunkSizeWarningLimit: 600,
  },
});
