// Shared by the administration pages (settings.js, rooms.js, tokens.js): calls to the
// tenant API with the session's CSRF token, messages in the page's language, small DOM
// helpers. Nothing here is inline in a page (CSP: scripts from this origin only).
import { t } from '/static/i18n.js';

export const main = document.querySelector('main');
export const $ = (id) => document.getElementById(id);
const { slug, csrf } = main.dataset;
export const apiBase = `/api/v1/orgs/${encodeURIComponent(slug)}`;

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }

  // The body fields the API refused ("… - at `$.retention_days`"), for the form to mark.
  fields() {
    const found = new Set();
    for (const detail of [this.message, ...this.details]) {
      for (const match of String(detail).matchAll(/\$\.([a-z_]+)/g)) found.add(match[1]);
    }
    return found;
  }
}

// One call to the API: JSON in and out (or raw bytes with `raw`), the CSRF header on
// every call that changes something.
export async function api(path, { method = 'GET', json, raw } = {}) {
  const headers = { accept: 'application/json' };
  let body;
  if (method !== 'GET') headers['x-csrf-token'] = csrf;
  if (json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (raw !== undefined) {
    headers['content-type'] = 'application/octet-stream';
    body = raw;
  }
  let response;
  try {
    response = await fetch(apiBase + path, { method, headers, body, credentials: 'same-origin' });
  } catch {
    throw new ApiError(0, 'network', t('The connection failed. Check your network and try again.'));
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const code = (data && data.error) || '';
    const message = (data && data.message) || '';
    throw new ApiError(response.status, code, message, data && data.details);
  }
  return data;
}

// What went wrong, in words for people: the cases every page meets; a page handles its
// own (a taken address, a refused image) before calling this.
export function problemText(error) {
  if (!(error instanceof ApiError)) return t('Something went wrong on our side. Please try again in a minute.');
  if (error.status === 0) return error.message;
  if (error.status === 401) return t('Your session has ended. Please log in again.');
  if (error.status === 403) return t('Your account may not do this, or the page expired. Reload the page and try again.');
  if (error.status === 404) return t('This was removed in the meantime. Reload the page.');
  if (error.status === 409) return t('This was changed in the meantime. Reload the page and try again.');
  if (error.status === 413) return t('That was too large.');
  if (error.status === 429) return t('Too many attempts. Please wait a minute, then try again.');
  if (error.status >= 500) return t('Something went wrong on our side. Please try again in a minute.');
  return t('Some of what you entered was not accepted. Check the marked fields.');
}

// The page's two message lines: one for problems (role=alert), one for what was done.
export function say(errorBox, noticeBox, { error = '', notice = '' } = {}) {
  errorBox.replaceChildren();
  noticeBox.replaceChildren();
  if (error) {
    errorBox.append(error);
    if (/log in/i.test(error) || error === t('Your session has ended. Please log in again.')) {
      const link = el('a', { href: '/login' }, t('Log in'));
      errorBox.append(' ', link);
    }
  }
  if (notice) noticeBox.append(notice);
}

// A form field's own error line (linked with aria-describedby in the page), or none.
export function fieldError(input, errorLine, message) {
  errorLine.textContent = message || '';
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

export const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'text') node.textContent = value;
    else if (key in node && typeof node[key] !== 'function' && key !== 'type') node[key] = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
};

// Dates and times as the server writes them (Babel's en_GB, nb_NO, de_DE, nl_NL).
const lang = document.documentElement.lang || 'en';
export const intlLocale = { en: 'en-GB', nb: 'nb-NO', de: 'de-DE', nl: 'nl-NL' }[lang] || lang;
export const dateTimeText = (iso) =>
  new Intl.DateTimeFormat(intlLocale, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(iso));

// Copy a text to the clipboard; where the browser does not allow it, select the field so
// the person can copy it themselves.
export async function copy(text, field) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (field) {
      field.focus();
      field.select();
    }
    return false;
  }
}

// The API's rules for text (konsil.platform.core.text), checked first so that every
// problem of a form is shown at once: one-line text has no control characters and no
// angle brackets; longer text keeps tabs and line breaks.
const LINE_REFUSED = /[\u0000-\u001f\u007f-\u009f<>]/;
const MULTILINE_REFUSED = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;
export const badLine = (text) => LINE_REFUSED.test(text);
export const badText = (text) => MULTILINE_REFUSED.test(text);
