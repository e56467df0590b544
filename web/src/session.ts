/**
 * Where the token lives: sessionStorage (decision 0015). It survives a reload
 * of this tab, is gone when the tab closes, is never shared with other tabs
 * or origins, and never goes into a URL.
 */
const KEY = 'kiln.token';

export const loadToken = (): string | undefined => window.sessionStorage.getItem(KEY) ?? undefined;
export const saveToken = (token: string): void => window.sessionStorage.setItem(KEY, token);
export const forgetToken = (): void => window.sessionStorage.removeItem(KEY);
