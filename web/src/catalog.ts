// The platform's pages: templates and their warm pools (with a build whose log streams),
// env-services, owners and quotas (admin), and the server's health.

import { call, json, readLines } from './api';
import { clear, errorBox, h, span, statusBadge } from './dom';
import type { Context } from './main';

const REFRESH_MS = 3000;

interface TemplateView {
  name: string;
  tag: string;
  image: string;
  ttl: string;
  error?: string | null;
  pool?: { min_ready: number } | null;
  updated_at: string;
}

interface PoolView {
  template: string;
  ready: number;
  claimed: number;
  refilling: number;
  min_ready: number;
  max_idle_age: string;
  error?: string | null;
}

/** Calls `draw` now and every few seconds until the page goes. */
function every(signal: AbortSignal, draw: () => Promise<void>): void {
  let timer = 0;
  const run = async () => {
    await draw();
    if (!signal.aborted) timer = window.setTimeout(run, REFRESH_MS);
  };
  signal.addEventListener('abort', () => clearTimeout(timer));
  void run();
}

function table(headers: string[], rows: Node[], empty: string): HTMLElement {
  return h(
    'table',
    {},
    h('thead', {}, h('tr', {}, headers.map((name) => h('th', {}, name)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, empty))),
  );
}

/** A one-file ustar archive: the build context for a Dockerfile typed into the page. */
function tarOf(name: string, text: string): Blob {
  const body = new TextEncoder().encode(text);
  const header = new Uint8Array(512);
  const put = (offset: number, value: string) => header.set(new TextEncoder().encode(value), offset);
  const octal = (value: number, width: number) => value.toString(8).padStart(width - 1, '0') + '\0';
  put(0, name);
  put(100, octal(0o644, 8));
  put(108, octal(0, 8));
  put(116, octal(0, 8));
  put(124, octal(body.length, 12));
  put(136, octal(Math.floor(Date.now() / 1000), 12));
  put(148, '        ');
  put(156, '0');
  put(257, 'ustar\u000000');
  const sum = header.reduce((total, byte) => total + byte, 0);
  put(148, sum.toString(8).padStart(6, '0') + '\0 ');
  const padding = new Uint8Array((512 - (body.length % 512)) % 512);
  return new Blob([header, body, padding, new Uint8Array(1024)], { type: 'application/x-tar' });
}

