// What a visitor agreed this browser may keep for them (tenants/consent.py), per
// organisation: their camera and microphone choice ("remember_device") and their name
// and phone number for the join form ("prefill_forms"). Nothing is kept without an
// agreement on record; an agreement lapses after its end date (the page then asks again
// and forgets what it kept); a withdrawal deletes what was kept at once. The server only
// records each choice under a random device id made here, never the kept values.

const slug = () => window.location.pathname.split('/')[1] || '';
const storeKey = () => `konsil:${slug()}`;
// What each agreement lets the page keep.
const KEPT = { remember_device: 'devices', prefill_forms: 'form' };

function load() {
  try {
    const raw = window.localStorage.getItem(storeKey());
    const state = raw ? JSON.parse(raw) : {};
    return state && typeof state === 'object' ? state : {};
  } catch {
    return {}; // storage blocked or damaged: keep nothing
  }
}

function save(state) {
  try {
    const empty = !state.device && Object.keys(state.consents || {}).length === 0;
    if (empty) window.localStorage.removeItem(storeKey());
    else window.localStorage.setItem(storeKey(), JSON.stringify(state));
  } catch {
    // storage blocked: nothing is kept, the page works as without consent
  }
}

function forget(state, purpose) {
  if (state.consents) delete state.consents[purpose];
  delete state[KEPT[purpose]];
}

/** Whether ``purpose`` is agreed to and not lapsed (a lapsed one is forgotten here). */
export function granted(purpose) {
  const state = load();
  const consent = state.consents && state.consents[purpose];
  if (!consent) return false;
  if (consent.until && Date.parse(consent.until) <= Date.now()) {
    forget(state, purpose);
    save(state);
    return false;
  }
  return true;
}

/** The camera ("video") or microphone ("audio") kept for this organisation, if agreed. */
export function rememberedDevice(kind) {
  if (!granted('remember_device')) return null;
  const devices = load().devices || {};
  return typeof devices[kind] === 'string' ? devices[kind] : null;
}

export function rememberDevice(kind, deviceId) {
  if (!deviceId || !granted('remember_device')) return;
  const state = load();
  state.devices = { ...(state.devices || {}), [kind]: String(deviceId).slice(0, 200) };
  save(state);
}

/** The name and phone number kept for the form, if agreed. */
export function rememberedForm() {
  if (!granted('prefill_forms')) return null;
  const form = load().form;
  return form && typeof form === 'object' ? form : null;
}

export function rememberForm(name, phone) {
  if (!granted('prefill_forms')) return;
  const state = load();
  state.form = { name: String(name).slice(0, 200), phone: String(phone).slice(0, 40) };
  save(state);
}

function deviceId(state) {
  if (!state.device) {
    state.device = window.crypto && window.crypto.randomUUID
      ? window.crypto.randomUUID()
      : '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (c) =>
        (c ^ (window.crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16));
  }
  return state.device;
}

/**
 * Record the visitor's choice at ``path`` and keep (or forget) accordingly. A withdrawal
 * forgets at once, even when it cannot be recorded; an agreement counts only once the
 * server recorded it. Resolves to true when recorded.
 */
export async function decide(path, purpose, yes, version) {
  const state = load();
  const device = deviceId(state);
  if (!yes) forget(state, purpose);
  save(state);
  let response;
  try {
    response = await fetch(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ device, purpose, granted: yes, version }),
      credentials: 'same-origin',
    });
  } catch {
    return false;
  }
  if (!response.ok) return false;
  const answer = await response.json();
  if (yes && answer.granted) {
    const fresh = load();
    fresh.device = device;
    fresh.consents = { ...(fresh.consents || {}), [purpose]: { at: answer.at, until: answer.expires_at } };
    save(fresh);
  }
  return true;
}
