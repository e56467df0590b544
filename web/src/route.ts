import { useEffect, useState } from 'preact/hooks';

/** Pages are addressed by the URL fragment: the server serves one page at `/`. */
export type Route =
  | { page: 'apps' }
  | { page: 'app'; applicationId: string }
  | { page: 'build'; buildId: string }
  | { page: 'try'; versionId: string }
  | { page: 'try-latest'; applicationId: string };

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const [first, id, last] = parts;
  if (first === 'apps' && id && last === 'try') return { page: 'try-latest', applicationId: id };
  if (first === 'apps' && id) return { page: 'app', applicationId: id };
  if (first === 'builds' && id) return { page: 'build', buildId: id };
  if (first === 'versions' && id && last === 'try') return { page: 'try', versionId: id };
  return { page: 'apps' };
}

export const href = {
  apps: () => '#/apps',
  app: (id: string) => `#/apps/${encodeURIComponent(id)}`,
  build: (id: string) => `#/builds/${encodeURIComponent(id)}`,
  tryVersion: (id: string) => `#/versions/${encodeURIComponent(id)}/try`,
  tryLatest: (applicationId: string) => `#/apps/${encodeURIComponent(applicationId)}/try`,
};

export const navigate = (to: string): void => {
  window.location.hash = to;
};

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return route;
}
