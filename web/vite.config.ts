// The dashboard's build: one page, one script, one stylesheet, with fixed names (no content
// hashes), so berth-http embeds a known set of files and a rebuild can be compared byte for byte.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/ui/',
  build: {
    outDir: process.env.BERTH_UI_OUT ?? '../crates/berth-http/ui',
    emptyOutDir: true,
    assetsDir: 'assets',
    modulePreload: false,
    sourcemap: false,
    cssCodeSplit: false,
    rollupOptions: {
      output: {
        entryFileNames: 'assets/berth.js',
        chunkFileNames: 'assets/[name].js',
        assetFileNames: 'assets/berth[extname]',
      },
    },
  },
});
