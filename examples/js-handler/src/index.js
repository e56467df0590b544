// A Service Worker style edge function: Kiln builds it into a WASI 0.2
// component (kind http-component) with componentize-js.
import { greeting } from './greeting.js';

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  console.log(`${request.method} ${url.pathname}`);
  if (url.pathname === '/missing') return new Response('no such page\n', { status: 404 });
  if (url.pathname === '/throw') throw new Error('the handler failed on purpose');
  if (url.pathname === '/echo') {
    const body = await request.text();
    return new Response(body, { headers: { 'content-type': request.headers.get('content-type') ?? 'text/plain' } });
  }
  return new Response(`${greeting(url.searchParams.get('name') ?? 'world')}\n`, {
    status: 200,
    headers: { 'content-type': 'text/plain', 'x-kiln-example': 'js-handler' },
  });
}