export function templatesPage(root: HTMLElement, context: Context): void {
  const { me, signal } = context;
  const templates = h('div', {});
  const pools = h('div', {});
  const services = h('div', {});
  const build = h('section', {});
  clear(
    root,
    h('h1', {}, 'Templates and pools'),
    h('section', {}, h('h2', {}, 'Pools'), pools),
    h('section', {}, h('h2', {}, 'Templates'), templates),
    me.role === 'admin' ? build : null,
    h('section', {}, h('h2', {}, 'Env-services'), services),
  );
  let known: TemplateView[] | null = null;
  every(signal, async () => {
    try {
      const [templateList, poolList] = await Promise.all([
        json<{ items: TemplateView[] }>('/v1/templates', { signal }),
        json<{ items: PoolView[] }>('/v1/pools', { signal }),
      ]);
      const fresh = templateList.items.map((t) => `${t.name}:${t.tag}`).join();
      const changed = known === null || fresh !== known.map((t) => `${t.name}:${t.tag}`).join();
      known = templateList.items;
      if (changed) drawBuild();
      clear(
        pools,
        table(
          ['Template', 'Ready', 'Claimed', 'Refilling', 'Min ready', 'Max idle age', 'Problem'],
          poolList.items.map((pool) =>
            h(
              'tr',
              { 'data-pool': pool.template },
              h('td', { class: 'mono' }, pool.template),
              h('td', { class: 'num' }, String(pool.ready)),
              h('td', { class: 'num' }, String(pool.claimed)),
              h('td', { class: 'num' }, String(pool.refilling)),
              h('td', { class: 'num' }, String(pool.min_ready)),
              h('td', {}, pool.max_idle_age),
              h('td', { class: 'error' }, pool.error ?? ''),
            ),
          ),
          'No template has a pool.',
        ),
      );
      clear(
        templates,
        table(
          ['Template', 'Image', 'TTL', 'Pool', 'Updated', 'Problem'],
          templateList.items.map((t) =>
            h(
              'tr',
              { 'data-template': `${t.name}:${t.tag}` },
              h('td', { class: 'mono' }, `${t.name}:${t.tag}`),
              h('td', { class: 'mono' }, t.image),
              h('td', {}, t.ttl),
              h('td', {}, t.pool ? `min ${t.pool.min_ready}` : '–'),
              h('td', {}, `${span(Date.now() - Date.parse(t.updated_at))} ago`),
              h('td', { class: 'error' }, t.error ?? ''),
            ),
          ),
          'No templates.',
        ),
      );
      const answer = await json<{ data?: Record<string, unknown>[] }>('/env-service/*/list', { signal });
      const items = answer.data ?? [];
      clear(
        services,
        table(
          ['Id', 'Env', 'Status', 'Replicas', 'Service URL', 'Owner'],
          items.map((service) => {
            const env = service.env as { name?: string; version?: string } | null;
            return h(
              'tr',
              {},
              h('td', { class: 'mono' }, String(service.id)),
              h('td', {}, env ? `${env.name}@${env.version}` : ''),
              h('td', {}, String(service.status)),
              h('td', { class: 'num' }, `${service.available_replicas}/${service.replicas}`),
              h('td', { class: 'mono' }, String(service.service_url ?? '')),
              h('td', {}, String(service.owner)),
            );
          }),
          'No env-services.',
        ),
      );
    } catch (error) {
      if (!signal.aborted) clear(pools, errorBox(error));
    }
  });

  const drawBuild = () => {
    const templates = known ?? [];
    const select = h('select', { name: 'template' }, templates.map((t) => h('option', { value: `${t.name}:${t.tag}` }, `${t.name}:${t.tag}`)));
    const dockerfile = h('textarea', { name: 'dockerfile', rows: 5, cols: 60, class: 'mono' });
    dockerfile.value = 'FROM berth-test/busybox:latest\nRUN echo built by the berth dashboard > /built.txt\n';
    const log = h('pre', { class: 'logs build-log' });
    const button = h('button', { type: 'submit', disabled: templates.length === 0 }, 'Build');
    const form = h('form', { class: 'build' }, h('label', {}, 'Template ', select), dockerfile, button);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      button.disabled = true;
      log.textContent = '';
      try {
        const response = await call(`/v1/templates/${encodeURIComponent(select.value)}/build`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/x-tar' },
          body: tarOf('Dockerfile', dockerfile.value),
          signal,
        });
        await readLines(response, (line) => {
          if (!line.trim()) return;
          const item = JSON.parse(line);
          if (item.log !== undefined) log.textContent += `${item.log}\n`;
          else if (item.done) log.textContent += `✔ built ${item.done.image} (${item.done.image_id})\n`;
          else if (item.error) log.textContent += `✘ ${item.error}\n`;
          log.scrollTop = log.scrollHeight;
        });
      } catch (error) {
        log.textContent += `✘ ${error instanceof Error ? error.message : String(error)}\n`;
      } finally {
        button.disabled = false;
      }
    });
    clear(build, h('h2', {}, 'Build a template\u2019s image'), form, log);
  };
}

interface Amounts {
  cpu?: string | null;
  memory?: string | null;
  sandboxes?: number | null;
}

