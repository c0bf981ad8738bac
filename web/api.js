// The REST half of the public API: one function per HTTP method, errors as ApiError.

export class ApiError extends Error {
  constructor(status, code, message, retryAfterMs) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

export const enc = encodeURIComponent;

/** A client whose calls carry getToken()'s token; onUnauthorized runs on a 401 to a signed-in call. */
export function makeApi(getToken, onUnauthorized) {
  async function call(method, path, body) {
    const headers = {};
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(`/api/v1${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch {
      throw new ApiError(0, 'network', 'the server cannot be reached');
    }
    if (res.status === 204) return null;
    let data = null;
    try {
      data = await res.json();
    } catch {
      data = null;
    }
    if (!res.ok) {
      const e = (data && data.error) || {};
      // Only a refused token ends the session: a wrong current password is 401 too.
      if (res.status === 401 && token && e.code === 'unauthorized') onUnauthorized();
      throw new ApiError(res.status, e.code || `http_${res.status}`, e.message || res.statusText, e.retry_after_ms);
    }
    return data;
  }
  return {
    get: (path) => call('GET', path),
    post: (path, body = {}) => call('POST', path, body),
    patch: (path, body) => call('PATCH', path, body),
    del: (path) => call('DELETE', path),
  };
}
