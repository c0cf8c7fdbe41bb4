/** Origin allow-list and CORS headers for browser connections. Pure. */

/**
 * Whether a request with this Origin header may connect. No header means a
 * non-browser client, which Origin checks do not concern. Patterns: `*`, an
 * exact origin, or `scheme://*.domain` for any subdomain.
 */
export function originAllowed(origin: string, allowList: readonly string[]): boolean {
  if (origin === '') return true;
  const o = origin.toLowerCase();
  return allowList.some((pattern) => {
    const p = pattern.toLowerCase();
    if (p === '*' || p === o) return true;
    const star = p.indexOf('://*.');
    if (star === -1) return false;
    const scheme = p.slice(0, star + 3);
    const domain = p.slice(star + 4); // ".example.com"
    return (
      o.startsWith(scheme) && o.endsWith(domain) && !o.slice(scheme.length, -domain.length).includes('/')
    );
  });
}

/** CORS headers for a cross-origin page whose Origin passed the allow-list; none for same-origin or non-browser requests. */
export function corsHeaders(origin: string): Record<string, string> {
  return origin === '' ? {} : { 'access-control-allow-origin': origin, vary: 'origin' };
}