export function ownersPage(root: HTMLElement, context: Context): void {
  const { me, signal } = context;
  if (me.role !== 'admin') {
    clear(root, h('h1', {}, 'Owners and quotas'), h('p', {}, 'This page needs an admin key.'));
    return;
  }
  const quotas = h('div', {});
  const keys = h('div', {});
  clear(root, h('h1', {}, 'Owners and quotas'), h('section', {}, h('h2', {}, 'Quotas'), quotas), h('section', {}, h('h2', {}, 'Keys'), keys));
  const amount = (used: number | string | null | undefined, limit: number | string | null | undefined) =>
    `${used ?? 0} / ${limit ?? '∞'}`;
  every(signal, async () => {
    try {
      const [quotaList, keyList] = await Promise.all([
        json<{ items: { owner: string; default: boolean; limits: Amounts; used: Amounts }[] }>('/v1/quotas', { signal }),
        json<{ items: { id: string; owner: string; role: string; created_at: string; last_used_at?: string | null; expires_at?: string | null; revoked_at?: string | null }[] }>('/v1/keys', { signal }),
      ]);
      clear(
        quotas,
        table(
          ['Owner', 'Sandboxes', 'CPU', 'Memory', 'Limits'],
          quotaList.items.map((quota) =>
            h(
              'tr',
              {},
              h('td', {}, quota.owner),
              h('td', { class: 'num' }, amount(quota.used.sandboxes, quota.limits.sandboxes)),
              h('td', { class: 'num' }, amount(quota.used.cpu, quota.limits.cpu)),
              h('td', { class: 'num' }, amount(quota.used.memory, quota.limits.memory)),
              h('td', { class: 'muted' }, quota.default ? 'server default' : 'own'),
            ),
          ),
          'No owners yet.',
        ),
      );
      clear(
        keys,
        table(
          ['Key', 'Owner', 'Role', 'Created', 'Last used', 'State'],
          keyList.items.map((k) =>
            h(
              'tr',
              {},
              h('td', { class: 'mono' }, k.id),
              h('td', {}, k.owner),
              h('td', {}, k.role),
              h('td', {}, new Date(k.created_at).toLocaleString()),
              h('td', {}, k.last_used_at ? `${span(Date.now() - Date.parse(k.last_used_at))} ago` : 'never'),
              h('td', {}, k.revoked_at ? 'revoked' : k.expires_at && Date.parse(k.expires_at) < Date.now() ? 'expired' : 'active'),
            ),
          ),
          'No keys.',
        ),
      );
    } catch (error) {
      if (!signal.aborted) clear(quotas, errorBox(error));
    }
  });
}

interface Health {
  status: string;
  version: string;
  uptime_seconds: number;
  timestamp: string;
  leader?: boolean;
  store?: string;
  checks: { store: string; engines: Record<string, string> };
  confinement?: Record<string, Record<string, unknown>>;
}

export function healthPage(root: HTMLElement, context: Context): void {
  const { signal } = context;
  const box = h('div', {});
  clear(root, h('h1', {}, 'Server health'), box);
  every(signal, async () => {
    try {
      const health = await json<Health>('/health', { signal });
      const ready = await call('/readyz', { signal }).then(
        () => 'ready',
        () => 'not ready',
      );
      clear(
        box,
        h(
          'dl',
          { class: 'spec' },
          h('dt', {}, 'Status'),
          h('dd', {}, statusBadge(health.status), ` (${ready})`),
          h('dt', {}, 'Version'),
          h('dd', {}, health.version),
          h('dt', {}, 'Up for'),
          h('dd', {}, span(health.uptime_seconds * 1000)),
          health.leader !== undefined ? [h('dt', {}, 'Leader'), h('dd', {}, health.leader ? 'yes (runs the reconciler, expiries and pools)' : 'no')] : null,
          h('dt', {}, 'Store'),
          h('dd', {}, `${health.store ?? ''} — ${health.checks.store}`),
        ),
        h('h2', {}, 'Engines'),
        table(
          ['Engine', 'Check', 'Confinement'],
          Object.entries(health.checks.engines).map(([name, check]) =>
            h(
              'tr',
              {},
              h('td', { class: 'mono' }, name),
              h('td', {}, check === 'ok' ? statusBadge('ok') : h('span', { class: 'error' }, check)),
              h(
                'td',
                { class: 'muted' },
                health.confinement?.[name]
                  ? Object.entries(health.confinement[name])
                      .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`)
                      .join(', ')
                  : '',
              ),
            ),
          ),
          'No engines.',
        ),
      );
    } catch (error) {
      if (!signal.aborted) clear(box, errorBox(error));
    }
  });
}
