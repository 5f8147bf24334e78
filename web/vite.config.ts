import { defineConfig } from "vite";

// The console is built into dist/, which is committed and embedded into the
// berth binary (web/embed.go). The build must be reproducible: file names
// are content hashes, nothing carries a timestamp, and `just lint` rebuilds
// and fails on a difference.
export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
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
