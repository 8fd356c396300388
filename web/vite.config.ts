/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The built app is served by Quart from web/dist (SPA fallback for non-API paths).
// `npm run dev` proxies the API and the Socket.IO endpoint to `reeltrack serve` on :8000.
const backend = "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // no source maps in web/dist: Quart serves every file there (1.4 MB of them)
    sourcemap: false,
  },
  server: {
    proxy: {
      "/api/ws": { target: backend, ws: true },
      "/api": { target: backend },
    },
  },
  test: {
    environment: "jsdom",
    globals: false,
    include: ["test/**/*.test.{ts,tsx}"],
    setupFiles: ["test/setup.ts"],
    restoreMocks: true,
  },
});
