// The expert's call page: the same call module as the visitor, plus "End call"
// through the API (which returns the call's duration).
import { CallSession, Log, formatDuration, getLocalMedia, playVideo } from './call.js';
import { CallControls } from './call-ui.js';
import { t } from '/static/i18n.js';

const main = document.querySelector('main');
const $ = (id) => document.getElementById(id);
const log = new Log($('log'));
const { slug, callId, csrf, wsPath, peerName, selfName } = main.dataset;
let timer = null;
let duration = null; // seconds, from the server when the expert ends the call

const session = new CallSession({
  path: wsPath,
  role: 'expert',
  log,
  name: selfName || null,
  localVideo: $('local'),
  remoteVideo: $('remote'),
  onState: (state, message) => {
    if (state === 'call') show('call');
    else if (state === 'ended') ended();
    else if (state === 'error') {
      $('error-text').textContent = message || t('Please reload the page.');
      show('error');
    }
  },
  onConnection: (state) => {
    main.dataset.connection = state;
    const text = {
      new: t('Waiting for the visitor to connect…'),
      connecting: t('Connecting…'),
      connected: t('Connected · end-to-end encrypted'),
      disconnected: t('The connection is unstable…'),
      failed: t('The connection failed; waiting for the visitor to try again…'),
      closed: t('Disconnected'),
    }[state] || t('Connecting…');
    $('call-status').textContent = text;
    $('overlay').textContent = state === 'connected' ? '' : text;
    if (state === 'connected' && !timer) {
      timer = setInterval(() => {
        const seconds = (Date.now() - session.connectedAt) / 1000;
        $('call-status').textContent = t('Connected · end-to-end encrypted · %(duration)s', { duration: formatDuration(seconds) });
      }, 1000);
    }
  },
  onSocket: (open) => {
    if (!open && !session.finished) $('call-status').textContent = t('Connection to the service lost; reconnecting…');
  },
  onNotice: (text) => { $('notice').textContent = text; },
});

new CallControls(session, { peerName: peerName || null, peerFallback: t('The visitor') });

function show(step) {
  if (main.dataset.state === step) return;
  main.dataset.state = step;
  for (const section of document.querySelectorAll('section[data-step]')) {
    section.hidden = section.dataset.step !== step;
  }
  const heading = document.querySelector(`section[data-step="${step}"] h1`);
  if (heading && step !== 'call') heading.focus({ preventScroll: true });
}

function ended() {
  if (timer) clearInterval(timer);
  $('notice').textContent = '';
  const seconds = duration ?? (session.connectedAt ? (Date.now() - session.connectedAt) / 1000 : null);
  if (seconds !== null) {
    $('ended-text').textContent = t('The call lasted %(duration)s. Nothing of it was recorded.', { duration: formatDuration(seconds) });
  }
  show('ended');
}

async function endCall() {
  const button = $('end');
  button.disabled = true;
  $('call-error').textContent = '';
  await session.sample().catch(() => null); // a last quality sample for troubleshooting
  try {
    const response = await fetch(`/api/v1/orgs/${encodeURIComponent(slug)}/calls/${encodeURIComponent(callId)}/end`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'x-csrf-token': csrf, accept: 'application/json' },
    });
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    const body = await response.json();
    if (typeof body.duration_seconds === 'number') duration = body.duration_seconds;
    session.finish();
  } catch (err) {
    log.add(`ending through the API failed (${err.message}); hanging up instead`, 'error');
    if (!session.send({ type: 'hangup' })) {
      $('call-error').textContent = t('The call could not be ended right now. Please try again.');
      button.disabled = false;
      return;
    }
    session.finish();
  }
}

$('end').addEventListener('click', endCall);

session.connect();
getLocalMedia().then(async (media) => {
  if (media.error) $('call-error').textContent = media.error;
  session.action('camera_permission', media.camera);
  session.action('microphone_permission', media.microphone);
  for (const [kind, status] of Object.entries(media.statuses)) {
    status.addEventListener('change', () => session.action(`${kind}_permission`, status.state));
  }
  if (media.stream) {
    await session.setLocalStream(media.stream);
    playVideo($('local'));
  }
}).catch((err) => log.add(`camera: ${err && err.message ? err.message : err}`, 'error'));

// A visitor who confirmed who they are with a national eID: the number is masked until the
// expert asks for it (each reveal is access-logged as such).
const reveal = $('reveal-national-id');
if (reveal) {
  reveal.addEventListener('click', async () => {
    reveal.disabled = true;
    const { visitId } = $('call-identity').dataset;
    let status = 0;
    try {
      const response = await fetch(
        `/api/v1/orgs/${encodeURIComponent(slug)}/visits/${encodeURIComponent(visitId)}/identity/reveal`,
        { method: 'POST', headers: { accept: 'application/json', 'x-csrf-token': csrf }, credentials: 'same-origin' },
      );
      status = response.status;
      if (response.ok) {
        $('call-identity').querySelector('.national-id').textContent = (await response.json()).national_id;
        const logged = document.createElement('span');
        logged.className = 'muted';
        logged.setAttribute('role', 'status');
        logged.textContent = t('(recorded in the access log)');
        reveal.replaceWith(logged);
        return;
      }
    } catch {
      status = 0;
    }
    reveal.disabled = false;
    $('notice').textContent = t('The number could not be shown (error %(status)s). Please try again.', { status });
  });
}
