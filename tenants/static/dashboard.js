// The expert's dashboard: the live waiting list (admit → the call page) and today's
// calls. The socket only says *that* something changed (no personal data travels
// over it); the page then fetches the lists from the API, where each read is logged.
//
// When someone arrives: the tab's title says so until the expert comes back to the
// tab, a short sound plays if the expert switched it on (made here with the Web Audio
// API; the choice is kept in this browser), and a desktop notification that names no
// one appears if the expert allowed notifications.
import { formatDuration, wsUrl } from './call.js';
import { formatTime, t } from '/static/i18n.js';

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
const { slug, csrf, role } = main.dataset;
const mayRefund = role === 'owner' || role === 'admin';
const apiBase = `/api/v1/orgs/${encodeURIComponent(slug)}`;
const roomTitles = new Map(); // room slug → title, from the rooms list

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, method = 'GET') {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') headers['x-csrf-token'] = csrf;
  let response;
  try {
    response = await fetch(apiBase + path, { method, headers, credentials: 'same-origin' });
  } catch {
    throw new ApiError(0, t('The service cannot be reached. Check your connection; the page keeps trying.'));
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    if (response.status === 401) throw new ApiError(401, t('Your session has ended. Please log in again.'));
    if (response.status === 403) throw new ApiError(403, t('Your account may not do this.'));
    throw new ApiError(response.status, t('Something went wrong (error %(status)s). Please try again.', { status: response.status }));
  }
  return body;
}

function showError(message, loginLink = false) {
  const box = $('dashboard-error');
  box.replaceChildren();
  if (!message) return;
  box.append(message);
  if (loginLink) {
    box.append(' ');
    box.append(el('a', { href: '/login' }, t('Log in')));
  }
}

function showApiError(err) {
  showError(err.message, err.status === 401);
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

const clock = (iso, seconds = false) => formatTime(new Date(iso), {
  hour: '2-digit', minute: '2-digit', ...(seconds ? { second: '2-digit' } : {}),
});

const roomName = (room) => roomTitles.get(room) || room;

function waitedText(iso) {
  const minutes = Math.floor((Date.now() - new Date(iso).getTime()) / 60000);
  return minutes < 1 ? t('just now') : t('waiting %(minutes)s min', { minutes });
}

// The card as people know it: brand and last four digits, never more (P4).
const BRANDS = {
  visa: 'Visa', mastercard: 'Mastercard', amex: 'American Express', discover: 'Discover',
  diners: 'Diners Club', jcb: 'JCB', unionpay: 'UnionPay',
};

function cardText(payment) {
  const key = (payment.card_brand || '').toLowerCase();
  const brand = BRANDS[key] || (key ? key.charAt(0).toUpperCase() + key.slice(1) : t('Card'));
  // Kept on one line (no-break spaces): the brand and its last four digits belong together.
  return payment.card_last4 ? `${brand}\u00a0••••\u00a0${payment.card_last4}` : brand;
}

function paymentText(payment) {
  if (!payment.paid) return t('Not paid');
  if (payment.refunded) return t('Refunded · %(card)s', { card: cardText(payment) });
  return t('Paid · %(card)s', { card: cardText(payment) });
}

// --- arrival alerts -------------------------------------------------------------------------

const baseTitle = document.title;
const SOUND_KEY = 'konsil.arrival-sound'; // a preference of this browser, no personal data
let unseen = 0; // arrivals since the expert last looked at this tab
let audio = null;

function showTitle() {
  if (unseen > 0) {
    const text = unseen === 1
      ? t('(%(count)s) Someone is waiting', { count: unseen })
      : t('(%(count)s) People are waiting', { count: unseen });
    document.title = `${text} · ${baseTitle}`;
  } else {
    document.title = baseTitle;
  }
}

function seen() {
  if (unseen === 0) return;
  unseen = 0;
  showTitle();
}

// The expert is back: on the tab, or using the page.
window.addEventListener('focus', seen);
document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible' && document.hasFocus()) seen(); });
for (const type of ['pointerdown', 'keydown']) {
  document.addEventListener(type, () => {
    seen();
    if (audio && audio.state === 'suspended') audio.resume().then(showAlertStatus).catch(() => {});
  });
}

function soundOn() {
  try {
    return localStorage.getItem(SOUND_KEY) === 'on';
  } catch {
    return false;
  }
}

function audioContext() {
  const AudioCtx = window.AudioContext || window.webkitAudioContext;
  if (!AudioCtx) return null;
  if (!audio) audio = new AudioCtx();
  return audio;
}

/** A short two-note chime, made here (no sound file). */
function chime() {
  const ctx = audioContext();
  if (!ctx || ctx.state !== 'running') return false;
  const start = ctx.currentTime + 0.02;
  for (const [freq, at] of [[784, 0], [1175, 0.16]]) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = 'sine';
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, start + at);
    gain.gain.exponentialRampToValueAtTime(0.18, start + at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + at + 0.35);
    osc.connect(gain);
    gain.connect(ctx.destination);
    osc.start(start + at);
    osc.stop(start + at + 0.4);
  }
  main.dataset.chimes = String(Number(main.dataset.chimes || 0) + 1);
  return true;
}

