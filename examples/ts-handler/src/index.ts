// A TypeScript edge function. Kiln strips the types (esbuild, no type
// check) and builds a WASI 0.2 component with componentize-js.
interface FetchEvent extends Event {
  readonly request: Request;
  respondWith(response: Response | Promise<Response>): void;
}

type Route = (request: Request, url: URL) => Response | Promise<Response>;

const routes: Record<string, Route> = {
  '/': (_request, url) => json({ hello: url.searchParams.get('name') ?? 'world' }),
  '/teapot': () => new Response("I'm a teapot\n", { status: 418 }),
  '/throw': () => {
    throw new Error('the handler failed on purpose');
  },
};

function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), { status, headers: { 'content-type': 'application/json', 'x-kiln-example': 'ts-handler' } });
}

addEventListener('fetch', (event) => {
  const fetchEvent = event as FetchEvent;
  const url = new URL(fetchEvent.request.url);
  const route = routes[url.pathname] ?? (() => json({ error: 'not found' }, 404));
  fetchEvent.respondWith(route(fetchEvent.request, url));
});
