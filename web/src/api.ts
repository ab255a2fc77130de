// How the dashboard talks to berth: every call carries the key from this tab's session as
// `Authorization: Bearer`, as any other client would; streams (events, logs, stats, builds) are
// read with fetch, not EventSource, so they can carry the header too.

const KEY = 'berth.key';

export function key(): string | null {
  return sessionStorage.getItem(KEY);
}

export function setKey(value: string | null): void {
  if (value === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, value);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The answer to a call, or an `ApiError` with the problem's detail. */
export async function call(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const secret = key();
  if (secret) headers.set('Authorization', `Bearer ${secret}`);
  const response = await fetch(path, { ...init, headers });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const problem = await response.json();
      if (problem && typeof problem.detail === 'string') detail = problem.detail;
    } catch {
      // Not a problem document: the status says enough.
    }
    if (response.status === 401 && secret) {
      setKey(null);
      window.dispatchEvent(new Event('berth:logout'));
    }
    throw new ApiError(response.status, detail);
  }
  return response;
}

export async function json<T>(path: string, init: RequestInit = {}): Promise<T> {
  return (await call(path, init)).json() as Promise<T>;
}

export function post<T>(path: string, body: unknown, method = 'POST'): Promise<T> {
  return json<T>(path, {
    method,
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
}

/** Reads a streamed body, giving each complete chunk of text to `onText`. */
export async function readText(response: Response, onText: (text: string) => void): Promise<void> {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(value);
  }
}

/** Reads a streamed body line by line. */
export async function readLines(response: Response, onLine: (line: string) => void): Promise<void> {
  let pending = '';
  await readText(response, (text) => {
    pending += text;
    let end;
    while ((end = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, end).replace(/\r$/, '');
      pending = pending.slice(end + 1);
      onLine(line);
    }
  });
  if (pending) onLine(pending);
}

export interface ServerSentEvent {
  event: string;
  id: string | null;
  data: string;
}

/** Reads a `text/event-stream` body, one event at a time. */
export async function readEvents(response: Response, onEvent: (event: ServerSentEvent) => void): Promise<void> {
  let event = 'message';
  let id: string | null = null;
  let data: string[] = [];
  await readLines(response, (line) => {
    if (line === '') {
      if (data.length) onEvent({ event, id, data: data.join('\n') });
      event = 'message';
      id = null;
      data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id') id = value;
  });
}

export interface SandboxEvent {
  id: number;
  type: string;
  sandbox_id: string;
  owner: string;
  status: string;
  reason?: string | null;
  message?: string | null;
  labels: Record<string, string>;
  expires_at: string;
  time: string;
}

/**
 * Follows `GET /v1/events` with `query` until `signal` aborts, reconnecting (resuming after the
 * last event seen) when the stream breaks; `onOpen` runs on each (re)connection, so a page can
 * re-read what it may have missed.
 */
export function followEvents(
  query: URLSearchParams,
  signal: AbortSignal,
  onEvent: (event: SandboxEvent) => void,
  onOpen: (live: boolean) => void = () => {},
): void {
  let last: string | null = null;
  const connect = async () => {
    while (!signal.aborted) {
      try {
        const headers: Record<string, string> = { Accept: 'text/event-stream' };
        if (last !== null) headers['Last-Event-ID'] = last;
        const response = await call(`/v1/events?${query}`, { headers, signal });
        onOpen(true);
        await readEvents(response, (sse) => {
          if (sse.id) last = sse.id;
          if (sse.event === 'error') return;
          try {
            onEvent(JSON.parse(sse.data) as SandboxEvent);
          } catch {
            // A keep-alive or an event this page does not know: nothing to draw.
          }
        });
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError && error.status === 401) return;
      }
      onOpen(false);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  };
  void connect();
}

export interface SandboxView {
  id: string;
  owner: string;
  image: string;
  template?: string | null;
  status: string;
  status_reason?: string | null;
  status_message?: string | null;
  created_at: string;
  started_at?: string | null;
  ended_at?: string | null;
  expires_at: string;
  lifetime_ends_at?: string | null;
  labels: Record<string, string>;
  ports: { container_port: number; host_ip: string; host_port: number }[];
  resources?: { cpu: string; memory: string; disk?: string | null };
  command?: string[] | null;
  engine: string;
  ip?: string | null;
  exit_code?: number | null;
  oom_killed: boolean;
  restarts: number;
  runtime?: string | null;
  idle_timeout?: string | null;
  [more: string]: unknown;
}

export interface StatsView {
  cpu_percent: number;
  memory_used_bytes: number;
  memory_limit_bytes: number;
  pids: number;
  read_at: string;
}

export interface WhoAmI {
  key_id?: string | null;
  owner: string;
  role: 'admin' | 'member';
}