function notifications() {
  return 'Notification' in window ? Notification.permission : 'unsupported';
}

function showAlertStatus() {
  const permission = notifications();
  $('notify').hidden = permission !== 'default';
  const lines = [];
  if (permission === 'granted') lines.push(t('You get a desktop notification when someone arrives.'));
  if (permission === 'denied') lines.push(t('Desktop notifications are blocked in this browser\'s settings.'));
  if (soundOn() && audio && audio.state === 'suspended') {
    lines.push(t('The sound plays once you have clicked anywhere on this page.'));
  }
  $('alerts-status').textContent = lines.join(' ');
}

function setUpAlerts() {
  const toggle = $('sound-toggle');
  toggle.checked = soundOn();
  if (toggle.checked) audioContext(); // may wait for a first click (the browser's rule)
  toggle.addEventListener('change', () => {
    try {
      localStorage.setItem(SOUND_KEY, toggle.checked ? 'on' : 'off');
    } catch {
      /* storage blocked: the choice lasts for this page */
    }
    if (toggle.checked) {
      const ctx = audioContext();
      if (ctx) ctx.resume().then(() => { chime(); showAlertStatus(); }).catch(() => {});
    }
    showAlertStatus();
  });
  $('notify').addEventListener('click', async () => {
    try {
      await Notification.requestPermission();
    } catch {
      /* an old browser: nothing more to do */
    }
    showAlertStatus();
  });
  showAlertStatus();
}

function notify(visits) {
  if (notifications() !== 'granted') return;
  if (document.visibilityState === 'visible' && document.hasFocus()) return;
  const room = roomName(visits[0].room);
  try {
    const note = new Notification(t('Someone is waiting in %(room)s', { room }), {
      body: t('Open the dashboard to let them in.'),
      tag: 'konsil-arrival',
      icon: '/static/favicon.svg',
    });
    note.addEventListener('click', () => {
      window.focus();
      note.close();
    });
  } catch {
    /* some browsers show notifications only from a service worker: the title and sound remain */
  }
}

function arrived(visits) {
  unseen += visits.length;
  showTitle();
  if (soundOn()) chime();
  notify(visits);
}

// --- waiting list ---------------------------------------------------------------------------

let waitingIds = null; // who was waiting at the last look (null before the first)

function renderWaiting(visits) {
  const items = visits.map((visit) => {
    const admit = el('button', { type: 'button', textContent: t('Admit'), 'aria-label': t('Admit %(name)s', { name: visit.name }) });
    admit.addEventListener('click', () => admitVisit(visit, admit));
    const details = el('div', { className: 'muted small' },
      t('Arrived %(time)s', { time: clock(visit.arrived_at) }), ' · ',
      el('span', { dataset: { waitingSince: visit.arrived_at } }, waitedText(visit.arrived_at)),
      ' · ', roomName(visit.room));
    // The visitor's page closed or lost its network: they may come back (listed as left after 10 min).
    const away = visit.away_since
      ? el('div', { className: 'small away', dataset: { awaySince: visit.away_since } },
        t('Left the page at %(time)s; may come back', { time: clock(visit.away_since) }))
      : null;
    const phone = visit.phone
      ? el('div', { className: 'small' }, t('Phone:'), ' ',
        el('a', { href: `tel:${visit.phone}` }, visit.phone_display || visit.phone))
      : null;
    const payment = visit.payment
      ? el('div', { className: `small payment ${visit.payment.paid ? 'paid' : 'unpaid'}` }, paymentText(visit.payment))
      : null;
    const identity = visit.identity ? identityLine(visit) : null;
    return el('li', { dataset: { visitId: visit.id } },
      el('div', { className: 'who' }, el('strong', { className: 'name' }, visit.name), details, identity, payment, phone, away),
      admit);
  });
  $('waiting').replaceChildren(...items);
  $('waiting-empty').hidden = items.length > 0;
  main.dataset.waiting = String(items.length);

  const now = new Set(visits.map((visit) => visit.id));
  if (waitingIds !== null) {
    const fresh = visits.filter((visit) => !waitingIds.has(visit.id));
    if (fresh.length > 0) arrived(fresh);
  }
  waitingIds = now;
  if (unseen > visits.length) {
    unseen = visits.length; // those who left or were let in meanwhile no longer wait
    showTitle();
  }
}

