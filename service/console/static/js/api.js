// The JSON API, as the `lethe` client uses it: every call carries `Authorization: Bearer
// <key>`; the key is kept in this tab's sessionStorage from sign-in until sign-out.

const KEY = "lethe.apiKey";

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  signIn(key) { sessionStorage.setItem(KEY, key); },
  signOut() { sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  // `problem` is the RFC 9457 body: detail, and `errors` naming each bad field.
  constructor(status, problem) {
    super(problem.detail || `HTTP ${status}`);
    this.status = status;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${session.key}`, Accept: "application/json", ...extra };
}

async function checked(response) {
  if (response.ok) return response;
  let problem = {};
  try { problem = await response.json(); } catch { /* not JSON: the status says enough */ }
  throw new ApiError(response.status, problem);
}

export async function get(path, { signal } = {}) {
  return (await checked(await fetch(path, { headers: headers(), signal }))).json();
}

export async function post(path, body, { signal, idempotencyKey } = {}) {
  const extra = { "Content-Type": "application/json" };
  if (idempotencyKey) extra["Idempotency-Key"] = idempotencyKey;
  const init = { method: "POST", headers: headers(extra), signal };
  if (body !== undefined) init.body = JSON.stringify(body);
  return (await checked(await fetch(path, init))).json();
}

export async function blob(path, { signal } = {}) {
  return (await checked(await fetch(path, { headers: headers({ Accept: "*/*" }), signal }))).blob();
}

// Save a download under `filename`. A plain link cannot send the Authorization header, so the
// file is fetched here and handed to the browser as a Blob URL (it is held in memory meanwhile).
export async function save(path, filename) {
  const url = URL.createObjectURL(await blob(path));
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// A job's events as they happen: the Server-Sent Events stream read through fetch (an
// EventSource cannot send the Authorization header). Calls onEvent(type, data) per event
// and returns when the stream ends (the job has ended) or `signal` aborts it.
export async function followEvents(jobId, after, onEvent, signal) {
  const response = await checked(await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events?after=${after}`, {
    headers: headers({ Accept: "text/event-stream" }), signal, cache: "no-store",
  }));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const message = parseMessage(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (message) onEvent(message.type, message.data);
    }
  }
}

function parseMessage(block) {
  let type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // a keep-alive comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { type, data: JSON.parse(data.join("\n")) } : null;
}

// A key for Idempotency-Key (crypto.randomUUID needs a secure context; plain http on a LAN is not one).
export function randomKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}
