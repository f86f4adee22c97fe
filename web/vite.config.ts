import { defineConfig } from 'vite';

// Served by src/plugins/console.ts at /console/ with a strict CSP: no inline scripts or styles.
export default defineConfig({
  root: import.meta.dirname,
  base: '/console/',
  esbuild: { jsx: 'automatic' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 1000,
  },
});