// A visitor who confirmed who they are with a national eID: the eID, the verified name and
// the national ID number masked; "Show number" asks for it in full once (each reveal is
// access-logged as such; the next refresh of the list masks it again).
function identityLine(visit) {
  const { identity } = visit;
  const number = el('span', { className: 'national-id' }, identity.national_id_masked);
  const reveal = el('button', {
    type: 'button', className: 'secondary small', textContent: t('Show number'),
    'aria-label': t('Show the national identity number of %(name)s', { name: identity.verified_name }),
  });
  reveal.addEventListener('click', async () => {
    reveal.disabled = true;
    try {
      const shown = await api(`/visits/${encodeURIComponent(visit.id)}/identity/reveal`, 'POST');
      number.textContent = shown.national_id;
      reveal.replaceWith(el('span', { className: 'muted', role: 'status' }, t('(recorded in the access log)')));
    } catch (err) {
      reveal.disabled = false;
      showApiError(err);
    }
  });
  return el('div', { className: 'small identity', dataset: { eid: identity.eid } },
    t('Identity confirmed with %(eid)s:', { eid: identity.eid_label }), ' ',
    el('strong', {}, identity.verified_name), ' · ', number, ' ', reveal);
}

async function admitVisit(visit, button) {
  button.disabled = true;
  button.textContent = t('Admitting…');
  try {
    const call = await api(`/visits/${encodeURIComponent(visit.id)}/admit`, 'POST');
    location.assign(`/${encodeURIComponent(slug)}/calls/${encodeURIComponent(call.id)}`);
  } catch (err) {
    if (err.status === 503) showError(t('The call cannot start right now. %(name)s keeps waiting; please try again in a minute.', { name: visit.name }));
    else if (err.status === 409 || err.status === 404) showError(t('%(name)s was let in by someone else or left meanwhile.', { name: visit.name }));
    else showApiError(err);
    button.disabled = false;
    button.textContent = t('Admit');
    refresh('waiting');
  }
}

// --- calls today ----------------------------------------------------------------------------

function renderCalls(calls) {
  const rows = calls.map((call) => {
    const ongoing = !call.ended_at;
    const end = ongoing
      ? el('td', {}, el('a', { href: `/${encodeURIComponent(slug)}/calls/${encodeURIComponent(call.id)}` }, t('in progress')))
      : el('td', {}, clock(call.ended_at, true));
    const duration = ongoing
      ? el('td', { dataset: { since: call.started_at } }, formatDuration((Date.now() - new Date(call.started_at)) / 1000))
      : el('td', { className: 'duration' }, formatDuration(call.duration_seconds));
    const visitor = call.visitor_name
      ? el('td', { className: 'visitor' }, call.visitor_name)
      : el('td', { className: 'visitor muted' }, t('(name not available)'));
    return el('tr', { dataset: { callId: call.id } }, visitor, el('td', {}, clock(call.started_at, true)), end, duration,
      el('td', {}, roomName(call.room)), paymentCell(call));
  });
  $('calls').tBodies[0].replaceChildren(...rows);
  $('calls-empty').hidden = rows.length > 0;
  main.dataset.calls = String(rows.length);
}

function paymentCell(call) {
  if (!call.payment) return el('td', { className: 'payment muted' }, '—');
  const cell = el('td', { className: 'payment' }, el('span', {}, paymentText(call.payment)));
  if (mayRefund && call.payment.paid && !call.payment.refunded) {
    const name = call.visitor_name || t('this visitor');
    const button = el('button', {
      type: 'button', className: 'secondary small', textContent: t('Refund'),
      'aria-label': t('Refund the fee of %(name)s', { name }),
    });
    button.addEventListener('click', () => refundPayment(call, name, button));
    cell.append(button);
  }
  return cell;
}

