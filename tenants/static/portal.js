// What the portal's compliance pages share (the access log, data-subject requests,
// compliance reports): calling the organisation's API with the session's CSRF token,
// saying what went wrong in words (never a field name or a status code alone), handing
// a file to the browser, and dates in the page's language (/static/i18n.js).
import { t, locale } from '/static/i18n.js';

export const main = document.querySelector('main');
export const $ = (id) => document.getElementById(id);
export const { slug, csrf } = main ? main.dataset : {};
export const orgApi = (path = '') => `/api/v1/orgs/${encodeURIComponent(slug)}${path}`;

// An element with properties (or attributes) and children; null children are left out.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

const stop = (text) => (/[.!?…]$/.test(text) ? text : `${text}.`);

// A server's message as a sentence: capitalised and ended.
export function sentence(text) {
  const trimmed = String(text || '').trim();
  return trimmed ? stop(trimmed.charAt(0).toUpperCase() + trimmed.slice(1)) : '';
}

// What went wrong, in words, from an answer's status and body. ``known`` maps messages
// the server is known to send to the page's own words for them.
export function problemText(status, body, known = {}) {
  const message = body && typeof body.message === 'string' ? body.message : '';
  if (status === 0) return t('The service cannot be reached. Check your connection and try again.');
  if (status === 401) {
    if (body && body.error === 'access_expired') return sentence(message);
    return t('Your session has ended. Please log in again.');
  }
  if (status === 403) {
    if (body && body.error === 'csrf') return t('This page has expired. Reload it and try again.');
    return t('Your role does not allow this.');
  }
  if (status === 404) return t('This was not found. It may have been removed; reload the page.');
  if (status === 429) return t('Too many attempts. Please wait a minute, then try again.');
  if (status === 503) return t('The service is briefly unavailable. Nothing was lost; please try again in a minute.');
  if (status >= 500) return t('Something went wrong on the server. Please try again in a moment.');
  const has = (text) => Object.prototype.hasOwnProperty.call(known, text);
  const details = body && Array.isArray(body.details) ? body.details.map(String) : [];
  const explained = details.filter(has).map((d) => known[d]);
  if (explained.length) return explained.join(' ');
  if (message && has(message)) return known[message];
  const general = t('The request was not accepted. Please check what you entered.');
  if (!message || message === 'the request is not valid') {
    return details.length ? `${general} (${details.map(sentence).join(' ')})` : general;
  }
  return sentence(message);
}

const ACCEPT = { json: 'application/json', text: 'text/plain', blob: '*/*' };

// Calls the organisation's API (``path`` after /api/v1/orgs/<slug>, or a whole path
// starting with /), with the CSRF token on every unsafe call; throws an ApiError in words.
export async function api(path, { method = 'GET', body, as = 'json', known = {} } = {}) {
  const headers = { accept: ACCEPT[as] || ACCEPT.json };
  if (method !== 'GET' && method !== 'HEAD') headers['x-csrf-token'] = csrf;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const url = path.startsWith('/api/') || path.startsWith(`/${slug}/`) ? path : orgApi(path);
  let response;
  try {
    response = await fetch(url, {
      method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, problemText(0, null));
  }
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch { problem = null; }
    throw new ApiError(response.status, problemText(response.status, problem, known), problem);
  }
  if (as === 'json') return response.json();
  if (as === 'blob') return { blob: await response.blob(), name: fileName(response) };
  return response.text();
}

function fileName(response) {
  const disposition = response.headers.get('content-disposition') || '';
  const found = /filename="([^"]+)"/.exec(disposition);
  return found ? found[1] : '';
}

// Hands a blob to the browser as a file.
export function download(blob, name) {
  const link = el('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

// A message in a live region (role alert or status); an empty one hides it.
export function say(id, message) {
  const box = $(id);
  if (!box) return;
  box.replaceChildren();
  if (message) box.append(message);
}

// Two boxes of a page: its error (role alert) and its notice (role status); showing one
// empties the other.
export function messages(errorId, noticeId) {
  return {
    error(message) { say(errorId, message); if (message) say(noticeId, ''); },
    notice(message) { say(noticeId, message); if (message) say(errorId, ''); },
  };
}

// Dates and times in the page's language (the same conventions as the dates the server
// writes: English as in Britain and Ireland, 24-hour clock) and the browser's time zone.
const REGIONAL = { en: 'en-GB', nb: 'nb-NO', de: 'de-DE', nl: 'nl-NL' };
const formatted = (value, options) => new Intl.DateTimeFormat(REGIONAL[locale] || locale, options).format(value);
export const when = (iso) => formatted(new Date(iso), { dateStyle: 'medium', timeStyle: 'short' });
export const whenExact = (iso) => formatted(new Date(iso), { dateStyle: 'medium', timeStyle: 'medium' });
export const day = (iso) => formatted(new Date(iso), { dateStyle: 'medium' });
// A calendar day (YYYY-MM-DD) as it is, whatever the time zone.
export const calendarDay = (value) => formatted(new Date(`${value}T00:00:00Z`), { dateStyle: 'medium', timeZone: 'UTC' });
export const timeZone = () => {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'; } catch { return 'UTC'; }
};
export { t, locale };
