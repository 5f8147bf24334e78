// Renders berth's OpenAPI document (/openapi.json, served by the same
// binary) with Redoc's standalone bundle, loaded before this file. It is a
// file, not an inline script, so the page's Content-Security-Policy needs
// no 'unsafe-inline' for scripts. The fonts are the system's: nothing is
// fetched from another origin.
/* global Redoc */
"use strict";
const sans = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
Redoc.init("/openapi.json", {
  expandResponses: "200",
  jsonSampleExpandLevel: 3,
  pathInMiddlePanel: true,
  theme: {
    typography: {
      fontFamily: sans,
      headings: { fontFamily: sans },
      code: { fontFamily: "ui-monospace, 'SFMono-Regular', Menlo, monospace" },
    },
  },
}, document.getElementById("redoc"));
