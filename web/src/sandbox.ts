// One sandbox: its spec, status history (from the events stream, replayed from the server's
// history), ports, live logs, CPU and memory sparklines, a file browser, and a terminal
// (xterm.js over the WebSocket exec, resized with the window).

import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import '@xterm/xterm/css/xterm.css';
import { ApiError, call, followEvents, json, key, post, readText, type SandboxEvent, type SandboxView, type StatsView } from './api';
import { bytes, clear, errorBox, h, span, sparkline, statusBadge } from './dom';
import type { Context } from './main';

const SAMPLES = 60;
const STATS_EVERY_MS = 2000;
const LOG_LIMIT = 200_000;

interface FileStat {
  name: string;
  path: string;
  kind: string;
  size: number;
  mode: string;
  modified_at?: string | null;
  link_target?: string | null;
}

/** `word` as a shell would need it, so a command's arguments read apart. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export async function sandboxPage(root: HTMLElement, context: Context, id: string): Promise<void> {
  const { signal } = context;
  const base = `/v1/sandboxes/${encodeURIComponent(id)}`;
  let sandbox = await json<SandboxView>(base, { signal });

  const title = h('h1', {});
  const spec = h('dl', { class: 'spec' });
  const ports = h('div', {});
  const problem = h('div', {});
  const history = h('tbody', {});
  const drawHeader = () => {
    clear(
      title,
      h('a', { href: '/ui/sandboxes', 'data-link': true, class: 'muted' }, 'Sandboxes'),
      ' / ',
      h('span', { class: 'mono' }, sandbox.id),
      ' ',
      statusBadge(sandbox.status),
    );
    const now = Date.now();
    const entries: [string, unknown][] = [
      ['Owner', sandbox.owner],
      ['Image', sandbox.image],
      ['Template', sandbox.template],
      ['Status', [sandbox.status, sandbox.status_reason, sandbox.status_message].filter(Boolean).join(' — ')],
      ['Command', sandbox.command?.map(shellWord).join(' ')],
      ['Resources', sandbox.resources ? `${sandbox.resources.cpu} CPU, ${sandbox.resources.memory}${sandbox.resources.disk ? `, ${sandbox.resources.disk} disk` : ''}` : null],
      ['Labels', Object.entries(sandbox.labels).map(([k, v]) => `${k}=${v}`).join(', ')],
      ['Engine', [sandbox.engine, sandbox.runtime].filter(Boolean).join(' / ')],
      ['IP', sandbox.ip],
      ['Created', `${sandbox.created_at} (${span(now - Date.parse(sandbox.created_at))} ago)`],
      ['Expires', `${sandbox.expires_at} (in ${span(Date.parse(sandbox.expires_at) - now)})`],
      ['Lifetime ends', sandbox.lifetime_ends_at],
      ['Idle timeout', sandbox.idle_timeout],
      ['Exit code', sandbox.exit_code],
      ['Restarts', sandbox.restarts || null],
      ['OOM killed', sandbox.oom_killed ? 'yes' : null],
    ];
    clear(
      spec,
      entries
        .filter(([, value]) => value !== null && value !== undefined && value !== '')
        .flatMap(([name, value]) => [h('dt', {}, name), h('dd', {}, String(value))]),
    );
    const host = (ip: string) => (ip === '0.0.0.0' || ip === '::' || ip === '' ? location.hostname : ip);
    clear(
      ports,
      sandbox.ports.length
        ? h(
            'table',
            {},
            h('tr', {}, h('th', {}, 'Port'), h('th', {}, 'On the host'), h('th', {}, 'Through berth (needs the key)')),
            sandbox.ports.map((port) => {
              const direct = `http://${host(port.host_ip)}:${port.host_port}/`;
              return h(
                'tr',
                {},
                h('td', {}, String(port.container_port)),
                h('td', {}, h('a', { href: direct, target: '_blank', rel: 'noopener' }, direct)),
                h('td', { class: 'mono' }, `${location.origin}${base}/proxy/${port.container_port}/`),
              );
            }),
          )
        : h('p', { class: 'muted' }, 'No published ports.'),
    );
    drawToolbar();
  };

  const toolbar = h('div', { class: 'toolbar actions' });
  const act = async (what: () => Promise<unknown>) => {
    problem.replaceChildren();
    try {
      await what();
      sandbox = await json<SandboxView>(base, { signal });
      drawHeader();
    } catch (error) {
      problem.replaceChildren(errorBox(error));
    }
  };
  const drawToolbar = () =>
    clear(
      toolbar,
      h(
        'button',
        {
          onclick: () =>
            act(async () => {
              const ttl = prompt('New time to live, from now', '30m');
              if (ttl) await post(`${base}/ttl`, { ttl });
            }),
        },
        'Renew',
      ),
      sandbox.status === 'Paused'
        ? h('button', { onclick: () => act(() => post(`${base}/resume`, {})) }, 'Resume')
        : h('button', { disabled: sandbox.status !== 'Running', onclick: () => act(() => post(`${base}/pause`, {})) }, 'Pause'),
      h(
        'button',
        {
          class: 'danger',
          onclick: async () => {
            if (!confirm(`Delete sandbox ${id}?`)) return;
            try {
              await call(base, { method: 'DELETE' });
              context.navigate('/ui/sandboxes');
            } catch (error) {
              problem.replaceChildren(errorBox(error));
            }
          },
        },
        'Delete',
      ),
    );

  drawHeader();
  const cpu = h('div', { class: 'spark-box' });
  const memory = h('div', { class: 'spark-box' });
  const logs = h('pre', { class: 'logs', 'aria-label': 'logs' });
  const terminalBox = h('div', { class: 'terminal', id: 'terminal' });
  const terminalBar = h('span', { class: 'terminal-bar' });
  const files = h('div', { class: 'files' });

  clear(
    root,
    title,
    problem,
    toolbar,
    h(
      'div',
      { class: 'grid' },
      h('section', {}, h('h2', {}, 'Spec'), spec, h('h2', {}, 'Ports'), ports),
      h(
        'section',
        {},
        h('h2', {}, 'CPU and memory'),
        cpu,
        memory,
        h('h2', {}, 'Status history'),
        h('table', { class: 'history' }, h('thead', {}, h('tr', {}, ['Time', 'Event', 'Status', 'Reason'].map((name) => h('th', {}, name)))), history),
      ),
    ),
    h('section', {}, h('h2', {}, 'Terminal ', terminalBar), terminalBox),
    h('section', {}, h('h2', {}, 'Files'), files),
    h('section', {}, h('h2', {}, 'Logs'), logs),
  );

  // The history: every event of this sandbox the server still holds, then the live ones.
  const eventQuery = new URLSearchParams({ id, since: '0' });
  followEvents(eventQuery, signal, (event: SandboxEvent) => {
    history.appendChild(
      h(
        'tr',
        {},
        h('td', {}, new Date(event.time).toLocaleTimeString()),
        h('td', {}, event.type.replace(/^sandbox\./, '')),
        h('td', {}, statusBadge(event.status)),
        h('td', {}, [event.reason, event.message].filter(Boolean).join(': ')),
      ),
    );
    json<SandboxView>(base, { signal })
      .then((fresh) => {
        sandbox = fresh;
        drawHeader();
      })
      .catch(() => {});
  });

  followStats(base, signal, cpu, memory);
  followLogs(base, signal, logs);
  fileBrowser(base, signal, files);
  if (sandbox.status === 'Running') terminal(base, signal, terminalBox, terminalBar);
  else terminalBox.appendChild(h('p', { class: 'muted' }, `The terminal needs a running sandbox; this one is ${sandbox.status}.`));
}

function followStats(base: string, signal: AbortSignal, cpuBox: HTMLElement, memoryBox: HTMLElement): void {
  // Scaled to their own peaks (CPU to at least 1%): an idle sandbox against its limits would
  // draw a flat line.
  const cpu: number[] = [];
  const memory: number[] = [];
  const draw = (sample?: StatsView) => {
    clear(cpuBox, h('span', { class: 'spark-label' }, `CPU ${sample ? sample.cpu_percent.toFixed(1) : '–'}%`), sparkline(cpu, 1));
    clear(
      memoryBox,
      h('span', { class: 'spark-label' }, `Memory ${sample ? `${bytes(sample.memory_used_bytes)} of ${bytes(sample.memory_limit_bytes)}` : '–'}`),
      sparkline(memory),
    );
  };
  draw();
  // Polled, not streamed: a browser holds at most six HTTP/1.1 connections to a server, and the
  // events and logs streams already keep two of them open per page.
  let timer = 0;
  const sample = async () => {
    try {
      const stats = await json<StatsView>(`${base}/stats`, { signal });
      cpu.push(stats.cpu_percent);
      memory.push(stats.memory_used_bytes);
      if (cpu.length > SAMPLES) cpu.shift();
      if (memory.length > SAMPLES) memory.shift();
      draw(stats);
    } catch (error) {
      if (signal.aborted) return;
      draw();
      cpuBox.appendChild(errorBox(error));
    }
    if (!signal.aborted) timer = window.setTimeout(sample, STATS_EVERY_MS);
  };
  signal.addEventListener('abort', () => clearTimeout(timer));
  void sample();
}

function followLogs(base: string, signal: AbortSignal, logs: HTMLElement): void {
  call(`${base}/logs?follow=true&tail=500`, { signal })
    .then((response) =>
      readText(response, (text) => {
        const atBottom = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
        logs.textContent = (logs.textContent + text).slice(-LOG_LIMIT);
        if (atBottom) logs.scrollTop = logs.scrollHeight;
      }),
    )
    .then(() => logs.appendChild(h('span', { class: 'muted' }, '\n— end of logs —')))
    .catch((error) => {
      if (!signal.aborted) logs.appendChild(h('span', { class: 'error' }, `\n${error.message ?? error}`));
    });
}

function fileBrowser(base: string, signal: AbortSignal, box: HTMLElement): void {
  let directory = '/tmp';
  const pathInput = h('input', { name: 'path', value: directory, class: 'mono' });
  const upload = h('input', { type: 'file', name: 'upload', multiple: true });
  const status = h('span', { class: 'muted' });
  const listing = h('tbody', {});
  const go = (path: string) => {
    directory = path.replace(/\/+$/, '') || '/';
    pathInput.value = directory;
    void load();
  };
  const load = async () => {
    status.textContent = 'loading…';
    try {
      const answer = await json<{ path: string; entries: FileStat[] }>(`${base}/files/list?path=${encodeURIComponent(directory)}`, { signal });
      const entries = [...answer.entries].sort((a, b) => (a.kind === 'dir' ? 0 : 1) - (b.kind === 'dir' ? 0 : 1) || a.name.localeCompare(b.name));
      const up = directory === '/' ? null : directory.replace(/\/[^/]*$/, '') || '/';
      clear(
        listing,
        up ? h('tr', {}, h('td', { colspan: 5 }, h('button', { class: 'link', onclick: () => go(up) }, '..'))) : null,
        entries.map((entry) =>
          h(
            'tr',
            { 'data-name': entry.name },
            h(
              'td',
              { class: 'mono' },
              entry.kind === 'dir'
                ? h('button', { class: 'link', onclick: () => go(entry.path) }, `${entry.name}/`)
                : entry.name + (entry.link_target ? ` → ${entry.link_target}` : ''),
            ),
            h('td', { class: 'num' }, entry.kind === 'file' ? bytes(entry.size) : entry.kind),
            h('td', { class: 'mono' }, entry.mode),
            h('td', {}, entry.modified_at ? new Date(entry.modified_at).toLocaleString() : ''),
            h('td', {}, entry.kind === 'file' ? h('button', { onclick: () => download(entry) }, 'Download') : null),
          ),
        ),
      );
      status.textContent = `${entries.length} entries`;
    } catch (error) {
      status.textContent = '';
      clear(listing, h('tr', {}, h('td', { colspan: 5 }, errorBox(error))));
    }
  };
  const download = async (entry: FileStat) => {
    try {
      const blob = await (await call(`${base}/files?path=${encodeURIComponent(entry.path)}`, { signal })).blob();
      const url = URL.createObjectURL(blob);
      const link = h('a', { href: url, download: entry.name });
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (error) {
      status.textContent = error instanceof Error ? error.message : String(error);
    }
  };
  upload.addEventListener('change', async () => {
    for (const file of Array.from(upload.files ?? [])) {
      status.textContent = `uploading ${file.name}…`;
      try {
        const target = `${directory === '/' ? '' : directory}/${file.name}`;
        await call(`${base}/files?path=${encodeURIComponent(target)}`, {
          method: 'PUT',
          headers: { 'Content-Type': 'application/octet-stream' },
          body: file,
          signal,
        });
      } catch (error) {
        status.textContent = error instanceof ApiError ? error.message : String(error);
        return;
      }
    }
    upload.value = '';
    await load();
  });
  const form = h('form', { class: 'filters' }, h('label', {}, 'Directory ', pathInput), h('button', { type: 'submit' }, 'Open'), h('label', {}, 'Upload ', upload), status);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    go(pathInput.value || '/');
  });
  clear(box, form, h('table', { class: 'listing' }, h('thead', {}, h('tr', {}, ['Name', 'Size', 'Mode', 'Modified', ''].map((name) => h('th', {}, name)))), listing));
  void load();
}

/** A shell in the sandbox in `box`; when it ends, `bar` offers a new one. */
function terminal(base: string, signal: AbortSignal, box: HTMLElement, bar: HTMLElement): void {
  bar.replaceChildren();
  box.replaceChildren();
  const term = new Terminal({ cursorBlink: true, fontSize: 13, scrollback: 5000, fontFamily: 'ui-monospace, Menlo, Consolas, monospace' });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  const query = new URLSearchParams({ tty: 'true', cols: String(term.cols), rows: String(term.rows) });
  query.append('cmd', '/bin/sh');
  query.append('env', 'TERM=xterm-256color');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  // Browsers cannot set headers on a WebSocket: the key goes as a subprotocol, which berth takes
  // out before anything else sees the request (never in the URL, which ends up in logs).
  const secret = key();
  const protocols = secret ? ['berth', `berth.bearer.${secret}`] : ['berth'];
  const socket = new WebSocket(`${scheme}://${location.host}${base}/exec/ws?${query}`, protocols);
  socket.binaryType = 'arraybuffer';
  const encoder = new TextEncoder();
  socket.onopen = () => {
    box.dataset.state = 'open';
    term.focus();
  };
  socket.onmessage = (message) => {
    if (typeof message.data === 'string') {
      try {
        const exit = JSON.parse(message.data);
        term.write(`\r\n\x1b[2m[exited${exit.exit_code !== undefined ? ` with code ${exit.exit_code}` : ''}]\x1b[0m\r\n`);
      } catch {
        term.write(message.data);
      }
    } else {
      term.write(new Uint8Array(message.data as ArrayBuffer));
    }
  };
  socket.onclose = () => {
    box.dataset.state = 'closed';
    term.write('\r\n\x1b[2m[disconnected]\x1b[0m\r\n');
    if (signal.aborted) return;
    clear(
      bar,
      h(
        'button',
        {
          onclick: () => {
            observer.disconnect();
            term.dispose();
            terminal(base, signal, box, bar);
          },
        },
        'New session',
      ),
    );
  };
  term.onData((data) => socket.readyState === WebSocket.OPEN && socket.send(encoder.encode(data)));
  term.onBinary((data) => {
    if (socket.readyState !== WebSocket.OPEN) return;
    socket.send(Uint8Array.from(data, (c) => c.charCodeAt(0)));
  });
  term.onResize(({ cols, rows }) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ resize: { cols, rows } }));
  });
  const observer = new ResizeObserver(() => fit.fit());
  observer.observe(box);
  signal.addEventListener(
    'abort',
    () => {
      observer.disconnect();
      socket.close();
      term.dispose();
    },
    { once: true },
  );
}
