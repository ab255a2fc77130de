// The dashboard's shell: the login page, the navigation and a small router over `/ui/…` paths
// (the server answers the page for any of them, so a reload or a shared link lands here too).

import './style.css';
import { ApiError, json, key, setKey, type WhoAmI } from './api';
import { clear, errorBox, h } from './dom';
import { sandboxesPage } from './sandboxes';
import { sandboxPage } from './sandbox';
import { healthPage, ownersPage, templatesPage } from './catalog';

export interface Context {
  me: WhoAmI;
  signal: AbortSignal;
  navigate: (path: string) => void;
}

type Page = (root: HTMLElement, context: Context, ...params: string[]) => void | Promise<void>;

const ROUTES: [RegExp, Page, string][] = [
  [/^\/ui\/?$/, sandboxesPage, 'sandboxes'],
  [/^\/ui\/sandboxes\/?$/, sandboxesPage, 'sandboxes'],
  [/^\/ui\/sandboxes\/([^/]+)$/, sandboxPage, 'sandboxes'],
  [/^\/ui\/templates\/?$/, templatesPage, 'templates'],
  [/^\/ui\/health\/?$/, healthPage, 'health'],
  [/^\/ui\/owners\/?$/, ownersPage, 'owners'],
];

const app = document.getElementById('app')!;
let current: AbortController | null = null;
let me: WhoAmI | null = null;

function navigate(path: string): void {
  history.pushState(null, '', path);
  void render();
}

function loginPage(message?: string): void {
  const input = h('input', {
    type: 'password',
    name: 'key',
    id: 'key',
    autocomplete: 'off',
    placeholder: 'berth_…',
    required: true,
  });
  const status = h('p', { class: 'error', role: 'alert' }, message ?? '');
  const form = h(
    'form',
    { class: 'login' },
    h('h1', {}, 'berth'),
    h('label', { for: 'key' }, 'API key'),
    input,
    h('button', { type: 'submit' }, 'Sign in'),
    status,
    h('p', { class: 'hint' }, 'The key stays in this tab (session storage) and is sent only to this server.'),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    try {
      me = await json<WhoAmI>('/v1/whoami');
      const next = location.pathname.startsWith('/ui/login') ? '/ui/sandboxes' : location.pathname;
      navigate(next);
    } catch (error) {
      setKey(null);
      status.textContent = error instanceof ApiError && error.status === 401 ? 'That key is not valid.' : String(error);
    }
  });
  clear(app, form);
  input.focus();
}

function shell(section: string): HTMLElement {
  const link = (path: string, name: string, label: string) =>
    h('a', { href: path, 'data-link': true, class: section === name ? 'active' : null }, label);
  const main = h('main', {});
  const nav = h(
    'nav',
    {},
    h('span', { class: 'brand' }, 'berth'),
    link('/ui/sandboxes', 'sandboxes', 'Sandboxes'),
    link('/ui/templates', 'templates', 'Templates & pools'),
    me?.role === 'admin' ? link('/ui/owners', 'owners', 'Owners & quotas') : null,
    link('/ui/health', 'health', 'Health'),
    h('span', { class: 'spacer' }),
    h('span', { class: 'who' }, `${me?.owner} (${me?.role})`),
    h(
      'button',
      {
        class: 'link',
        onclick: () => {
          setKey(null);
          me = null;
          navigate('/ui/login');
        },
      },
      'Sign out',
    ),
  );
  clear(app, nav, main);
  return main;
}

async function render(): Promise<void> {
  current?.abort();
  current = new AbortController();
  if (!key()) return loginPage();
  if (!me) {
    try {
      me = await json<WhoAmI>('/v1/whoami');
    } catch (error) {
      return loginPage(error instanceof ApiError && error.status === 401 ? 'Your key is no longer valid.' : String(error));
    }
  }
  const path = location.pathname;
  if (path.startsWith('/ui/login')) return navigate('/ui/sandboxes');
  for (const [pattern, page, section] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    const main = shell(section);
    try {
      await page(main, { me, signal: current.signal, navigate }, ...match.slice(1).map(decodeURIComponent));
    } catch (error) {
      main.appendChild(errorBox(error));
    }
    return;
  }
  shell('').appendChild(h('p', {}, 'No such page. ', h('a', { href: '/ui/sandboxes', 'data-link': true }, 'Sandboxes')));
}

document.addEventListener('click', (event) => {
  const target = (event.target as Element).closest('a[data-link]');
  if (!target || event.ctrlKey || event.metaKey || event.shiftKey || (event as MouseEvent).button !== 0) return;
  event.preventDefault();
  navigate(target.getAttribute('href')!);
});
window.addEventListener('popstate', () => void render());
window.addEventListener('berth:logout', () => {
  me = null;
  current?.abort();
  loginPage('Your key is no longer valid.');
});

void render();
