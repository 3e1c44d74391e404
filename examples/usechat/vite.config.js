import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The dev server passes /v1 to Citewise: the browser talks only to this page's origin, and
// Citewise gets the request from the dev server, not from a page of another site (which it
// would refuse unless that page is a registered widget).
const citewise = process.env.CITEWISE_URL ?? 'http://127.0.0.1:8000';

const toCitewise = {
  target: citewise,
  changeOrigin: true,
  configure: (proxy) => proxy.on('proxyReq', (request) => request.removeHeader('origin')),
};

export default defineConfig({
  plugins: [react()],
  server: { proxy: { '/v1': toCitewise } },
  preview: { proxy: { '/v1': toCitewise } },
});
