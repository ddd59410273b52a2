// The console is served by Envoy under /console/ (edge/envoy_browser.py: one route per built file).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/console/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // Everything in files (the page's Content-Security-Policy allows no inline script or style).
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
});