// A refund is an owner's or admin's act: asked once more, then the plain result.
async function refundPayment(call, name, button) {
  if (!window.confirm(t('Give %(name)s the whole fee back? The money goes back to their card.', { name }))) return;
  const status = $('calls-status');
  button.disabled = true;
  status.textContent = t('Refunding…');
  try {
    await api(`/visits/${encodeURIComponent(call.visit_id)}/payment/refund`, 'POST');
    status.textContent = t('Refunded. The money goes back to the card within a few days.');
    refresh('calls');
  } catch (err) {
    if (err.status === 409) status.textContent = t('There is no payment to refund for this visit.');
    else if (err.status === 502) status.textContent = t('The refund was requested; the payment service has not completed it yet. Please look again later.');
    else if (err.status === 503) status.textContent = t('The payment service did not answer. Nothing was refunded; please try again in a minute.');
    else status.textContent = err.message;
    button.disabled = false;
  }
}

// --- rooms ----------------------------------------------------------------------------------

function renderRooms(rooms) {
  roomTitles.clear();
  for (const room of rooms) roomTitles.set(room.slug, room.title);
  const items = rooms.map((room) => {
    const url = `${location.origin}${room.join_path}`;
    const copy = el('button', { type: 'button', className: 'secondary', textContent: t('Copy link'), 'aria-label': `${t('Copy link')}: ${room.title}` });
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(url);
        copy.textContent = t('Copied');
      } catch {
        copy.textContent = t('Select the link to copy it');
      }
      setTimeout(() => { copy.textContent = t('Copy link'); }, 2500);
    });
    const invite = el('button', { type: 'button', className: 'secondary', textContent: t('Invite a client'), 'aria-expanded': 'false', 'aria-label': `${t('Invite a client')}: ${room.title}` });
    const item = el('li', {}, el('div', { className: 'who' }, el('strong', {}, room.title), el('br'),
      el('a', { href: room.join_path }, el('code', {}, url))), copy, invite);
    invite.addEventListener('click', () => toggleInviteForm(room, item, invite));
    return item;
  });
  $('rooms').replaceChildren(...items);
  $('rooms-empty').hidden = items.length > 0;
}

// --- sending: text alerts and client invitations --------------------------------------------

// Messages for the answers of the messaging API, by its error codes.
const SEND_ERRORS = {
  invalid_phone: () => t('Enter a mobile number that can receive text messages, e.g. +47 412 34 567.'),
  invalid_email: () => t('Enter an e-mail address like name@example.org.'),
  sms_unavailable: (status) => (status === 409
    ? t('This region sends no text messages. Send an e-mail instead.')
    : t('The text message service did not answer, so nothing was sent. Please try again in a few minutes.')),
  mail_unavailable: () => t('The e-mail could not be sent right now, so nothing was sent. Please try again in a few minutes.'),
  email_refused: () => t('The client\'s mail server refused this e-mail address. Check it, or send a text message instead.'),
  unavailable: () => t('Konsil cannot send this right now, so nothing was sent. Please try again in a minute.'),
  too_many_invitations: () => t('You have sent many invitations in the last hour. Please wait a while.'),
};

// A JSON request; resolves to the answer's body, or rejects with a message for people.
async function send(path, method, data) {
  const headers = { accept: 'application/json', 'content-type': 'application/json', 'x-csrf-token': csrf };
  let response;
  try {
    response = await fetch(apiBase + path, { method, headers, credentials: 'same-origin', body: JSON.stringify(data) });
  } catch {
    throw new ApiError(0, t('The service cannot be reached. Check your connection; the page keeps trying.'));
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.ok) return body;
  const known = body && SEND_ERRORS[body.error];
  if (known) throw new ApiError(response.status, known(response.status));
  if (response.status === 401) throw new ApiError(401, t('Your session has ended. Please log in again.'));
  if (response.status === 403) throw new ApiError(403, t('Your account may not do this.'));
  throw new ApiError(response.status, t('Something went wrong (error %(status)s). Please try again.', { status: response.status }));
}

