import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

/**
 * The web chat. `vite build` writes dist/, which the gateway serves at / under
 * a CSP without 'unsafe-inline': the build emits files only (one module
 * script, one stylesheet), never an inline script or style.
 * `vite` (dev) proxies the API and the WebSocket to a gateway on :8080.
 */
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
  },
  server: {
    proxy: {
      '/api': { target: process.env.CHAT_GATEWAY ?? 'http://localhost:8080', ws: true, changeOrigin: false },
    },
  },
});
