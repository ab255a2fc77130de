// The sandboxes page: a table read once from `GET /v1/sandboxes` and then kept live by
// `GET /v1/events` (re-read whenever the stream reconnects, so nothing missed stays drawn), with
// CPU and memory sampled for the running ones, filters, and the lifecycle actions.

import { ApiError, call, followEvents, json, post, type SandboxEvent, type SandboxView, type StatsView } from './api';
import { bytes, clear, errorBox, h, span, statusBadge } from './dom';
import type { Context } from './main';

const ENDED = new Set(['Terminated', 'Failed']);
const STATUSES = ['Pending', 'Creating', 'Running', 'Paused', 'Stopping'];
const STATS_EVERY_MS = 5000;
const STATS_AT_MOST = 50;

function cpuText(sample?: StatsView): string {
  return sample ? `${sample.cpu_percent.toFixed(1)}%` : '–';
}

function memoryText(sample?: StatsView): string {
  return sample ? `${bytes(sample.memory_used_bytes)} / ${bytes(sample.memory_limit_bytes)}` : '–';
}

function labelPairs(text: string): string[] {
  return text
    .split(',')
    .map((pair) => pair.trim())
    .filter((pair) => pair.includes('='));
}

export async function sandboxesPage(root: HTMLElement, context: Context): Promise<void> {
  const { me, signal } = context;
  const params = new URLSearchParams(location.search);
  const labelInput = h('input', { name: 'label', placeholder: 'key=value, …', value: params.get('label') ?? '' });
  const ownerInput = h('input', { name: 'owner', placeholder: 'any owner', value: params.get('owner') ?? '' });
  const statusSelect = h(
    'select',
    { name: 'status' },
    h('option', { value: '' }, 'any live status'),
    STATUSES.map((status) => h('option', { value: status, selected: params.get('status') === status }, status)),
  );
  const live = h('span', { class: 'live', title: 'Following the events stream' }, 'connecting…');
  const problem = h('div', {});
  const tbody = h('tbody', {});
  const count = h('span', { class: 'muted' });
  const filters = h(
    'form',
    { class: 'filters' },
    h('label', {}, 'Label ', labelInput),
    me.role === 'admin' ? h('label', {}, 'Owner ', ownerInput) : null,
    h('label', {}, 'Status ', statusSelect),
    h('button', { type: 'submit' }, 'Filter'),
    live,
  );
  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (labelInput.value.trim()) next.set('label', labelInput.value.trim());
    if (ownerInput.value.trim()) next.set('owner', ownerInput.value.trim());
    if (statusSelect.value) next.set('status', statusSelect.value);
    context.navigate(`/ui/sandboxes${next.size ? `?${next}` : ''}`);
  });
  clear(
    root,
    h('h1', {}, 'Sandboxes ', count),
    filters,
    problem,
    h(
      'table',
      { class: 'sandboxes' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['Id', 'Image / template', 'Owner', 'Status', 'Age', 'Expires in', 'CPU', 'Memory', ''].map((name) =>
            h('th', {}, name),
          ),
        ),
      ),
      tbody,
    ),
  );

  const labels = labelPairs(params.get('label') ?? '');
  const owner = me.role === 'admin' ? (params.get('owner') ?? '') : '';
  const status = params.get('status') ?? '';
  const rows = new Map<string, SandboxView>();
  const stats = new Map<string, StatsView>();
  // A stopping sandbox is on its way out (deleted or expired): shown only when asked for, so
  // a deleted row does not come back for the seconds its container takes to go.
  const wanted = (sandbox: SandboxView) =>
    !ENDED.has(sandbox.status) && (status ? sandbox.status === status : sandbox.status !== 'Stopping');

  let drawQueued = false;
  const draw = () => {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => {
      drawQueued = false;
      const sorted = [...rows.values()].sort((a, b) => b.created_at.localeCompare(a.created_at));
      count.textContent = `(${sorted.length})`;
      clear(
        tbody,
        sorted.length ? sorted.map(row) : h('tr', {}, h('td', { colspan: 9, class: 'muted' }, 'No sandboxes.')),
      );
    });
  };

  const act = async (what: () => Promise<unknown>) => {
    problem.replaceChildren();
    try {
      await what();
    } catch (error) {
      problem.appendChild(errorBox(error));
    }
  };

  const row = (sandbox: SandboxView): HTMLElement => {
    const now = Date.now();
    const sample = stats.get(sandbox.id);
    const base = `/v1/sandboxes/${encodeURIComponent(sandbox.id)}`;
    const actions = h(
      'td',
      { class: 'actions' },
      h(
        'button',
        {
          title: 'Set a new time to live',
          onclick: () =>
            act(async () => {
              const ttl = prompt('New time to live, from now', '30m');
              if (ttl) await refresh(sandbox.id, post(`${base}/ttl`, { ttl }));
            }),
        },
        'Renew',
      ),
      sandbox.status === 'Paused'
        ? h('button', { onclick: () => act(() => refresh(sandbox.id, post(`${base}/resume`, {}))) }, 'Resume')
        : h(
            'button',
            { disabled: sandbox.status !== 'Running', onclick: () => act(() => refresh(sandbox.id, post(`${base}/pause`, {}))) },
            'Pause',
          ),
      h(
        'button',
        {
          class: 'danger',
          onclick: () =>
            act(async () => {
              if (!confirm(`Delete sandbox ${sandbox.id}?`)) return;
              await call(base, { method: 'DELETE' });
              rows.delete(sandbox.id);
              draw();
            }),
        },
        'Delete',
      ),
    );
    return h(
      'tr',
      { 'data-id': sandbox.id },
      h('td', {}, h('a', { href: `/ui/sandboxes/${encodeURIComponent(sandbox.id)}`, 'data-link': true, class: 'mono' }, sandbox.id)),
      h('td', {}, sandbox.template ? h('span', {}, sandbox.template, h('br'), h('small', { class: 'muted' }, sandbox.image)) : sandbox.image),
      h('td', {}, sandbox.owner),
      h('td', { class: 'status-cell' }, statusBadge(sandbox.status), sandbox.status_reason ? h('small', { class: 'muted' }, ` ${sandbox.status_reason}`) : null),
      h('td', { 'data-since': sandbox.created_at }, span(now - Date.parse(sandbox.created_at))),
      h('td', { 'data-until': sandbox.expires_at }, span(Date.parse(sandbox.expires_at) - now)),
      h('td', { class: 'num cpu' }, cpuText(sample)),
      h('td', { class: 'num memory' }, memoryText(sample)),
      actions,
    );
  };

  /** Re-reads one sandbox (after `pending`, an action on it) and draws it, or drops it. */
  const refresh = async (id: string, pending?: Promise<unknown>) => {
    if (pending) await pending;
    try {
      const sandbox = await json<SandboxView>(`/v1/sandboxes/${encodeURIComponent(id)}`, { signal });
      const matchesLabels = labels.every((pair) => {
        const [k, ...v] = pair.split('=');
        return sandbox.labels[k] === v.join('=');
      });
      if (wanted(sandbox) && matchesLabels && (!owner || sandbox.owner === owner)) rows.set(id, sandbox);
      else rows.delete(id);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) rows.delete(id);
      else throw error;
    }
    draw();
  };

  const list = async () => {
    const query = new URLSearchParams();
    labels.forEach((pair) => query.append('label', pair));
    if (owner) query.set('owner', owner);
    if (status) query.set('status', status);
    query.set('limit', '1000');
    const fresh = new Map<string, SandboxView>();
    let cursor: string | null | undefined;
    do {
      if (cursor) query.set('cursor', cursor);
      const page = await json<{ items: SandboxView[]; next_cursor?: string | null }>(`/v1/sandboxes?${query}`, { signal });
      page.items.filter(wanted).forEach((sandbox) => fresh.set(sandbox.id, sandbox));
      cursor = page.next_cursor;
    } while (cursor);
    rows.clear();
    fresh.forEach((sandbox, id) => rows.set(id, sandbox));
    draw();
  };

  const onEvent = (event: SandboxEvent) => {
    if (event.type === 'sandbox.deleted' || event.type === 'sandbox.expired' || ENDED.has(event.status)) {
      rows.delete(event.sandbox_id);
      stats.delete(event.sandbox_id);
      draw();
      return;
    }
    const known = rows.get(event.sandbox_id);
    if (known && event.type !== 'sandbox.created' && event.type !== 'sandbox.claimed') {
      // The event carries what the table shows of a change; no need to read the sandbox again.
      const patched = { ...known, status: event.status, status_reason: event.reason, expires_at: event.expires_at, labels: event.labels };
      if (wanted(patched)) rows.set(event.sandbox_id, patched);
      else rows.delete(event.sandbox_id);
      draw();
      return;
    }
    refresh(event.sandbox_id).catch(() => {});
  };

  const eventQuery = new URLSearchParams();
  labels.forEach((pair) => eventQuery.append('label', pair));
  if (owner) eventQuery.set('owner', owner);
  followEvents(eventQuery, signal, onEvent, (connected) => {
    live.textContent = connected ? '● live' : 'reconnecting…';
    live.classList.toggle('on', connected);
    if (connected) list().catch((error) => problem.replaceChildren(errorBox(error)));
  });

  const sampleStats = async () => {
    const running = [...rows.values()].filter((sandbox) => sandbox.status === 'Running').slice(0, STATS_AT_MOST);
    await Promise.all(
      running.map(async (sandbox) => {
        try {
          stats.set(sandbox.id, await json<StatsView>(`/v1/sandboxes/${encodeURIComponent(sandbox.id)}/stats`, { signal }));
        } catch {
          stats.delete(sandbox.id);
        }
      }),
    );
    paintStats();
  };
  // Only the cells that change with time, in place: rebuilding rows would drop a click under way.
  const tick = () => {
    const now = Date.now();
    tbody.querySelectorAll<HTMLElement>('[data-since]').forEach((cell) => {
      cell.textContent = span(now - Date.parse(cell.dataset.since!));
    });
    tbody.querySelectorAll<HTMLElement>('[data-until]').forEach((cell) => {
      cell.textContent = span(Date.parse(cell.dataset.until!) - now);
    });
  };
  const paintStats = () => {
    tbody.querySelectorAll<HTMLElement>('tr[data-id]').forEach((tr) => {
      const sample = stats.get(tr.dataset.id!);
      tr.querySelector('.cpu')!.textContent = cpuText(sample);
      tr.querySelector('.memory')!.textContent = memoryText(sample);
    });
  };
  const ticker = setInterval(tick, 1000);
  const sampler = setInterval(() => void sampleStats(), STATS_EVERY_MS);
  setTimeout(() => void sampleStats(), 500);
  signal.addEventListener('abort', () => {
    clearInterval(ticker);
    clearInterval(sampler);
  });
}