function showSmsAlerts(state) {
  $('sms-alerts').hidden = !state.available && !state.enabled;
  $('sms-toggle').checked = state.enabled;
  $('sms-phone').value = '';
  $('sms-phone').placeholder = state.phone || '';
  $('sms-status').classList.remove('bad');
  $('sms-status').textContent = state.enabled
    ? t('Texts go to %(phone)s when someone starts waiting in one of your rooms.', { phone: state.phone })
    : (state.phone ? t('Text alerts are off. Your number: %(phone)s', { phone: state.phone }) : '');
}

async function setUpSmsAlerts() {
  try {
    showSmsAlerts(await api('/me/sms-alerts'));
  } catch {
    return; // no text alerts on this page (the rest of the dashboard says what is wrong)
  }
  $('sms-save').addEventListener('click', async () => {
    const phone = $('sms-phone').value.trim();
    const change = { enabled: $('sms-toggle').checked };
    if (phone) change.phone = phone;
    $('sms-status').textContent = '';
    try {
      showSmsAlerts(await send('/me/sms-alerts', 'PUT', change));
    } catch (err) {
      $('sms-status').textContent = err.message;
      $('sms-status').classList.add('bad');
      $('sms-phone').focus();
    }
  });
}

const LANGUAGES = { en: 'English', nb: 'Norsk bokmål', de: 'Deutsch', nl: 'Nederlands' };
let invites = 0; // distinct ids for the forms' fields

function toggleInviteForm(room, item, button) {
  const open = item.querySelector('.invite-form');
  if (open) {
    open.remove();
    button.setAttribute('aria-expanded', 'false');
    return;
  }
  const n = ++invites;
  const radio = (value, label, checked) => el('label', {}, el('input', { type: 'radio', name: `invite-channel-${n}`, value, checked }), ` ${label}`);
  const to = el('input', { id: `invite-to-${n}`, type: 'tel', autocomplete: 'off', maxLength: 254, 'aria-describedby': `invite-status-${n}` });
  const toLabel = el('label', { htmlFor: `invite-to-${n}` }, t('Client\'s mobile number'));
  const language = el('select', { id: `invite-language-${n}` },
    el('option', { value: '' }, t('The organisation\'s language')),
    ...Object.entries(LANGUAGES).map(([code, name]) => el('option', { value: code, lang: code }, name)));
  const status = el('p', { id: `invite-status-${n}`, className: 'small', role: 'status' });
  const submit = el('button', { type: 'submit', textContent: t('Send the link') });
  const form = el('form', { className: 'invite-form', noValidate: true },
    el('fieldset', { className: 'choices' }, el('legend', {}, t('Send the room\'s link by')),
      radio('sms', t('Text message'), true), radio('email', t('E-mail'), false)),
    toLabel, to,
    el('label', { htmlFor: `invite-language-${n}` }, t('Language of the message')), language,
    el('p', { className: 'muted small' }, t('The number or address is used for this message only and is not stored.')),
    submit, status);
  form.addEventListener('change', () => {
    const email = form.querySelector('input[type="radio"]:checked').value === 'email';
    to.type = email ? 'email' : 'tel';
    toLabel.textContent = email ? t('Client\'s e-mail address') : t('Client\'s mobile number');
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const channel = form.querySelector('input[type="radio"]:checked').value;
    const data = { channel, to: to.value.trim() };
    if (language.value) data.language = language.value;
    status.classList.remove('bad');
    if (!data.to) {
      status.textContent = channel === 'email' ? SEND_ERRORS.invalid_email() : SEND_ERRORS.invalid_phone();
      status.classList.add('bad');
      to.focus();
      return;
    }
    submit.disabled = true;
    status.textContent = t('Sending…');
    try {
      await send(`/rooms/${encodeURIComponent(room.id)}/client-invitations`, 'POST', data);
      to.value = '';
      status.textContent = t('Sent. The link is on its way to your client.');
    } catch (err) {
      status.textContent = err.message;
      status.classList.add('bad');
      to.focus();
    } finally {
      submit.disabled = false;
    }
  });
  item.append(form);
  button.setAttribute('aria-expanded', 'true');
  to.focus();
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
    showApiError(err);
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
  live.textContent = on ? t('live') : t('reconnecting…');
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

setUpAlerts();
setUpSmsAlerts();
// The lists load on the socket's "ready" (and again after each reconnect, to catch up);
// the room titles first, so that the lists name rooms as people know them.
api('/rooms').then(renderRooms).catch(showApiError).finally(listen);
