// The expert's dashboard: the live waiting list (admit → the call page) and today's
// calls. The socket only says *that* something changed (no personal data travels
// over it); the page then fetches the lists from the API, where each read is logged.
import { formatDuration, wsUrl } from './call.js';

// The start of the expert's own day, with its UTC offset (calls "today" are local).
function localMidnight() {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  const offset = -d.getTimezoneOffset();
  const sign = offset >= 0 ? '+' : '-';
  const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T00:00:00${sign}${pad(offset / 60)}:${pad(offset % 60)}`;
}

const main = document.querySelector('main');
const $ = (id) => document.getElementById(id);
const { slug, csrf } = main.dataset;
const apiBase = `/api/v1/orgs/${encodeURIComponent(slug)}`;

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, method = 'GET') {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') headers['x-csrf-token'] = csrf;
  const response = await fetch(apiBase + path, { method, headers, credentials: 'same-origin' });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    if (response.status === 401) throw new ApiError(401, 'Your session has ended. Please log in again.');
    throw new ApiError(response.status, (body && (body.message || body.detail)) || `The server answered ${response.status}.`);
  }
  return body;
}

function showError(message) {
  const box = $('dashboard-error');
  box.replaceChildren();
  if (!message) return;
  box.append(message);
  if (/log in again/.test(message)) {
    const link = document.createElement('a');
    link.href = '/login';
    link.textContent = ' Log in';
    box.append(link);
  }
}

const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};

const clock = (iso, seconds = false) => new Date(iso).toLocaleTimeString([], {
  hour: '2-digit', minute: '2-digit', ...(seconds ? { second: '2-digit' } : {}), hour12: false,
});

function waitedText(iso) {
  const minutes = Math.floor((Date.now() - new Date(iso).getTime()) / 60000);
  return minutes < 1 ? 'just now' : `waiting ${minutes} min`;
}

// --- waiting list ---------------------------------------------------------------------------

function renderWaiting(visits) {
  const items = visits.map((visit) => {
    const admit = el('button', { type: 'button', textContent: 'Admit', 'aria-label': `Admit ${visit.name}` });
    admit.addEventListener('click', () => admitVisit(visit, admit));
    const details = el('div', { className: 'muted small' },
      `Arrived ${clock(visit.arrived_at)} · `,
      el('span', { dataset: { waitingSince: visit.arrived_at } }, waitedText(visit.arrived_at)),
      ` · room ${visit.room}`);
    // The visitor's page closed or lost its network: they may come back (listed as left after 10 min).
    const away = visit.away_since
      ? el('div', { className: 'small away', dataset: { awaySince: visit.away_since } },
        `Left the page at ${clock(visit.away_since)}; may come back`)
      : null;
    const phone = visit.phone
      ? el('div', { className: 'small' }, 'Phone: ', el('a', { href: `tel:${visit.phone}` }, visit.phone))
      : null;
    return el('li', { dataset: { visitId: visit.id } },
      el('div', { className: 'who' }, el('strong', { className: 'name' }, visit.name), details, phone, away),
      admit);
  });
  $('waiting').replaceChildren(...items);
  $('waiting-empty').hidden = items.length > 0;
  main.dataset.waiting = String(items.length);
}

async function admitVisit(visit, button) {
  button.disabled = true;
  button.textContent = 'Admitting…';
  try {
    const call = await api(`/visits/${encodeURIComponent(visit.id)}/admit`, 'POST');
    location.assign(`/${encodeURIComponent(slug)}/calls/${encodeURIComponent(call.id)}`);
  } catch (err) {
    showError(`Could not admit ${visit.name}: ${err.message}`);
    button.disabled = false;
    button.textContent = 'Admit';
    refresh('waiting');
  }
}

// --- calls today ----------------------------------------------------------------------------

function renderCalls(calls) {
  const rows = calls.map((call) => {
    const ongoing = !call.ended_at;
    const end = ongoing
      ? el('td', {}, el('a', { href: `/${encodeURIComponent(slug)}/calls/${encodeURIComponent(call.id)}` }, 'in progress'))
      : el('td', {}, clock(call.ended_at, true));
    const duration = ongoing
      ? el('td', { dataset: { since: call.started_at } }, formatDuration((Date.now() - new Date(call.started_at)) / 1000))
      : el('td', { className: 'duration' }, formatDuration(call.duration_seconds));
    return el('tr', { dataset: { callId: call.id } }, el('td', {}, clock(call.started_at, true)), end, duration,
      el('td', {}, call.room));
  });
  $('calls').tBodies[0].replaceChildren(...rows);
  $('calls-empty').hidden = rows.length > 0;
  main.dataset.calls = String(rows.length);
}

// --- rooms ----------------------------------------------------------------------------------

function renderRooms(rooms) {
  const items = rooms.map((room) => {
    const url = `${location.origin}${room.join_path}`;
    const copy = el('button', { type: 'button', className: 'secondary', textContent: 'Copy link' });
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(url);
        copy.textContent = 'Copied';
      } catch {
        copy.textContent = 'Select the link to copy it';
      }
      setTimeout(() => { copy.textContent = 'Copy link'; }, 2500);
    });
    return el('li', {}, el('div', { className: 'who' }, el('strong', {}, room.title), el('br'),
      el('a', { href: room.join_path }, el('code', {}, url))), copy);
  });
  $('rooms').replaceChildren(...items);
  $('rooms-empty').hidden = items.length > 0;
}

// --- refreshing -----------------------------------------------------------------------------

const loaders = {
  waiting: async () => renderWaiting(await api('/visits/waiting')),
  calls: async () => renderCalls(await api(`/calls/today?since=${encodeURIComponent(localMidnight())}`)),
};
const running = {};
const again = {};

async function refresh(which) {
  if (running[which]) {
    again[which] = true; // coalesce bursts of events into one more fetch
    return;
  }
  running[which] = true;
  try {
    do {
      again[which] = false;
      await loaders[which]();
    } while (again[which]);
    showError('');
  } catch (err) {
    showError(err.message);
  } finally {
    running[which] = false;
  }
}

function refreshAll() {
  refresh('waiting');
  refresh('calls');
}

// --- live events ----------------------------------------------------------------------------

let retries = 0;
let pollTimer = null;
let everReady = false;

function setLive(on) {
  const live = $('live');
  live.textContent = on ? 'live' : 'reconnecting…';
  live.className = `live ${on ? 'on' : 'off'}`;
  main.dataset.live = String(on);
  if (on && pollTimer) {
    clearInterval(pollTimer);
    pollTimer = null;
  } else if (!on && !pollTimer) {
    pollTimer = setInterval(refreshAll, 15000); // keep the lists fresh without events
  }
}

function listen() {
  const ws = new WebSocket(wsUrl(`/${encodeURIComponent(slug)}/portal/ws`));
  ws.addEventListener('message', (event) => {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    if (msg.type === 'ready') {
      retries = 0;
      everReady = true;
      setLive(true);
      refreshAll();
    } else if (msg.type === 'waiting-changed') {
      refresh('waiting');
    } else if (msg.type === 'calls-changed') {
      refresh('calls');
    }
  });
  ws.addEventListener('close', () => {
    if (!everReady) {
      everReady = true; // no live events yet: show the lists anyway, then poll
      refreshAll();
    }
    setLive(false);
    const delay = Math.min(30000, 1000 * 2 ** retries++);
    setTimeout(listen, delay);
  });
}

setInterval(() => {
  for (const node of document.querySelectorAll('[data-waiting-since]')) {
    node.textContent = waitedText(node.dataset.waitingSince);
  }
  for (const node of document.querySelectorAll('[data-since]')) {
    node.textContent = formatDuration((Date.now() - new Date(node.dataset.since)) / 1000);
  }
}, 1000);

// The lists load on the socket's "ready" (and again after each reconnect, to catch up).
api('/rooms').then(renderRooms).catch((err) => showError(err.message));
listen();
