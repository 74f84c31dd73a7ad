// REST calls with the session's token. A 401 anywhere means the token is no
// longer good (refused, expired, revoked): the console signs out and says
// so instead of retrying.
import { S, set } from "./store.js";

export class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function api(method, path, body, token = S.token) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      cache: "no-store",
    });
  } catch (err) {
    throw new APIError(0, `server unreachable (${err.message})`);
  }
  const text = await res.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch { data = { error: text.slice(0, 200) }; }
  if (!res.ok) {
    const err = new APIError(res.status, `${data.error || res.statusText} (${res.status})`);
    if (res.status === 401 && token === S.token && S.me) refuse(res.status, data.error);
    throw err;
  }
  return data;
}

// refuse signs out with the plain reason; nothing retries after it.
export function refuse(status, detail) {
  window.dispatchEvent(new CustomEvent("vigil:refused", { detail: { status, detail } }));
}

export function refusalText(status, detail) {
  const why = detail ? `: ${detail}` : "";
  return `token refused (${status}) — check the token${why}`;
}

export const whoami = (token) => api("GET", "/api/v1/whoami", undefined, token);
export const setDetection = (d) => { S.detections.set(d.id, d); set(); };
